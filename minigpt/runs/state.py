"""A run's state, folded from its events: the one place that says what a stream of events means.

RunState.apply(ev) takes in one event as EventTail yields it (a dict whose "type" is a string)
and reads nothing else: no clock, no file, no process. Whether the run's process still lives is
a fact only the caller can look up, so the caller says it: process_ended(). The command line,
the Train and Ablate panes, the run picker and summarize_run all see a run through this fold.

The fields of an event are as its writer made them: one of the wrong kind counts as missing,
and an event that lacks what it is for (a step without a step and a loss) is skipped and
counted. NaN losses of a diverged run are kept as the latest numbers but out of the curves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from minigpt.runs.files import DEFAULT_RUNS_ROOT, EVENTS_NAME, EVENTS_SUFFIX, run_files
from minigpt.runs.log import process_alive, read_events
from minigpt.runs.read import number, pid_of, text, whole
from minigpt.runs.results import VariantResult, by_layer

LIVE = ("starting", "preparing", "running", "paused")  # the run's process may still write
KINDS = ("train", "ablate")  # the commands that write a run directory


@dataclass
class Preparation:
    """The data's preparation, before the start: the "prepare" and "prepared" events."""

    stage: str = ""  # a key of events.PREPARE_STAGES
    bytes_done: int = 0
    bytes_total: int = 0
    tokens: int | None = None
    tokens_per_s: float | None = None
    elapsed: float | None = None  # since the preparation began
    stage_began: float | None = None  # elapsed at this stage's first event: its ETA's base
    ready: bool = False  # the data is there ("prepared"), until the start
    cached: bool = False  # found ready: nothing tokenized
    seconds: float | None = None  # how long preparing took

    @property
    def eta_s(self) -> float | None:
        """The stage's time to go, at the pace of its bytes so far."""
        if (self.elapsed is None or self.stage_began is None or not self.bytes_done
                or self.elapsed <= self.stage_began):
            return None
        rate = self.bytes_done / (self.elapsed - self.stage_began)
        return (self.bytes_total - self.bytes_done) / rate


@dataclass
class Preferences:
    """A preference-tuning (DPO) run's measures at a logged step, or at an evaluation of its
    validation pairs (events._Preferences)."""

    accuracy: float | None = None  # the share of pairs whose chosen reply the model prefers
    margin: float | None = None  # beta times how much more than the reference it prefers it
    kl: float | None = None  # the replies' mean log-ratio to the reference: how far it moved
    step: int | None = None

    @classmethod
    def from_event(cls, ev: dict) -> Preferences | None:
        """The measures a step or eval event carries; None for one that has none (a run that
        tunes on no pairs)."""
        found = cls(number(ev, "accuracy"), number(ev, "margin"), number(ev, "kl"),
                    whole(ev, "step"))
        measured = (found.accuracy, found.margin, found.kl)
        return found if any(v is not None for v in measured) else None


@dataclass
class Spread:
    """A variant's loss across its seeds: at each step one seed or more logged, their mean,
    lowest and highest, and how many seeds logged it."""

    steps: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def seed_spread(curves: dict[int, tuple[list[int], list[float]]]) -> Spread:
    """The spread of a variant's seeds' curves (RunState.seed_curves[variant]). A step counts
    the seeds that logged it: while a later seed trains, the steps it has not reached yet are
    the earlier seeds' alone; a timed run's seeds end at different steps."""
    by_step: dict[int, list[float]] = {}
    for steps, losses in curves.values():
        for step, loss in dict(zip(steps, losses, strict=False)).items():
            by_step.setdefault(step, []).append(loss)
    spread = Spread()
    for step in sorted(by_step):
        losses = by_step[step]
        spread.steps.append(step)
        spread.mean.append(sum(losses) / len(losses))
        spread.low.append(min(losses))
        spread.high.append(max(losses))
        spread.seeds.append(len(losses))
    return spread


def _seconds(ev: dict, key: str) -> float | None:
    """ev[key] if it is a finite number of seconds, more than 0; else None."""
    value = number(ev, key)
    return value if value is not None and math.isfinite(value) and value > 0 else None


