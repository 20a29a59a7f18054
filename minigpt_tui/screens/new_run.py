"""A modal form to start a training run: data (and its text field), preset, and its length in
steps or in time. Compact widgets: it fits 80x24."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Integer, ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select

from minigpt.errors import ConfigError
from minigpt.train.config import PRESETS, check_run_length
from minigpt.units import parse_duration


@dataclass
class NewRun:
    data: str | None
    preset: str | None
    steps: int | None
    text_field: str | None = None
    time: str | None = None  # a timed run's length as typed (110s, 5m), checked by parse_duration


class Duration(Validator):
    """A time as `minigpt train --time` reads it (minigpt.units.parse_duration)."""

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_duration(value)
        except ConfigError as e:
            return self.failure(str(e))
        return self.success()


class NewRunForm(ModalScreen[NewRun | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, data: str | None = None, preset: str | None = None,
                 steps: int | None = None, text_field: str | None = None,
                 time: str | None = None):
        super().__init__()
        self.defaults = NewRun(data, preset, steps, text_field, time)

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label("New training run", classes="title")
            yield Label("data: file, folder, URL, or empty for the built-in corpus")
            yield Input(self.defaults.data or "", placeholder="builtin", id="data", compact=True)
            yield Label("text field of JSON Lines / column of Parquet data (empty: text)")
            yield Input(self.defaults.text_field or "", placeholder="text", id="text-field",
                        compact=True)
            yield Label("preset")
            yield Select([("auto (by device)", ""), *((name, name) for name in PRESETS)],
                         value=self.defaults.preset or "", allow_blank=False, id="preset",
                         compact=True)
            with Horizontal(classes="length"):  # one or the other
                with Vertical():
                    yield Label("steps (empty: the preset's)")
                    yield Input(str(self.defaults.steps or ""), placeholder="preset default",
                                id="steps", validators=[Integer(minimum=1)], valid_empty=True,
                                compact=True)
                with Vertical():
                    yield Label("or time: 110s, 5m, 1h30m")
                    yield Input(self.defaults.time or "", placeholder="by steps", id="time",
                                validators=[Duration()], valid_empty=True, compact=True)
            with Horizontal(classes="buttons"):
                yield Button("Start", variant="primary", id="start", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def start(self) -> None:
        steps, time = self.query_one("#steps", Input), self.query_one("#time", Input)
        if not steps.is_valid:
            self.notify("steps must be a whole number of at least 1", severity="error",
                        markup=False)
            return
        try:
            seconds = parse_duration(time.value) if time.value.strip() else None
            check_run_length(int(steps.value) if steps.value else None, seconds)
        except ConfigError as e:
            self.notify(str(e), severity="error", markup=False)
            return
        self.dismiss(NewRun(
            data=self.query_one("#data", Input).value.strip() or None,
            preset=self.query_one("#preset", Select).value or None,
            steps=int(steps.value) if steps.value else None,
            text_field=self.query_one("#text-field", Input).value.strip() or None,
            time=time.value.strip() or None,
        ))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
