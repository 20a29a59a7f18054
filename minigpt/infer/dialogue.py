"""Talking to a model: what a reply is generated from.

A model with the chat template (instruction-tuned, data/chat.py) is talked to in turns: the
system prompt, then each user turn and the model's answer, rendered with the template, the
newest turn last; its reply is an answer, which ends at its <|end|>. A base model has no turns:
each prompt is text it continues. Dialogue says which, so the command line and the TUI say it
too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minigpt.data.chat import has_template
from minigpt.errors import ConfigError

SAID = {True: "chat template: the prompt is the user's turn, the reply the assistant's",
        False: "no chat template: the model continues the text"}


@dataclass
class Dialogue:
    tokenizer: object
    system: str | None = None  # a model with a template only
    turns: list[dict] = field(default_factory=list)  # user and assistant messages, in order

    def __post_init__(self) -> None:
        if self.system and not self.templated:
            raise ConfigError("the model has no chat template, so no system prompt: instruction-"
                              "tune it first (minigpt train --init MODEL --sft ...)")

    @property
    def templated(self) -> bool:
        return has_template(self.tokenizer)

    @property
    def said(self) -> str:
        return SAID[self.templated]

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns

    def prompt(self, text: str) -> list[int]:
        """The ids to generate the reply to text from (a character the vocabulary lacks is a
        TokenizerError here, before any output); the turn is kept once answered."""
        if not self.templated:
            return self.tokenizer.encode(text)
        return self.tokenizer.render(self.messages() + [{"role": "user", "content": text}])

    def answered(self, text: str, reply: str) -> None:
        """Keep a turn and its answer (a base model keeps nothing: each prompt stands alone)."""
        if self.templated:
            self.turns += [{"role": "user", "content": text},
                           {"role": "assistant", "content": reply}]

    def reset(self) -> None:
        self.turns = []