@dataclass
class RunState:
    """What a run is doing, as far as its events say."""

    run_dir: Path | None = None  # where the events come from (events.run_files), for whoever shows them
    kind: str = "train"  # "train" or "ablate"
    status: str = "starting"  # LIVE, or "finished", "stopped", "interrupted", "cancelled",
    #                           "failed" (its last event says why), "ended" (killed: no word)
    pid: int | None = None
    step: int = 0
    max_steps: int = 0
    time_budget: float | None = None  # a timed run's seconds in all; None: it ends at max_steps
    time_spent: float = 0.0  # the seconds it has trained (evaluations in, pauses out)
    device: str = ""
    precision: str = ""
    params: int = 0
    data: str = ""
    loss: float | None = None
    val_loss: float | None = None
    val_step: int | None = None  # the step val_loss was measured at
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    flops_per_s: float | None = None
    mfu: float | None = None  # of the device's peak; None where the peak is unknown (CPUs)
    grad_norms: dict[str, float] = field(default_factory=dict)  # the latest, by layer
    update_ratios: dict[str, float] = field(default_factory=dict)
    steps_per_s: float | None = None
    sample: str = ""
    checkpoint: str | None = None
    error: str = ""
    note: str = ""
    stopped_by: str = ""  # what stopped it: "SIGHUP: the terminal closed" (the done event's signal)
    prep: Preparation = field(default_factory=Preparation)
    # a preference-tuning run's: its latest logged step's, and its latest evaluation's (of the
    # validation pairs); None for a run of another objective
    preferences: Preferences | None = None
    val_preferences: Preferences | None = None
    # the curves: logged steps' losses, and the evaluations' train and validation losses
    step_xs: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    eval_xs: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    # an ablation: its variants, the one in training, their loss curves and results
    variants: list[str] = field(default_factory=list)
    variant: str = ""
    variant_index: int | None = None
    variant_count: int | None = None
    variant_kinds: dict[str, str] = field(default_factory=dict)  # model/switches.KINDS
    seeds: int = 1  # how many seeds each variant trains at
    seed: int | None = None  # the seed in training, 0..seeds-1
    variant_curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)  # seed 0
    seed_curves: dict[str, dict[int, tuple[list[int], list[float]]]] = field(default_factory=dict)
    results: dict[str, VariantResult] = field(default_factory=dict)  # in the order they came
    scaling: dict | None = None  # a size sweep's power laws (ablation_done's "scaling")
    variant_grad_norms: dict[str, dict[str, float]] = field(default_factory=dict)  # the latest
    skipped: int = 0  # events that lacked what their type needs
    _last_step: tuple[int, float] | None = field(default=None, repr=False)  # for steps/s

    def apply(self, ev: dict) -> None:
        """Take in one event (a dict with a string "type"); a type it does not know changes
        nothing."""
        handler = HANDLERS.get(ev["type"])
        if handler is not None:
            handler(self, ev)

    def process_ended(self, last_words: str = "", asked_to_stop: bool = False) -> None:
        """The run's process is gone. A run that had not said how it ended was killed ("ended"),
        or never got to its first event ("failed"); last_words (what it printed last) say why.
        asked_to_stop: the caller stopped it before it trained (a stop that lands while Python
        starts ends it with no word): "stopped"."""
        if self.status not in LIVE:
            return
        if asked_to_stop and self.status in ("starting", "preparing"):
            self.status = "stopped"
            return
        self.status = "failed" if self.status == "starting" else "ended"
        if last_words:
            self.error = last_words

    @property
    def length(self) -> float:
        """How long the run is: a timed run's seconds, else its steps."""
        return self.max_steps if self.time_budget is None else self.time_budget

    @property
    def progress(self) -> float:
        """How far it is, in length's units."""
        return self.step if self.time_budget is None else min(self.time_spent, self.time_budget)

    @property
    def eta_s(self) -> float | None:
        if self.status != "running":
            return None
        if self.time_budget is not None:  # as of its latest step
            return self.time_budget - self.progress
        if not self.steps_per_s:
            return None
        return (self.max_steps - self.step) / self.steps_per_s

    # --- one method per type of event (HANDLERS below) ---------------------------------------

    def _begin(self, ev: dict, status: str) -> None:
        """A run begins (or goes on) in this folder: an earlier run's error is old news."""
        self.status, self.pid, self.error = status, pid_of(ev) or self.pid, ""
        command = text(ev, "command")
        if command in KINDS:  # the preparation's events say which command runs
            self.kind = command

    def _prepare(self, ev: dict) -> None:
        stage = text(ev, "stage")
        if stage is None:
            self.skipped += 1
            return
        self._begin(ev, "preparing")
        p = self.prep
        p.ready = False
        elapsed = number(ev, "elapsed")
        elapsed = elapsed if elapsed is not None and math.isfinite(elapsed) else None
        if stage != p.stage or p.stage_began is None:
            p.stage, p.stage_began = stage, elapsed
        p.elapsed = elapsed
        p.bytes_total = whole(ev, "bytes_total") or 0
        p.bytes_done = min(whole(ev, "bytes_done") or 0, p.bytes_total)
        p.tokens = whole(ev, "tokens")
        p.tokens_per_s = number(ev, "tokens_per_s")

    def _prepared(self, ev: dict) -> None:
        self._begin(ev, "preparing")
        p = self.prep
        p.ready, p.cached = True, ev.get("cached") is True
        p.tokens, p.seconds = whole(ev, "tokens"), number(ev, "seconds")
        p.bytes_done = p.bytes_total

    def _start(self, ev: dict) -> None:
        self.step, self.max_steps = whole(ev, "step") or 0, whole(ev, "max_steps") or 0
        self.device, self.params = text(ev, "device") or "", whole(ev, "params") or 0
        self.precision = text(ev, "precision") or ""  # absent in runs from older versions
        self.time_budget = _seconds(ev, "time_budget")  # absent: a run by steps, or an older one
        self.time_spent = _seconds(ev, "time_spent") or 0.0
        self._last_step = None
        if text(ev, "variant") is not None:  # a variant's training: the ablation goes on
            self.seed = whole(ev, "seed")
            return
        self._begin(ev, "running")
        self.kind, self.data = "train", text(ev, "data") or ""

    def _step(self, ev: dict) -> None:
        step, loss, time_ = whole(ev, "step"), number(ev, "loss"), number(ev, "time")
        if step is None or loss is None:
            self.skipped += 1
            return
        if time_ is not None and not math.isfinite(time_):
            time_ = None
        if self._last_step and time_ is not None:  # steps/s from consecutive steps
            prev_step, prev_time = self._last_step
            if time_ > prev_time:
                self.steps_per_s = (step - prev_step) / (time_ - prev_time)
        self._last_step = None if time_ is None else (step, time_)
        self.step, self.max_steps = step, whole(ev, "max_steps") or self.max_steps
        self.time_spent = _seconds(ev, "time_spent") or self.time_spent
        self.loss, self.lr, self.grad_norm = loss, number(ev, "lr"), number(ev, "grad_norm")
        self.tokens_per_s = number(ev, "tokens_per_s")
        self.flops_per_s, self.mfu = number(ev, "flops_per_s"), number(ev, "mfu")
        variant = text(ev, "variant")
        grad_norms = by_layer(ev, "grad_norms")
        if grad_norms:  # steps of older runs have none: the last measured ones stay
            self.grad_norms, self.update_ratios = grad_norms, by_layer(ev, "update_ratios")
            if variant is not None:
                self.variant_grad_norms[variant] = grad_norms
        self.preferences = Preferences.from_event(ev) or self.preferences
        if not math.isfinite(loss):  # a diverged run's NaN is said, not drawn
            return
        if variant is None:
            self.step_xs.append(step)
            self.step_losses.append(loss)
            return
        seed = whole(ev, "seed") or 0
        steps, losses = self.seed_curves.setdefault(variant, {}).setdefault(seed, ([], []))
        steps.append(step)
        losses.append(loss)
        if seed == 0:
            first = self.variant_curves.setdefault(variant, ([], []))
            first[0].append(step)
            first[1].append(loss)

    def _eval(self, ev: dict) -> None:
        step, train, val = whole(ev, "step"), number(ev, "train_loss"), number(ev, "val_loss")
        if step is None or val is None:
            self.skipped += 1
            return
        self.val_loss, self.val_step = val, step
        self.val_preferences = Preferences.from_event(ev) or self.val_preferences
        self._last_step = None  # an evaluation is not slowness
        if (text(ev, "variant") is None and train is not None and math.isfinite(train)
                and math.isfinite(val)):
            self.eval_xs.append(step)
            self.train_losses.append(train)
            self.val_losses.append(val)

    def _sample(self, ev: dict) -> None:
        sample = text(ev, "text")
        if sample is None:
            self.skipped += 1
            return
        self.sample = sample

    def _checkpoint(self, ev: dict) -> None:
        self.checkpoint = text(ev, "path") or self.checkpoint
        self._last_step = None  # nor is a save

    def _paused(self, ev: dict) -> None:
        self.status = "paused"

    def _resumed(self, ev: dict) -> None:
        self.status = "running"
        self._last_step = None  # a pause is not slowness

    def _done(self, ev: dict) -> None:
        step = whole(ev, "step")
        self.step = self.step if step is None else step
        self.time_spent = _seconds(ev, "time_spent") or self.time_spent
        if text(ev, "variant") is not None:  # a variant finished: its result follows
            return
        self.status = text(ev, "reason") or "finished"
        self.stopped_by = text(ev, "signal") or ""
        self.checkpoint = text(ev, "checkpoint") or self.checkpoint

    def _error(self, ev: dict) -> None:
        self.status, self.error = "failed", text(ev, "message") or ""

    def _note(self, ev: dict) -> None:  # e.g. torch.compile failed and the run went on without it
        self.note = text(ev, "message") or ""

    def _ablation_start(self, ev: dict) -> None:
        self._begin(ev, "running")
        self.kind, self.data = "ablate", text(ev, "data") or ""
        self.step, self.max_steps = whole(ev, "step") or 0, whole(ev, "max_steps") or 0
        variants = ev.get("variants")
        self.variants = [n for n in (variants if isinstance(variants, list) else [])
                         if isinstance(n, str)]
        kinds = ev.get("kinds") if isinstance(ev.get("kinds"), dict) else {}
        self.variant_kinds = {n: k for n, k in kinds.items() if isinstance(k, str)}
        self.seeds = whole(ev, "seeds") or 1
        self.time_budget = _seconds(ev, "time_budget")
        for name in self.variants:  # each its colour in the chart, in the order they will run
            self.variant_curves.setdefault(name, ([], []))

    def _variant(self, ev: dict) -> None:
        name = text(ev, "variant")
        if name is None:
            self.skipped += 1
            return
        self.variant, self.variant_index, self.variant_count = (
            name, whole(ev, "index"), whole(ev, "count"))
        self.step, self.max_steps = 0, whole(ev, "max_steps") or self.max_steps
        self.loss = self.tokens_per_s = None
        self.grad_norms, self.update_ratios = {}, {}
        self._last_step = None
        self.variant_curves.setdefault(name, ([], []))

    def _result(self, ev: dict) -> None:
        name = text(ev, "variant")
        if name is None:
            self.skipped += 1
            return
        self.results.pop(name, None)  # a variant's result again: the newer one stands, last
        self.results[name] = VariantResult.from_event(ev)

    def _ablation_done(self, ev: dict) -> None:
        self.status = text(ev, "reason") or "finished"
        scaling = ev.get("scaling")
        if isinstance(scaling, dict):  # read where it is drawn (train/scaling.Sweep.from_dict)
            self.scaling = scaling


