"""The Ablate pane: pick variants, train them against the baseline in the background, compare.

The ablation is `minigpt ablate ... --out RUN_DIR` in a child process (its own session, like a
training run), so its numbers are the ones the command prints headless for the same arguments;
this pane follows RUN_DIR/events.jsonl. Cancelling stops the variant in training; the finished
ones stay in the table.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import Integer
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Select, Static

from minigpt.ablation import VARIANTS
from minigpt.events import EventTail, new_run_dir, process_alive
from minigpt_tui import runs
from minigpt_tui.widgets.check_list import CheckList
from minigpt_tui.widgets.loss_chart import LossChart

PRESETS = [(p, p) for p in ("tiny", "cpu", "gpu", "gpt2")]
COLUMNS = ("variant", "train", "val", "vs base", "tok/s", "time")


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
        self.samples: dict[str, str] = {}
        self._dirty = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="ablate-top"):
            with Vertical(id="ablate-form"):
                yield CheckList(*[(name, name, name == "residual") for name in VARIANTS],
                                    id="ablate-variants")
                yield Input(placeholder="data: builtin", id="ablate-data", compact=True)
                with Horizontal(classes="setting"):
                    yield Input("200", id="ablate-steps", validators=[Integer(minimum=1)],
                                compact=True)
                    yield Select(PRESETS, value="cpu", allow_blank=False, id="ablate-preset",
                                 compact=True)
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
            self.notify("an ablation is running: cancel it first (ctrl+k)", severity="warning")
            return
        variants = list(self.query_one(CheckList).selected)
        steps_box = self.query_one("#ablate-steps", Input)
        if not variants:
            self.notify("pick at least one variant", severity="error")
            return
        if not steps_box.is_valid:
            self.notify("steps must be a whole number of at least 1", severity="error")
            return
        data = self.query_one("#ablate-data", Input).value.strip() or None
        preset = self.query_one("#ablate-preset", Select).value
        run_dir = new_run_dir(self.runs_root, f"ablate-{datetime.now():%Y%m%d-%H%M%S}")
        self.process = runs.launch_ablation(run_dir, variants, data, int(steps_box.value), preset)
        self.attach(run_dir)
        self.pid = self.process.pid

    def attach(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.tail = EventTail(self.run_dir)
        self.status = "starting"
        self.curves.clear()
        self.samples.clear()
        self.query_one(DataTable).clear()
        self.query_one(LossChart).clear()
        self.poll()

    def apply(self, ev: dict) -> None:
        kind = ev.get("type")
        status = self.query_one("#ablate-status", Static)
        if kind == "ablation_start":
            self.status, self.pid = "running", ev.get("pid")
            for name in ev["variants"]:
                self.curves.setdefault(name, ([], []))
        elif kind == "variant":
            self.current = f"{ev['variant']} ({ev['index'] + 1}/{ev['count']})"
            status.update(f"training {self.current}")
        elif kind == "step" and "variant" in ev:
            steps, losses = self.curves.setdefault(ev["variant"], ([], []))
            steps.append(ev["step"])
            losses.append(ev["loss"])
            status.update(f"training {self.current}: step {ev['step']}/{ev['max_steps']}, "
                          f"loss {ev['loss']:.3f}, {ev['tokens_per_s']:,.0f} tok/s")
        elif kind == "result":
            self.samples[ev["variant"]] = ev["sample"]
            delta = "" if ev["variant"] == "baseline" else f"{ev['val_loss_delta']:+.3f}"
            self.query_one(DataTable).add_row(
                ev["variant"], f"{ev['train_loss']:.3f}", f"{ev['val_loss']:.3f}", delta,
                f"{ev['tokens_per_s']:,.0f}", f"{ev['seconds']:.0f}s", key=ev["variant"])
        elif kind == "ablation_done":
            self.status = ev["reason"]
            status.update(f"{ev['reason']}: {len(ev['results'])} variant(s) in the table; "
                          f"{self.run_dir}")
        elif kind == "error":
            self.status = "failed"
            status.update(f"[red]failed: {ev.get('message', '')}[/red]")

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
                f"[red]{runs.last_output_line(self.run_dir) or 'the ablation ended early'}[/red]")

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
            f"[b]{name}[/b]\n{self.samples.get(name, '')}" if name else "")

    @on(Button.Pressed, "#ablate-cancel")
    def action_cancel(self) -> None:
        if not self.is_live:
            self.notify("no ablation is running", severity="warning")
            return
        runs.stop(self.pid)
        self.notify("cancelling: finished variants stay in the table")

    def stop_run(self) -> None:
        if self.is_live:
            runs.stop(self.pid)
