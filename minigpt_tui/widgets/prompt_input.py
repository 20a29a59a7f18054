"""A one-line prompt box that remembers: up and down walk through the prompts sent before."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class PromptInput(Input):
    """An Input with a history: up and down walk through earlier prompts."""

    BINDINGS = [Binding("up", "older", "Older prompt"),
                Binding("down", "newer", "Newer prompt")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: list[str] = []
        self.position = 0

    def remember(self, prompt: str) -> None:
        if prompt and (not self.history or self.history[-1] != prompt):
            self.history.append(prompt)
        self.position = len(self.history)

    def action_older(self) -> None:
        if self.position > 0:
            self.position -= 1
            self.value = self.history[self.position]
            self.cursor_position = len(self.value)

    def action_newer(self) -> None:
        if self.position < len(self.history):
            self.position += 1
            self.value = self.history[self.position] if self.position < len(self.history) else ""
            self.cursor_position = len(self.value)