HANDLERS = {  # a type of event (events.SCHEMA) -> how it changes a run's state
    "prepare": RunState._prepare, "prepared": RunState._prepared,
    "start": RunState._start, "step": RunState._step, "eval": RunState._eval,
    "sample": RunState._sample, "checkpoint": RunState._checkpoint,
    "paused": RunState._paused, "resumed": RunState._resumed, "done": RunState._done,
    "error": RunState._error, "note": RunState._note,
    "ablation_start": RunState._ablation_start, "variant": RunState._variant,
    "result": RunState._result, "ablation_done": RunState._ablation_done,
}


def replay(events: Iterable[dict], run_dir: Path | None = None) -> RunState:
    """The state the events leave a run in, folded one by one from the start."""
    state = RunState(run_dir)
    for ev in events:
        state.apply(ev)
    return state


# --- the run picker's rows ---------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run picker shows about a run directory."""

    path: Path
    kind: str  # "train" or "ablate"
    status: str  # as RunState's, but never "starting"
    step: int
    max_steps: int
    val_loss: float | None
    data: str
    pid: int | None
    modified: float
    time_budget: float | None = None  # a timed run's seconds in all
    val_step: int | None = None  # the step val_loss was measured at


def measured_at(val_step: int | None, step: int) -> str:
    """' (step N)' after a validation loss measured at an earlier step than the run's (between
    evaluations, or a run stopped during one), so that it is not read as the model's now."""
    return "" if val_step is None or val_step == step else f" (step {val_step})"


