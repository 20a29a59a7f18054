"""The prompt box: one line or several, and a memory of the prompts sent.

Enter sends. A new line is ctrl+j, which every terminal sends (it is the line feed character,
also over SSH and in tmux); shift+enter and alt+enter do the same where the terminal tells them
from enter (many send plain enter for shift+enter, so ctrl+j is the one that always works). A
pasted text keeps its lines. Up on the first line and down on the last walk through the prompts
sent before; elsewhere they move the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter")


class PromptInput(TextArea):
    # the keys are handled in _on_key; the binding names them in the footer and the help
    BINDINGS = [Binding(",".join(NEWLINE_KEYS), "newline", "New line"),
                Binding("up", "older", "Older prompt", show=False),
                Binding("down", "newer", "Newer prompt", show=False)]

    @dataclass
    class Submitted(Message):
        """Enter was pressed: send value."""

        prompt_input: PromptInput
        value: str

        @property
        def control(self) -> PromptInput:
            return self.prompt_input

    def __init__(self, placeholder: str = "", **kwargs):
        super().__init__(placeholder=placeholder, soft_wrap=True, tab_behavior="focus",
                         show_line_numbers=False, highlight_cursor_line=False, **kwargs)
        self.prompts: list[str] = []  # those sent, oldest first (TextArea.history is its undo)
        self.position = 0

    @property
    def value(self) -> str:
        """The prompt as typed (Input's name for it: the pane and its tests read and set it)."""
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":  # sends, where a TextArea would start a new line
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in NEWLINE_KEYS:  # here, in turn with the characters typed around it
            event.stop()  # (a binding's action runs later: after them, at paste speed)
            event.prevent_default()
            self.action_newline()
            return
        await super()._on_key(event)

    def action_newline(self) -> None:
        start, end = self.selection
        self.replace("\n", start, end, maintain_selection_offset=False)

    def remember(self, prompt: str) -> None:
        if prompt and (not self.prompts or self.prompts[-1] != prompt):
            self.prompts.append(prompt)
        self.position = len(self.prompts)

    def action_older(self) -> None:
        if self.cursor_location[0] > 0:
            self.action_cursor_up()
        elif self.position > 0:
            self.position -= 1
            self.value = self.prompts[self.position]

    def action_newer(self) -> None:
        if self.cursor_location[0] < self.document.line_count - 1:
            self.action_cursor_down()
        elif self.position < len(self.prompts):
            self.position += 1
            self.value = self.prompts[self.position] if self.position < len(self.prompts) else ""
