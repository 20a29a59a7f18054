"""The Ablate pane: pick variants, train them against the baseline in the background, compare.

The ablation is `minigpt ablate ... --out RUN_DIR` in a child process (its own session, like a
training run), so its numbers are the ones the command prints headless for the same arguments;
this pane follows RUN_DIR/events.jsonl. Cancelling stops the variant in training; the finished
ones stay in the table.
"""

from __future__ import annotations

import math
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import Integer
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from minigpt.ablation import VARIANTS, new_ablation_dir
from minigpt.config import PRESETS
from minigpt.events import EventTail, number, pid_of, process_alive, text, whole
from minigpt_tui import runs
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.check_list import CheckList
from minigpt_tui.widgets.loss_chart import LossChart

COLUMNS = ("variant", "train", "val", "vs base", "tok/s", "time")


def labelled(label: str, widget: Widget, tooltip: str | None = None) -> Horizontal:
    """One line of the form: its name, then its input."""
    widget.tooltip = plain(tooltip) if tooltip else None
    return Horizontal(Label(label, classes="setting-label"), widget, classes="setting")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class AblatePane(Widget, can_focus=False):
    BINDINGS = [
        Binding("ctrl+r", "start", "Run ablation"),
        Binding("ctrl+k", "cancel", "Cancel"),
    ]

    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.run_dir: Path | None = None
        self.tail: EventTail | None = None
        self.process = None
        self.pid: int | None = None
        self.status = "idle"
        self.curves: dict[str, tuple[list[float], list[float]]] = {}
        self.samples: dict[str, str] = {}  # by variant, one per row of the table
        self.current = ""  # the variant in training, as "name (i/n)"
        self._dirty = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="ablate-top"):
            with Vertical(id="ablate-form"):
                yield CheckList(*[(name, name, name == "residual") for name in VARIANTS],
                                    id="ablate-variants")
                yield labelled("data", Input(placeholder="builtin", id="ablate-data",
                                             compact=True),
                               "a text, JSON Lines or Parquet file, a folder of them, a URL or "
                               "hf:owner/dataset; empty: the built-in corpus")
                yield labelled("field", Input(placeholder="text", id="ablate-text-field",
                                              compact=True),
                               "the field (JSON Lines) or column (Parquet) holding the text; "
                               "empty: text")
                yield labelled("steps", Input("200", id="ablate-steps",
                                              validators=[Integer(minimum=1)], compact=True),
                               "training steps for each model")
                yield labelled("preset", Select([(p, p) for p in PRESETS], value="cpu",
                                                allow_blank=False, id="ablate-preset",
                                                compact=True), "the baseline's preset")
                with Horizontal(classes="buttons"):
                    yield Button("Run", variant="primary", id="ablate-start", compact=True)
                    yield Button("Cancel", id="ablate-cancel", compact=True)
            yield LossChart(id="ablate-chart")
        yield Static("Pick variants, then Run (ctrl+r).", id="ablate-status")
        with Horizontal(id="ablate-bottom"):
            yield DataTable(id="ablate-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="ablate-sample-box"):
                yield Static("", id="ablate-sample")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.set_interval(0.25, self.poll)
        self.set_interval(0.5, self.redraw)

    @property
    def is_live(self) -> bool:
        return self.status == "running"

    # --- starting and following --------------------------------------------------------------------

    @on(Button.Pressed, "#ablate-start")
    @on(Input.Submitted, "#ablate-steps")
    def action_start(self) -> None:
        if self.is_live:
            self.notify("an ablation is running: cancel it first (ctrl+k)", severity="warning",
                        markup=False)
            return
        variants = list(self.query_one(CheckList).selected)
        steps_box = self.query_one("#ablate-steps", Input)
        if not variants:
            self.notify("pick at least one variant", severity="error", markup=False)
            return
        if not steps_box.is_valid:
            self.notify("steps must be a whole number of at least 1", severity="error",
                        markup=False)
            return
        data = self.query_one("#ablate-data", Input).value.strip() or None
        text_field = self.query_one("#ablate-text-field", Input).value.strip() or None
        preset = self.query_one("#ablate-preset", Select).value
        try:
            run_dir = new_ablation_dir(self.runs_root)
            self.process = runs.launch_ablation(run_dir, variants, data, int(steps_box.value),
                                                preset, text_field)
        except (OSError, ValueError) as e:  # an unwritable folder, a NUL in a typed path
            self.notify(clean(f"cannot start the ablation: {e}"), severity="error", markup=False)
            return
        self.attach(run_dir)
        self.pid = self.process.pid

    def attach(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.tail = EventTail(self.run_dir)
        self.status = "starting"
        self.curves.clear()
        self.samples.clear()
        self.current = ""
        self.query_one(DataTable).clear()
        self.query_one(LossChart).clear()
        self.poll()

    def apply(self, ev: dict) -> None:
        """Take in one event (a dict with a string "type", as EventTail yields them). A field of
        the wrong kind counts as missing; an event without what it is for is skipped."""
        kind = ev["type"]
        status = self.query_one("#ablate-status", Static)
        if kind == "ablation_start":
            self.status, self.pid = "running", pid_of(ev)
            variants = ev.get("variants")
            for name in variants if isinstance(variants, list) else []:
                if isinstance(name, str):
                    self.curves.setdefault(name, ([], []))
        elif kind == "variant" and text(ev, "variant") is not None:
            index, count = whole(ev, "index"), whole(ev, "count")
            self.current = ev["variant"] + (f" ({index + 1}/{count})"
                                            if index is not None and count is not None else "")
            status.update(plain(f"training {self.current}"))
        elif kind == "step" and text(ev, "variant") is not None:
            name, step, loss = ev["variant"], whole(ev, "step"), number(ev, "loss")
            if step is None or loss is None:
                return
            if math.isfinite(loss):  # a diverged variant's NaN is said below, not drawn
                steps, losses = self.curves.setdefault(name, ([], []))
                steps.append(step)
                losses.append(loss)
            max_steps = whole(ev, "max_steps")
            status.update(plain(
                f"training {self.current or name}: step {step}/{_fmt(max_steps, 'd')}, "
                f"loss {loss:.3f}, {_fmt(number(ev, 'tokens_per_s'), ',.0f')} tok/s"))
        elif kind == "result" and text(ev, "variant") is not None:
            name, table = ev["variant"], self.query_one(DataTable)
            if name in self.samples:  # a variant's result again: the newer one stands
                table.remove_row(name)
            self.samples[name] = text(ev, "sample") or ""
            delta = "" if name == "baseline" else _fmt(number(ev, "val_loss_delta"), "+.3f")
            seconds = number(ev, "seconds")
            cells = [name, _fmt(number(ev, "train_loss"), ".3f"),
                     _fmt(number(ev, "val_loss"), ".3f"), delta,
                     _fmt(number(ev, "tokens_per_s"), ",.0f"),
                     "-" if seconds is None else f"{seconds:.0f}s"]
            table.add_row(*map(plain, cells), key=name)
        elif kind == "ablation_done":
            self.status = text(ev, "reason") or "finished"
            results = ev.get("results")
            count = (len(results) if isinstance(results, list)
                     else self.query_one(DataTable).row_count)
            status.update(plain(f"{self.status}: {count} variant(s) in the table; {self.run_dir}"))
        elif kind == "error":
            self.status = "failed"
            status.update(plain(f"failed: {text(ev, 'message') or ''}", "red"))

    def poll(self) -> None:
        if self.tail is None:
            return
        events = self.tail.read_new()
        for ev in events:
            self.apply(ev)
        self._dirty |= bool(events)
        if self.process is not None and self.process.poll() is not None:
            self.process = None
        if (self.status in ("starting", "running") and not events
                and self.process is None and not process_alive(self.pid)):  # asked only then
            self.status = "failed"
            self.query_one("#ablate-status", Static).update(
                plain(runs.last_output_line(self.run_dir) or "the ablation ended early", "red"))

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        chart = self.query_one(LossChart)
        for name, (steps, losses) in self.curves.items():
            chart.set_series(name, steps, losses)
        chart.redraw()

    @on(DataTable.RowHighlighted)
    def _show_sample(self, event: DataTable.RowHighlighted) -> None:
        name = event.row_key.value if event.row_key else None
        self.query_one("#ablate-sample", Static).update(
            assemble((name, "bold"), "\n", self.samples.get(name, "")) if name else "")

    @on(Button.Pressed, "#ablate-cancel")
    def action_cancel(self) -> None:
        if not self.is_live:
            self.notify("no ablation is running", severity="warning", markup=False)
            return
        runs.stop(self.pid)
        self.notify("cancelling: finished variants stay in the table", markup=False)

    def stop_run(self) -> None:
        if self.is_live:
            runs.stop(self.pid)