def summarize_run(run_dir: str | os.PathLike) -> RunSummary | None:
    """What the run's events say about it, or None if they hold neither a start, nor a data
    preparation, nor an error that ended the run before either. A live status ("preparing",
    "running", "paused") holds while the process that wrote it lives; "ended" once it is gone.
    Never raises on what the file holds."""
    run_dir = Path(run_dir)
    state = replay(read_events(run_dir), run_dir)
    if state.status == "starting":
        return None  # not a run, or one whose first event is still to come
    if state.status in LIVE and not process_alive(state.pid):
        state.process_ended()
    try:
        modified = run_files(run_dir).events.stat().st_mtime
    except OSError:  # removed since we read it
        modified = 0.0
    return RunSummary(path=run_dir, kind=state.kind, status=state.status, step=state.step,
                      max_steps=state.max_steps, val_loss=state.val_loss, data=state.data,
                      pid=state.pid, modified=modified, time_budget=state.time_budget,
                      val_step=state.val_step)


def list_runs(root: str | os.PathLike = DEFAULT_RUNS_ROOT) -> list[RunSummary]:
    """Every run under root, newest first: the run directories in it, and the named runs
    (NAME.events.jsonl beside NAME.pt) in it and in its folders."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if folder is not root and (folder / EVENTS_NAME).is_file():
            found.append(folder)
        found.extend(sorted(folder.glob(f"*{EVENTS_SUFFIX}")))
    runs = [summarize_run(p) for p in found]
    return sorted((r for r in runs if r), key=lambda r: r.modified, reverse=True)
