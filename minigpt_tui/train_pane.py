"""The Train pane: start a run or attach to one, and watch it learn.

Training never runs in this process: `minigpt train` runs as a child in its own session and
appends to <run>/events.jsonl; this pane reads what is new four times a second (a non-blocking
read of a small file) and redraws at most twice a second, so watching costs training almost
nothing. Pause, save and stop are signals to the child.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import ProgressBar, Sparkline, Static

from minigpt.events import (
    PREPARE_STAGES,
    EventTail,
    new_run_dir,
    number,
    pid_of,
    process_alive,
    text,
    whole,
)
from minigpt_tui import runs
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.loss_chart import LossChart

LIVE = ("starting", "preparing", "running", "paused")
TRAINING = ("running", "paused")  # the child handles pause and save signals only once it trains


@dataclass
class RunState:
    """Everything the pane shows, rebuilt from the run's events."""

    run_dir: Path
    status: str = "starting"
    pid: int | None = None
    step: int = 0
    max_steps: int = 0
    device: str = ""
    precision: str = ""
    params: int = 0
    data: str = ""
    loss: float | None = None
    val_loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    flops_per_s: float | None = None
    mfu: float | None = None  # of the device's peak; None where the peak is unknown (CPUs)
    steps_per_s: float | None = None
    sample: str = ""
    checkpoint: str | None = None
    error: str = ""
    note: str = ""
    # the data's preparation, before the start (the "prepare" and "prepared" events)
    prep_stage: str = ""
    prep_bytes_done: int = 0
    prep_bytes_total: int = 0
    prep_tokens: int | None = None
    prep_tokens_per_s: float | None = None
    prep_elapsed: float | None = None
    prep_stage_began: float | None = None  # elapsed at this stage's first event: its ETA's base
    prepared: str = ""  # "data ready: ..." once the data is there, until the start
    step_xs: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    eval_xs: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    skipped: int = 0  # events that lacked what their type needs
    _last_step_event: tuple[int, float] | None = None

    def apply(self, ev: dict) -> None:
        """Take in one event (as EventTail yields them: a dict with a string "type"). Its fields
        are as its writer made them: one of the wrong kind counts as missing, and an event that
        lacks what it is for (a step without a step and a loss) is skipped and counted. NaN
        losses of a diverged run are shown as numbers but kept out of the curves."""
        kind = ev["type"]
        if kind == "prepare":
            stage = text(ev, "stage")
            if stage is None:
                self.skipped += 1
                return
            self.status, self.pid, self.prepared = "preparing", pid_of(ev) or self.pid, ""
            self.error = ""  # an earlier run's, in a folder resumed
            elapsed = number(ev, "elapsed")
            elapsed = elapsed if elapsed is not None and math.isfinite(elapsed) else None
            if stage != self.prep_stage or self.prep_stage_began is None:
                self.prep_stage, self.prep_stage_began = stage, elapsed
            self.prep_elapsed = elapsed
            self.prep_bytes_total = whole(ev, "bytes_total") or 0
            self.prep_bytes_done = min(whole(ev, "bytes_done") or 0, self.prep_bytes_total)
            self.prep_tokens = whole(ev, "tokens")
            self.prep_tokens_per_s = number(ev, "tokens_per_s")
        elif kind == "prepared":
            self.status, self.pid = "preparing", pid_of(ev) or self.pid
            tokens, seconds = whole(ev, "tokens"), number(ev, "seconds")
            how = ("cached" if ev.get("cached") is True else
                   f"prepared in {seconds:.1f} s" if seconds is not None else "prepared")
            self.prepared = f"data ready: {_fmt(tokens, ',')} tokens, {how}"
            self.prep_bytes_done = self.prep_bytes_total
        elif kind == "start":
            self.status, self.pid = "running", pid_of(ev)
            self.prepared = ""
            self.step, self.max_steps = whole(ev, "step") or 0, whole(ev, "max_steps") or 0
            self.device, self.params = text(ev, "device") or "", whole(ev, "params") or 0
            self.data = text(ev, "data") or ""
            self.precision = text(ev, "precision") or ""  # absent in runs from older versions
            self._last_step_event = None
        elif kind == "step":
            step, loss, time_ = whole(ev, "step"), number(ev, "loss"), number(ev, "time")
            if step is None or loss is None:
                self.skipped += 1
                return
            if time_ is not None and not math.isfinite(time_):
                time_ = None
            if self._last_step_event and time_ is not None:  # steps/s from consecutive steps
                prev_step, prev_time = self._last_step_event
                if time_ > prev_time:
                    self.steps_per_s = (step - prev_step) / (time_ - prev_time)
            self._last_step_event = None if time_ is None else (step, time_)
            self.step, self.max_steps = step, whole(ev, "max_steps") or self.max_steps
            self.loss, self.lr, self.grad_norm = loss, number(ev, "lr"), number(ev, "grad_norm")
            self.tokens_per_s = number(ev, "tokens_per_s")
            self.flops_per_s, self.mfu = number(ev, "flops_per_s"), number(ev, "mfu")
            if math.isfinite(loss):
                self.step_xs.append(step)
                self.step_losses.append(loss)
        elif kind == "eval":
            step, train, val = whole(ev, "step"), number(ev, "train_loss"), number(ev, "val_loss")
            if step is None or val is None:
                self.skipped += 1
                return
            self.val_loss = val
            if train is not None and math.isfinite(train) and math.isfinite(val):
                self.eval_xs.append(step)
                self.train_losses.append(train)
                self.val_losses.append(val)
        elif kind == "sample":
            if text(ev, "text") is None:
                self.skipped += 1
                return
            self.sample = ev["text"]
        elif kind == "checkpoint":
            self.checkpoint = text(ev, "path") or self.checkpoint
        elif kind == "paused":
            self.status = "paused"
        elif kind == "resumed":
            self.status = "running"
            self._last_step_event = None
        elif kind == "done":
            self.status = text(ev, "reason") or "finished"
            step = whole(ev, "step")
            self.step = self.step if step is None else step
            self.checkpoint = text(ev, "checkpoint") or self.checkpoint
        elif kind == "error":
            self.status, self.error = "failed", text(ev, "message") or ""
        elif kind == "note":  # e.g. torch.compile failed and the run went on without it
            self.note = text(ev, "message") or ""

    @property
    def eta_s(self) -> float | None:
        if self.status != "running" or not self.steps_per_s:
            return None
        return (self.max_steps - self.step) / self.steps_per_s

    @property
    def prep_eta_s(self) -> float | None:
        """The stage's time to go, at the pace of its bytes so far."""
        if (self.prep_elapsed is None or self.prep_stage_began is None or not self.prep_bytes_done
                or self.prep_elapsed <= self.prep_stage_began):
            return None
        rate = self.prep_bytes_done / (self.prep_elapsed - self.prep_stage_began)
        return (self.prep_bytes_total - self.prep_bytes_done) / rate


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _compute(s: RunState) -> str:
    """How hard the model works the device: MFU where the peak is known, else FLOP/s."""
    if s.mfu is not None:
        return f"MFU {s.mfu:.0%}"
    if s.flops_per_s is None:
        return ""
    if s.flops_per_s >= 1e12:
        return f"{s.flops_per_s / 1e12:.2f} TFLOP/s"
    return f"{s.flops_per_s / 1e9:.0f} GFLOP/s"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


