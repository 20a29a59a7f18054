"""A modal that asks for a checkpoint file or run directory to open in the Chat pane."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from minigpt.checkpoint import CHECKPOINT_NAME
from minigpt.runs.files import DEFAULT_RUNS_ROOT
from minigpt_tui.text import clean


class OpenCheckpoint(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, suggestion: Path | None = None):
        super().__init__()
        self.suggestion = suggestion

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label(f"Open a checkpoint ({CHECKPOINT_NAME} or a run directory); Enter opens",
                        classes="title")
            yield Input(str(self.suggestion or ""),
                        placeholder=f"{DEFAULT_RUNS_ROOT.as_posix()}/<run>/{CHECKPOINT_NAME}")

    @on(Input.Submitted)
    def opened(self, event: Input.Submitted) -> None:
        try:
            path = Path(event.value.strip()).expanduser()
            found = path.exists()
        except (OSError, RuntimeError, ValueError):  # ~nobody, a NUL byte
            path, found = event.value.strip(), False
        if not found:
            self.notify(clean(f"no such file or folder: {path}"), severity="error", markup=False)
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
