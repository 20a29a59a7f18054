"""The question asked on quit while a run is live: leave it running, stop it, or stay."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitScreen(ModalScreen[str]):
    """Dismisses with "leave", "stop" or "cancel"."""

    BINDINGS = [Binding("l", "choose('leave')", "Leave running"),
                Binding("s", "choose('stop')", "Stop it"),
                Binding("escape", "choose('cancel')", "Cancel")]

    def __init__(self, what: str):
        """what: the runs still going, as the subject of a sentence ("Training")."""
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label(f"{self.what} still running. Leave it running (attach later with "
                        "minigpt tui --attach), or stop it?", classes="title")
            with Horizontal(classes="buttons"):
                yield Button("Leave running (l)", variant="primary", id="leave")
                yield Button("Stop it (s)", variant="error", id="stop")
                yield Button("Cancel (esc)", id="cancel")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
