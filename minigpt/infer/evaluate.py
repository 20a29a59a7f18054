"""How well a model does the built-in instruction tasks (data/tasks.py): each task's accuracy
on its held-out split, the questions no training saw.

A model with the chat template is asked as a user would ask it; a base model, without one, gets
the question and a new line, and its continuation's first line is its answer (what it would
have to do without instruction tuning). Answers are decoded greedily, so a model's score is its
own and the same every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from minigpt.data.chat import has_template
from minigpt.data.tasks import TASKS, Example, correct, examples
from minigpt.errors import TokenizerError
from minigpt.infer.config import SamplingConfig
from minigpt.infer.sampling import stream_text

MAX_ANSWER_TOKENS = 24


@dataclass
class TaskScore:
    task: str
    correct: int = 0
    total: int = 0
    unreadable: int = 0  # questions with characters the model's vocabulary lacks
    replies: list[tuple[Example, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {"task": self.task, "correct": self.correct, "total": self.total,
                "accuracy": self.accuracy,
                "replies": [{"question": e.question, "answer": e.answer, "reply": r}
                            for e, r in self.replies]}


def ask(model, tokenizer, question: str) -> str:
    """The model's answer to a question: through the template, or as a continuation's first
    line."""
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=MAX_ANSWER_TOKENS,
                         stop=() if has_template(tokenizer) else ("\n",))
    prompt = tokenizer.render([{"role": "user", "content": question}]) \
        if has_template(tokenizer) else tokenizer.encode(f"{question}\n")
    return "".join(stream_text(model, tokenizer, prompt, cfg))


def evaluate_tasks(model, tokenizer, count: int = 100, seed: int = 0,
                   tasks: tuple[str, ...] = tuple(TASKS),
                   progress: Callable[[str, int], None] | None = None) -> list[TaskScore]:
    """Each task's accuracy on `count` held-out questions; progress(task, done) after each."""
    scores = []
    for task in tasks:
        score = TaskScore(task)
        for example in examples(task, "held-out", count, seed):
            try:
                reply = ask(model, tokenizer, example.question)
            except TokenizerError:  # a character the model's vocabulary lacks: it cannot read
                reply = ""  # the question, so it cannot answer it
            score.unreadable += not reply
            score.total += 1
            score.correct += correct(example, reply)
            score.replies.append((example, reply))
            if progress is not None:
                progress(task, score.total)
        scores.append(score)
    return scores