class TrainPane(Widget, can_focus=True):
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("a", "attach", "Attach"),
        Binding("p", "pause", "Pause/resume"),
        Binding("s", "save", "Save now"),
        Binding("x", "stop", "Stop run"),
    ]

    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.state: RunState | None = None
        self.tail: EventTail | None = None
        self.process = None  # the Popen of a run this pane started (None when attached)
        self._dirty = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("No run yet: n starts one, a attaches to one.", id="train-title")
            yield ProgressBar(total=1, show_eta=False, id="train-progress")  # no idle animation
            yield Static("", id="train-stats")
            yield Sparkline([], id="train-spark")
            with Horizontal(id="train-body"):
                yield LossChart(id="train-chart")
                with VerticalScroll(id="train-sample-box"):
                    yield Static("", id="train-sample")

    def on_mount(self) -> None:
        self.set_interval(0.25, self.poll)
        self.set_interval(0.5, self.redraw)

    # --- following a run -----------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self.state is not None and self.state.status in LIVE

    def start_run(self, data: str | None, preset: str | None, steps: int | None,
                  text_field: str | None = None) -> Path | None:
        try:
            run_dir = new_run_dir(self.runs_root)
            self.process = runs.launch_training(run_dir, data, preset, steps,
                                                text_field=text_field)
        except (OSError, ValueError) as e:  # an unwritable folder, a NUL in a typed path
            message = clean(f"cannot start a run: {e}")
            self.notify(message, severity="error", markup=False)
            self.query_one("#train-title", Static).update(plain(message, "red"))  # stays in view
            return None
        self._follow(run_dir)
        self.state.pid = self.process.pid
        return run_dir

    def attach(self, run_dir: Path) -> None:
        self.process = None
        self._follow(Path(run_dir))

    def _follow(self, run_dir: Path) -> None:
        self.state = RunState(run_dir)
        self.tail = EventTail(run_dir)
        self.query_one(LossChart).clear()
        self.poll()

    def poll(self) -> None:
        """Read what the run wrote since the last call; notice if its process is gone."""
        if self.tail is None:
            return
        events = self.tail.read_new()
        for ev in events:
            self.state.apply(ev)
        self._dirty |= bool(events)
        if self.process is not None and self.process.poll() is not None:
            self.process = None  # reaped; what happened is in the events or its last words
        if self.state.status in LIVE and not events and not self._run_process_alive():
            self.state.status = "failed" if self.state.status == "starting" else "ended"
            self.state.error = runs.last_output_line(self.state.run_dir)
            self._dirty = True

    def _run_process_alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self.state.pid)

    def redraw(self, force: bool = False) -> None:
        if not (self._dirty or force) or self.state is None:
            return
        self._dirty = False
        s = self.state
        if s.status == "preparing":
            self._redraw_preparing(s)
            return
        title = assemble((s.run_dir.name, "bold"), f"  {s.status}")
        if s.status not in LIVE:
            title.append("  (read-only)")
        skipped = s.skipped + self.tail.skipped
        if skipped:
            title.append(f"  {skipped} unreadable event(s) skipped", style="dim")
        if s.error:
            title.append_text(plain(f"  {s.error}", "red"))
        elif s.note:
            title.append_text(plain(f"  {s.note}", "yellow"))
        self.query_one("#train-title", Static).update(title)
        self.query_one(ProgressBar).update(total=max(s.max_steps, 1), progress=s.step)
        params = f"{s.params / 1e6:.2f}M params" if s.params else ""
        self.query_one("#train-stats", Static).update(assemble(
            "step ", (str(s.step), "bold"), f"/{s.max_steps}  loss ", (_fmt(s.loss, ".3f"), "bold"),
            "  val ", (_fmt(s.val_loss, ".3f"), "bold"), f"  eta {_duration(s.eta_s)}\n"
            f"{_fmt(s.tokens_per_s, ',.0f')} tok/s  {_fmt(s.steps_per_s, '.1f')} steps/s  "
            f"{_compute(s)}  lr {_fmt(s.lr, '.2e')}  grad {_fmt(s.grad_norm, '.2f')}\n"
            f"{s.device} {s.precision}  {params}  {s.data}"))
        self.query_one(Sparkline).data = s.step_losses[-120:]  # finite only: see RunState.apply
        chart = self.query_one(LossChart)
        chart.set_series("train", s.eval_xs, s.train_losses)
        chart.set_series("val", s.eval_xs, s.val_losses)
        chart.set_series("step loss", s.step_xs, s.step_losses)
        chart.redraw()
        self.query_one("#train-sample", Static).update(
            plain(s.sample) if s.sample else plain("(a sample appears at each evaluation)"))

    def _redraw_preparing(self, s: RunState) -> None:
        """Before the start: the data's preparation (bytes read, tokens, tokens/s, ETA), then
        that it is ready, until training's start takes over."""
        if s.prepared:
            title = assemble((s.run_dir.name, "bold"), "  ", (s.prepared, "green"))
        else:
            title = assemble((s.run_dir.name, "bold"), "  preparing data: ",
                             PREPARE_STAGES.get(s.prep_stage, s.prep_stage))
        skipped = s.skipped + self.tail.skipped
        if skipped:
            title.append(f"  {skipped} unreadable event(s) skipped", style="dim")
        self.query_one("#train-title", Static).update(title)
        self.query_one(ProgressBar).update(total=max(s.prep_bytes_total, 1),
                                           progress=s.prep_bytes_done)
        share = f" ({s.prep_bytes_done / s.prep_bytes_total:.0%})" if s.prep_bytes_total else ""
        self.query_one("#train-stats", Static).update(assemble(
            f"{_size(s.prep_bytes_done)} of {_size(s.prep_bytes_total)}{share}  tokens ",
            (_fmt(s.prep_tokens, ","), "bold"), f"  {_fmt(s.prep_tokens_per_s, ',.0f')} tok/s  "
            f"elapsed {_duration(s.prep_elapsed)}  eta {_duration(s.prep_eta_s)}\n"
            "the data is tokenized once into the cache; training starts when it is ready"))
        self.query_one(Sparkline).data = []
        self.query_one("#train-sample", Static).update(plain("(a sample appears at each evaluation)"))

    # --- actions ---------------------------------------------------------------------------------

    def action_new_run(self) -> None:
        from minigpt_tui.widgets.new_run import NewRunForm

        if self.is_live:
            self.notify("a run is in progress here: stop it (x) first, or leave it and attach later",
                        severity="warning", markup=False)
            return

        def started(choice) -> None:
            if choice is not None:
                self.start_run(choice.data, choice.preset, choice.steps, choice.text_field)

        self.app.push_screen(NewRunForm(), started)

    def action_attach(self) -> None:
        self.app.pick_run()

    def _signal(self, send, done: str, training_only: bool = True) -> None:
        if not self.is_live:
            self.notify("no live run: this one is read-only", severity="warning", markup=False)
            return
        if training_only and self.state.status not in TRAINING:  # the signal would kill it
            self.notify("the run has not started training yet: pause and save work once it has",
                        severity="warning", markup=False)
            return
        if send(self.state.pid):
            self.notify(done, markup=False)
        else:
            self.notify("the run's process is gone", severity="error", markup=False)

    def action_pause(self) -> None:
        self._signal(runs.toggle_pause, "resuming" if self.state and self.state.status == "paused"
                     else "pausing after this step")

    def action_save(self) -> None:
        self._signal(runs.save_now, "saving a checkpoint after this step")

    def action_stop(self) -> None:
        if self.state is not None and self.state.status in ("starting", "preparing"):
            self._signal(runs.stop, "stopping: the run ends before training", training_only=False)
            return
        self._signal(runs.stop, "stopping: the run saves a checkpoint and ends")

    def stop_run(self) -> None:
        if self.is_live:
            runs.stop(self.state.pid)
