"""A modal list of the run directories under checkpoints/: pick one to attach, or start anew."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from minigpt.runs.files import run_files
from minigpt.runs.state import RunSummary, measured_at
from minigpt.units import format_duration
from minigpt_tui.text import plain

NEW_RUN = "new"


def describe(run: RunSummary) -> Text:
    """One row: the run's name and status come from its folder and events, shown as they are."""
    val = "no eval yet" if run.val_loss is None else \
        f"val {run.val_loss:.3f}{measured_at(run.val_step, run.step)}"
    length = run.max_steps if run.time_budget is None else format_duration(run.time_budget)
    return plain(f"{run_files(run.path).name:<26} {run.kind:<6} {run.status:<11} "
                 f"{run.step:>6}/{length:<6} {val}")


class RunPicker(ModalScreen[Path | str | None]):
    """Dismisses with a run directory, NEW_RUN, or None (Esc)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close")]

    def __init__(self, runs: list[RunSummary], allow_new: bool = True):
        super().__init__()
        self.runs = runs
        self.allow_new = allow_new

    def compose(self) -> ComposeResult:
        options = [Option("+ start a new training run", id=NEW_RUN)] if self.allow_new else []
        options += [Option(describe(r), id=str(r.path)) for r in self.runs]
        with Vertical(id="picker"):
            yield Label("Runs in checkpoints/: Enter attaches, Esc closes", classes="title")
            yield OptionList(*options)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        choice = event.option.id
        self.dismiss(NEW_RUN if choice == NEW_RUN else Path(choice))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
