"""Built-in instruction tasks whose answers a program can check: something to see on a CPU in
minutes, with no download. Each makes its questions from a seed, and a question is in the
training split or the held-out one by its hash, so the two never share a question.

    reverse    "Reverse: tomak"             -> "kamot"
    spell      "Spell: tomak"               -> "t o m a k"
    add        "Add: 38+7"                  -> "45"
    count      "Count the letter a in: banana" -> "3"
    continue   "Continue: 3 7 11 15"        -> "19 23"

Words are made of syllables (consonant and vowel), so every task is written in the lowercase
letters, digits and a few signs that any English corpus has, and a character model trained on
one can read them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from minigpt.errors import ConfigError

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
HELD_OUT = 10  # one question in HELD_OUT is held out


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS)
                   for _ in range(rng.randint(2, 3)))[: rng.randint(3, 6)]


def _reverse(rng):
    word = _word(rng)
    return f"Reverse: {word}", word[::-1]


def _spell(rng):
    word = _word(rng)
    return f"Spell: {word}", " ".join(word)


def _add(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"Add: {a}+{b}", str(a + b)


def _count(rng):
    letter = rng.choice(VOWELS + CONSONANTS[:4])
    word = "".join(rng.choice(letter * 2 + VOWELS + CONSONANTS[:4]) for _ in range(rng.randint(4, 9)))
    return f"Count the letter {letter} in: {word}", str(word.count(letter))


def _continue(rng):
    start, step = rng.randint(0, 199), rng.randint(1, 19)
    terms = [start + step * i for i in range(6)]
    return f"Continue: {' '.join(map(str, terms[:4]))}", " ".join(map(str, terms[4:]))


TASKS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "reverse": _reverse, "spell": _spell, "add": _add, "count": _count, "continue": _continue,
}


@dataclass(frozen=True)
class Example:
    task: str
    question: str
    answer: str

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.question},
                {"role": "assistant", "content": self.answer}]


def held_out(question: str) -> bool:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % HELD_OUT == 0


def examples(task: str, split: str, count: int, seed: int = 0) -> list[Example]:
    """count distinct examples of a task from one split ("train" or "held-out")."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose from: {', '.join(TASKS)}")
    rng = random.Random(f"{task}-{seed}")
    found: dict[str, Example] = {}
    for _ in range(count * HELD_OUT * 20):
        question, answer = TASKS[task](rng)
        if held_out(question) == (split == "held-out") and question not in found:
            found[question] = Example(task, question, answer)
            if len(found) == count:
                break
    return list(found.values())


def conversations(count: int = 2000, seed: int = 0) -> Iterator[list[dict]]:
    """The training split of every task, count each, interleaved: what `--sft tasks` trains on."""
    per_task = [examples(task, "train", count, seed) for task in TASKS]
    for row in zip(*per_task, strict=False):
        for example in row:
            yield example.messages()


def correct(example: Example, reply: str) -> bool:
    """Whether a reply answers the example: its first line, stripped, is the answer."""
    lines = reply.strip().splitlines()
    return bool(lines) and lines[0].strip() == example.answer
