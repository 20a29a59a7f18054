"""The Train pane: start a run or attach to one, and watch it learn.

Training never runs in this process: `minigpt train` runs as a child in its own session and
appends to <run>/events.jsonl; a RunFollower reads what is new twice a second (a non-blocking
read of a small file) into the run's state, and the pane redraws when something came, so
watching costs training almost nothing. Pause, save and stop are signals to the child.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import ProgressBar, Sparkline, Static

from minigpt.runs.events import PREPARE_STAGES
from minigpt.runs.files import new_run_dir, run_files
from minigpt.runs.state import LIVE, Preferences, RunState, measured_at
from minigpt.units import clock, number, size
from minigpt_tui import runs
from minigpt_tui.messages import PickRun
from minigpt_tui.panes.following import FollowingPane
from minigpt_tui.screens.new_run import NewRunForm
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.grad_flow import layer_bars
from minigpt_tui.widgets.loss_chart import LossChart

TRAINING = ("running", "paused")  # the child handles pause and save signals only once it trains
NO_SAMPLE = "(a sample appears at each evaluation)"
SEPARATOR = " · "  # between the fields of a line of numbers, so none run together


def fields(*lines: list[tuple]) -> Text:
    """Lines of fields, each field a tuple of assemble()'s parts ("loss ", ("2.377", "bold")),
    with SEPARATOR between the fields of a line; an empty field is left out."""
    out = Text()
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        shown = [f for f in line if any(p if isinstance(p, str) else p[0] for p in f)]
        for j, field in enumerate(shown):
            if j:
                out.append(SEPARATOR, style="dim")
            out.append_text(assemble(*field))
    return out


def _compute(s: RunState) -> str:
    """How hard the model works the device: MFU where the peak is known, else FLOP/s."""
    if s.mfu is not None:
        return f"MFU {s.mfu:.0%}"
    if s.flops_per_s is None:
        return ""
    if s.flops_per_s >= 1e12:
        return f"{s.flops_per_s / 1e12:.2f} TFLOP/s"
    return f"{s.flops_per_s / 1e9:.0f} GFLOP/s"


def _preferences(s: RunState) -> list[tuple]:
    """A preference-tuning (DPO) run's line of fields: its latest logged step's reward margin,
    preference accuracy (and its latest evaluation's, of the validation pairs) and KL from the
    reference model (its mean log-ratio on the replies)."""
    p, v = s.preferences or Preferences(), s.val_preferences
    accuracy = ("accuracy ", (number(p.accuracy, ".0%"), "bold"))
    if v is not None:
        accuracy += (", val ", (number(v.accuracy, ".0%"), "bold"), measured_at(v.step, s.step))
    return [("DPO reward margin ", (number(p.margin, ".3f"), "bold")), accuracy,
            ("KL ", (number(p.kl, ".3f"), "bold"))]


class TrainPane(FollowingPane, can_focus=True):
    """One training run: its numbers, its loss curves, its gradients and its latest sample; keys
    start a run, attach to one, and pause, save or stop the one that is live."""

    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("a", "attach", "Attach"),
        Binding("p", "pause", "Pause/resume"),
        Binding("s", "save", "Save now"),
        Binding("x", "stop", "Stop run"),
    ]
    RUN_NAME = "Training"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("No run yet: n starts one, a attaches to one.", id="train-title")
            yield ProgressBar(total=1, show_eta=False, id="train-progress")  # no idle animation
            yield Static("", id="train-stats")
            yield Sparkline([], id="train-spark")
            with Horizontal(id="train-body"):
                yield LossChart(id="train-chart")
                with VerticalScroll(id="train-sample-box"):
                    yield Static("", id="train-grad", classes="grad-flow")  # once a step has them
                    yield Static("", id="train-sample")

    # --- following a run -----------------------------------------------------------------------

    @property
    def checkpoint(self) -> Path | None:
        s = self.state
        if s is None:
            return None
        return Path(s.checkpoint) if s.checkpoint else run_files(s.run_dir).checkpoint

    def start_run(self, data: str | None, preset: str | None, steps: int | None,
                  text_field: str | None = None, time: str | None = None) -> Path | None:
        """Start `minigpt train` in a new run directory and follow it. time: how long to train,
        as typed (110s, 5m): a timed run, instead of steps."""
        try:
            run_dir = new_run_dir(self.runs_root)
            process = runs.launch_training(run_dir, data, preset, steps, text_field=text_field,
                                           time=time)
        except (OSError, ValueError) as e:  # an unwritable folder, a NUL in a typed path
            message = clean(f"cannot start a run: {e}")
            self.notify(message, severity="error", markup=False)
            self.query_one("#train-title", Static).update(plain(message, "red"))  # stays in view
            return None
        self.attach(run_dir, process)
        return run_dir

    def clear_run(self) -> None:
        self.query_one(LossChart).clear()

    def redraw(self) -> None:
        s = self.state
        if s is None:
            return
        if s.status == "preparing":
            self._redraw_preparing(s)
            return
        title = assemble((run_files(s.run_dir).name, "bold"), f"  {s.status}")
        if s.stopped_by:
            title.append_text(plain(f" ({s.stopped_by})"))
        if s.status not in LIVE:
            title.append("  (read-only)")
        if self.follower.skipped:
            title.append(f"  {self.follower.skipped} unreadable event(s) skipped", style="dim")
        if s.error:
            title.append_text(plain(f"  {s.error}", "red"))
        elif s.note:
            title.append_text(plain(f"  {s.note}", "yellow"))
        self.query_one("#train-title", Static).update(title)
        # a finished timed run may end a little before its time (its final evaluation was quicker
        # than the time kept for it): the bar is full all the same
        done = s.length if s.status == "finished" else s.progress
        self.query_one(ProgressBar).update(total=max(s.length, 1), progress=done)
        params = f"{s.params / 1e6:.2f}M params" if s.params else ""
        if s.time_budget is None:
            length = [("step ", (str(s.step), "bold"), f"/{s.max_steps}")]
        else:  # a timed run: the clock is its length
            length = [("step ", (str(s.step), "bold")),
                      ("time ", (clock(s.progress), "bold"), f"/{clock(s.time_budget)}")]
        lines = [
            [*length,
             ("loss ", (number(s.loss, ".3f"), "bold")),
             ("val ", (number(s.val_loss, ".3f"), "bold"), measured_at(s.val_step, s.step)),
             (f"eta {clock(s.eta_s)}",)],
            [(f"{number(s.tokens_per_s, ',.0f')} tok/s",),
             (f"{number(s.steps_per_s, '.1f')} steps/s",), (_compute(s),),
             (f"lr {number(s.lr, '.2e')}",), (f"grad {number(s.grad_norm, '.2f')}",)],
            [(f"{s.device} {s.precision}".strip(),), (params,), (s.data,)]]
        tuned = s.preferences is not None or s.val_preferences is not None  # a DPO run
        if tuned:
            lines.append(_preferences(s))
        stats = self.query_one("#train-stats", Static)
        stats.set_class(tuned, "-preferences")
        stats.update(fields(*lines))
        self.query_one(Sparkline).data = s.step_losses[-120:]  # finite only: see RunState
        chart = self.query_one(LossChart)
        chart.set_series("train", s.eval_xs, s.train_losses)
        chart.set_series("val", s.eval_xs, s.val_losses)
        chart.set_series("step loss", s.step_xs, s.step_losses)
        chart.redraw()
        grad = self.query_one("#train-grad", Static)
        grad.display = bool(s.grad_norms)
        grad.update(layer_bars(s.grad_norms, s.update_ratios))
        self.query_one("#train-sample", Static).update(
            plain(s.sample if s.sample else NO_SAMPLE))

    def _redraw_preparing(self, s: RunState) -> None:
        """Before the start: the data's preparation (bytes read, tokens, tokens/s, ETA), then
        that it is ready, until training's start takes over."""
        p = s.prep
        if p.ready:
            how = ("cached" if p.cached else
                   f"prepared in {p.seconds:.1f} s" if p.seconds is not None else "prepared")
            title = assemble((run_files(s.run_dir).name, "bold"), "  ",
                             (f"data ready: {number(p.tokens, ',')} tokens, {how}", "green"))
        else:
            title = assemble((run_files(s.run_dir).name, "bold"), "  preparing data: ",
                             PREPARE_STAGES.get(p.stage, p.stage))
        if s.note:  # a damaged cache entry, prepared again
            title.append_text(plain(f"  {s.note}", "yellow"))
        if self.follower.skipped:
            title.append(f"  {self.follower.skipped} unreadable event(s) skipped", style="dim")
        self.query_one("#train-title", Static).update(title)
        self.query_one(ProgressBar).update(total=max(p.bytes_total, 1), progress=p.bytes_done)
        self.query_one("#train-stats", Static).set_class(False, "-preferences")
        share = f" ({p.bytes_done / p.bytes_total:.0%})" if p.bytes_total else ""
        stats = fields(
            [(f"{size(p.bytes_done)} of {size(p.bytes_total)}{share}",),
             ("tokens ", (number(p.tokens, ","), "bold")),
             (f"{number(p.tokens_per_s, ',.0f')} tok/s",)],
            [(f"elapsed {clock(p.elapsed)}",), (f"eta {clock(p.eta_s)}",)])
        stats.append("\nthe data is tokenized once into the cache; training starts when ready")
        self.query_one("#train-stats", Static).update(stats)
        self.query_one(Sparkline).data = []
        self.query_one("#train-sample", Static).update(plain(NO_SAMPLE))

    # --- actions ---------------------------------------------------------------------------------

    def action_new_run(self) -> None:
        if self.is_live:
            self.notify("a run is in progress here: stop it (x) first, or leave it and attach "
                        "later", severity="warning", markup=False)
            return

        def started(choice) -> None:
            if choice is not None:
                self.start_run(choice.data, choice.preset, choice.steps, choice.text_field,
                               choice.time)

        self.app.push_screen(NewRunForm(), started)

    def action_attach(self) -> None:
        self.post_message(PickRun())

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
        stop = lambda pid: self.follower.ask_to_stop()  # noqa: E731 (the follower knows the pid)
        if self.state is not None and self.state.status in ("starting", "preparing"):
            self._signal(stop, "stopping: the run ends before training", training_only=False)
            return
        self._signal(stop, "stopping: the run saves a checkpoint and ends")
