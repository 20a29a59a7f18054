"""The built-in instruction tasks: answers a program checks, and splits that share no question."""

import pytest

from minigpt.data.tasks import TASKS, Example, conversations, correct, examples, held_out


def _solve(example: Example) -> str:
    """Each task solved from its question alone, as a reader would: the generator's answer must
    equal this."""
    kind, _, rest = example.question.partition(": ")
    if example.task == "reverse":
        return rest[::-1]
    if example.task == "spell":
        return " ".join(rest)
    if example.task == "add":
        a, b = rest.split("+")
        return str(int(a) + int(b))
    if example.task == "count":
        letter = kind.split()[-2]
        return str(rest.count(letter))
    terms = [int(t) for t in rest.split()]
    step = terms[1] - terms[0]
    assert all(b - a == step for a, b in zip(terms, terms[1:], strict=False))
    return f"{terms[-1] + step} {terms[-1] + 2 * step}"


@pytest.mark.parametrize("task", TASKS)
def test_every_answer_is_right(task):
    for split in ("train", "held-out"):
        for example in examples(task, split, 200, seed=3):
            assert example.answer == _solve(example), example


@pytest.mark.parametrize("task", TASKS)
def test_the_splits_share_no_question_and_a_seed_makes_the_same(task):
    train = examples(task, "train", 300)
    test = examples(task, "held-out", 50)
    assert len(train) == 300 and len(test) == 50
    assert not {e.question for e in train} & {e.question for e in test}
    assert all(held_out(e.question) for e in test) and not any(held_out(e.question) for e in train)
    assert examples(task, "held-out", 50) == test


def test_a_reply_is_right_when_its_first_line_is_the_answer():
    example = Example("add", "Add: 2+2", "4")
    assert correct(example, " 4\nand more")
    assert not correct(example, "44") and not correct(example, "")


def test_conversations_interleave_the_tasks():
    first = list(conversations(count=3))[:len(TASKS)]
    assert [m[0]["content"].split(":")[0].split()[0] for m in first] == [
        "Reverse", "Spell", "Add", "Count", "Continue"]
    assert all(m[1]["role"] == "assistant" for m in first)
