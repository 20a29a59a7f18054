"""The run directory and its event log.

`minigpt train` writes `checkpoints/<run>/` with `model.pt` and `events.jsonl`: one JSON object a
line, appended and flushed as training goes, so another process (the TUI, `--attach`, a test) can
replay a run's history and follow it live. A run named by its checkpoint file (`train --out
NAME.pt`) keeps its files beside it instead, under its name (NAME.events.jsonl, .NAME.lock), so
that several such runs share a folder: see RunFiles. Everything here that takes a run takes
either: a run directory, or a named run's events file. What each kind of event carries is written once, as
code, in the schema below (SCHEMA); event() refuses a type or a field outside it, and
runstate.py folds a stream of events into what a run is doing.

A run directory has one writer: the process that writes it holds an exclusive lock on its
`.lock` file (which names its pid) from start to end, and a second `minigpt train` or `ablate`
aimed at it is refused. The operating system drops the lock when its process ends, however it
ends, so a killed run never blocks the next one.

An ablation's directory holds the events of every variant, each tagged "variant", between
"ablation_start" and "ablation_done", with a "result" event per finished variant.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypedDict

EVENTS_NAME = "events.jsonl"
LOCK_NAME = ".lock"
CHECKPOINT_NAME = "model.pt"  # a run directory's checkpoint
EVENTS_SUFFIX = ".events.jsonl"  # a named run's events: NAME.events.jsonl beside NAME.pt
DEFAULT_RUNS_ROOT = Path("checkpoints")
PREPARE_STAGES = {"vocabulary": "collecting characters", "sample": "reading a BPE sample",
                  "encode": "tokenizing", "check": "checking the cached tokens"}  # what each stage of a "prepare" event is doing


# --- the schema: what each kind of event carries ------------------------------------------------
#
# Every event has "type" (the name in SCHEMA) and "time" (Unix seconds). A record's fields are
# those its writer always writes; the tags (total=False) are added to some by whoever passes them
# on. Readers never trust these types: a file is whatever is on the disk, so they read fields
# with number(), whole(), text() and pid_of() below.


class _Event(TypedDict):
    type: str
    time: float


class _OfVariant(TypedDict, total=False):
    variant: str  # the ablation variant whose training wrote it (AblationRunner tags each one)


class _OfProcess(TypedDict, total=False):
    pid: int  # the process preparing the data, so a follower can tell whether it lives
    command: str  # "train" or "ablate": what the run is, known from its first event


class Start(_Event, _OfVariant):
    """Training begins (or resumes) at step."""
    step: int
    max_steps: int  # the run's length; a timed run's schedule only (it ends by its time)
    time_budget: float | None  # a timed run's seconds in all (--time); None: it ends at max_steps
    time_spent: float  # the seconds it trained before this start (resumed: the earlier runs')
    config: dict  # TrainConfig.to_dict()
    device: str
    precision: str  # "bf16" or "fp32"
    peak_flops: float | None  # of all processes' devices; None where unknown, as on CPUs
    compiled: bool  # --compile
    params: int
    data: str  # the corpus, as the user would name it
    data_source: str | None
    data_key: str  # the prepared data's cache key
    tokenizer: str
    vocab_size: int
    train_tokens: int
    val_tokens: int
    run_dir: str | None
    pid: int
    world_size: int


class Step(_Event, _OfVariant):
    """A logged step: the loss of the steps since the last one, and the pace."""
    step: int
    max_steps: int
    loss: float  # NaN once a run diverges
    lr: float
    grad_norm: float
    tokens_per_s: float
    flops_per_s: float  # the model FLOPs those tokens need (PaLM's count)
    mfu: float | None  # flops_per_s / peak_flops, or None
    elapsed: float  # since this start
    time_spent: float  # since the run's first start: evaluations in, pauses out (Trainer.time_spent)
    # by layer, in the order the tokens flow ("embedding", "1".."n_layer", "head"; gradflow.py):
    grad_norms: dict[str, float]  # the norm of each layer's gradients, before clipping
    update_ratios: dict[str, float]  # how far this step moved each layer's weights: ||dw||/||w||


class Eval(_Event, _OfVariant):
    step: int
    train_loss: float
    val_loss: float


class Sample(_Event, _OfVariant):
    step: int
    text: str


class Checkpoint(_Event, _OfVariant):
    step: int
    path: str | None


class Done(_Event, _OfVariant):
    step: int  # absent when the run was stopped before training began
    reason: str  # "finished", "interrupted" or "stopped"
    signal: str | None  # what stopped it: "SIGTERM", "SIGHUP: the terminal closed"; else None
    train_loss: float | None
    val_loss: float | None
    tokens_per_s: float  # of this start's steps (a resumed run's earlier ones are not counted)
    elapsed: float
    time_spent: float  # as a step's: a timed run's is about its time_budget
    final_eval_seconds: float | None  # of the final evaluation and save (in time_spent); None
    #                                   when the run was stopped before its end
    checkpoint: str | None


class Paused(_Event, _OfVariant):
    step: int


class Resumed(_Event, _OfVariant):
    step: int


class Error(_Event):
    """The run's last event: one line, as the command prints it."""
    message: str


class Note(_Event, _OfVariant):
    """Something the user should know: compiling failed, a variant diverged."""
    step: int
    message: str


class Prepare(_Event, _OfProcess):
    """The data's preparation, before "start", a few times a second (see prepare.py): the run is
    preparing until its start."""
    stage: str  # a key of PREPARE_STAGES
    bytes_done: int  # of this stage's reading of the source
    bytes_total: int
    tokens: int  # written so far
    tokens_per_s: float
    elapsed: float  # since preparation began


class Prepared(_Event, _OfProcess):
    path: str
    cached: bool  # found ready: nothing tokenized
    tokens: int
    dtype: str
    tokenizer: str
    vocab_size: int
    seconds: float


class AblationStart(_Event):
    variants: list[str]  # the baseline first
    descriptions: dict[str, str]
    max_steps: int
    step: int
    data: str
    config: dict
    pid: int


class VariantStart(_Event):
    """The next variant begins training: index of count."""
    variant: str
    description: str
    index: int
    count: int
    max_steps: int


class Result(_Event):
    """A finished variant. One whose training diverged has null losses, and "diverged" says how."""
    variant: str
    description: str
    train_loss: float | None
    val_loss: float | None
    val_loss_delta: float | None  # against the baseline's
    tokens_per_s: float
    seconds: float
    params: int
    steps: int
    sample: str
    diverged: str | None
    distinct_4grams: float  # the share of the sample's 4-grams (of characters) that are distinct
    grad_norms: dict[str, float]  # each layer's gradient norm, the mean over the logged steps
    evidence: str  # what was measured, in words (ablation.evidence)


class AblationDone(_Event):
    reason: str  # "finished" or "cancelled"
    results: list[dict]  # the Result events' fields


SCHEMA: dict[str, type] = {
    "start": Start, "step": Step, "eval": Eval, "sample": Sample, "checkpoint": Checkpoint,
    "done": Done, "paused": Paused, "resumed": Resumed, "error": Error, "note": Note,
    "prepare": Prepare, "prepared": Prepared,
    "ablation_start": AblationStart, "variant": VariantStart, "result": Result,
    "ablation_done": AblationDone,
}


def event(type_: str, **fields) -> dict:
    """A new event, stamped with the time. A type not in SCHEMA, or a field its record does not
    name, is a writer's bug: ValueError. A field may be left out (readers take every field as
    possibly missing, as in runs from older versions); tests check the writers write them all."""
    record = SCHEMA.get(type_)
    if record is None:
        raise ValueError(f"no event type {type_!r} in the schema")
    unknown = set(fields) - record.__required_keys__ - record.__optional_keys__
    if unknown:
        raise ValueError(f"the schema's {type_!r} events have no field {sorted(unknown)}")
    return {"type": type_, "time": time.time(), **fields}


# --- where a run's files are ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFiles:
    """The files of a run. A run directory holds its own: events.jsonl, .lock, model.pt (every run
    under checkpoints/, and `--out DIR`). A run named by its checkpoint (`--out NAME.pt`, any
    name but model.pt) keeps them beside it, NAME.events.jsonl and .NAME.lock, so that two
    models trained in one folder keep their histories apart."""

    events: Path
    lock: Path
    checkpoint: Path  # where the run saves, unless it was told another path
    folder: Path
    name: str  # for people: the directory's name, or NAME
    own_folder: bool  # a run directory (its folder is the run's alone)


def run_files(run: str | os.PathLike) -> RunFiles:
    """The files of a run given as a run directory or as a named run's events file."""
    path = Path(run)
    if path.name.endswith(EVENTS_SUFFIX):
        name = path.name[: -len(EVENTS_SUFFIX)]
        return RunFiles(path, path.with_name(f".{name}.lock"), path.with_name(f"{name}.pt"),
                        path.parent, name, own_folder=False)
    return RunFiles(path / EVENTS_NAME, path / LOCK_NAME, path / CHECKPOINT_NAME, path,
                    path.name or str(path), own_folder=True)


def run_of_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """The run a checkpoint file is saved by: its folder where it is named model.pt, else the
    named run NAME.events.jsonl beside it."""
    path = Path(checkpoint)
    if path.name == CHECKPOINT_NAME:
        return path.parent
    return path.with_name(path.stem + EVENTS_SUFFIX)


def find_run(path: str | os.PathLike) -> Path:
    """What a user names as a run (`tui --attach`): a run directory, a named run's events file,
    or a checkpoint file, which stands for the run that saves it."""
    path = Path(path)
    if path.suffix == ".pt":
        return run_of_checkpoint(path)
    return path


def new_run_dir(root: str | os.PathLike = DEFAULT_RUNS_ROOT, name: str | None = None) -> Path:
    """A fresh directory under root: the given name, or '<date>-<time>', made unique with a suffix."""
    root = Path(root)
    base = name or datetime.now().strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^\w.-]+", "-", base).strip("-") or "run"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        candidate = root / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {base} in {root}")


_held_locks: dict[str, list] = {}  # run directory -> [lock file descriptor, holders in this process]


@contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold the run's writer lock for the block; refused (RunDirectoryError) while another
    process holds it. Nested holds in one process share one lock."""
    from minigpt.errors import RunDirectoryError

    files = run_files(run_dir)
    key = os.path.realpath(files.lock)
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield
        finally:
            _held_locks[key][1] -= 1
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer is then the user's to keep
        yield
        return
    path, folder = files.lock, files.folder
    if folder.exists() and not folder.is_dir():
        raise RunDirectoryError(f"{folder} is a file, not a run directory: give a folder, or a "
                                "path ending in .pt for the checkpoint")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirectoryError(f"cannot write to {folder}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirectoryError(
            f"{_shown(files)} is in use by another run (pid {holder}): wait for it to end, stop "
            "it, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        del _held_locks[key]
        os.close(fd)  # closing drops the lock


# what a run leaves that a second run in its folder must not be mixed with: a saved model (a
# checkpoint event, or the end of a run that names its checkpoint), an ablation's result or end
RUN_RECORDS = ("checkpoint", "done", "result", "ablation_done")
_RUN_RECORD_NAMES = tuple(f'"{kind}"'.encode() for kind in RUN_RECORDS)  # to skip other lines fast


def is_run_record(ev) -> bool:
    """Whether an event records something of a run's to keep. A checkpoint event or an end with
    no checkpoint (an ablation's variants save none; a run stopped before training saved
    nothing) leaves nothing."""
    if not isinstance(ev, dict) or ev.get("type") not in RUN_RECORDS:
        return False
    if ev["type"] == "checkpoint":
        return isinstance(ev.get("path"), str)
    if ev["type"] == "done":
        return isinstance(ev.get("checkpoint"), str)
    return True


def refuse_another_run(run_dir: str | os.PathLike) -> None:
    """Refuse (RunDirectoryError) to begin a run in a folder whose events.jsonl records a run
    with something to keep (is_run_record: a checkpoint it saved, an ablation's result): the two
    runs' events would be mixed into one log, and whoever reads it (the TUI, `minigpt tui
    --attach`) would show one as the other. A folder whose run failed, was killed or was stopped
    before any of that (bad data, out of memory at the first step, a stop while preparing) can
    be used again, as the same command retried would. The log is read a line at a time, as far
    as the first such record."""
    from minigpt.errors import RunDirectoryError

    files = run_files(run_dir)
    try:
        with open(files.events, "rb") as f:
            for line in f:
                if not any(name in line for name in _RUN_RECORD_NAMES):
                    continue
                try:
                    ev = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if is_run_record(ev):
                    raise RunDirectoryError(
                        f"{_shown(files)} holds another run (its {files.events.name}): a new "
                        "run there would mix its events with that run's; choose another --out")
    except OSError:  # no log yet (or none readable): no run to mix with
        return


def _shown(files: RunFiles) -> str:
    """A run as a message names it: its folder, or a named run's events file."""
    return str(files.folder if files.own_folder else files.events)


class EventLog:
    """Appends events to the run's events file, one flushed line each."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = run_files(run_dir).events
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            from minigpt.errors import RunDirectoryError

            raise RunDirectoryError(f"cannot write {self.path}: {e.strerror or e}") from None

    def write(self, ev: dict) -> None:
        from minigpt.errors import RunDirectoryError

        try:
            self._file.write(json.dumps(ev, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as e:
            raise RunDirectoryError(f"cannot write {self.path}: {e.strerror or e}") from None

    def try_write(self, ev: dict) -> None:
        """Write if the disk lets us: for the error event of a run that is failing anyway."""
        try:
            self.write(ev)
        except Exception:
            pass

    def close(self) -> None:
        self._file.close()


def logged(events: Iterator[dict], run_dir: str | os.PathLike | None) -> Iterator[dict]:
    """Pass events through, appending each to run_dir/events.jsonl when there is a run directory.
    An exception is recorded as an "error" event, then raised again."""
    if run_dir is None:
        yield from events
        return
    from minigpt.errors import MinigptError

    with run_lock(run_dir):
        log = EventLog(run_dir)
        try:
            for ev in events:
                log.write(ev)
                yield ev
        except Exception as e:  # a user's error is the one line the command line prints
            message = str(e) if isinstance(e, MinigptError) else f"{type(e).__name__}: {e}"
            log.try_write(event("error", message=message))
            raise
        finally:
            try:
                log.close()
            except OSError:
                pass


class EventTail:
    """Reads a run's events.jsonl incrementally: each read_new() returns the lines completed since
    the last call, and never blocks. A half-written last line waits for the next call.

    Only events come out: JSON objects whose "type" is a string. Any other line (damaged, or
    valid JSON of another shape) is skipped and counted in `skipped`. The fields of an event are
    as its writer made them: read them with number(), whole(), text() and pid_of(), which say
    None where a field is missing or of the wrong kind."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = run_files(run_dir).events
        self._offset = 0
        self._pending = b""
        self.skipped = 0

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:  # not there (yet), or unreadable: nothing new
            return []
        self._offset += len(data)
        *lines, self._pending = (self._pending + data).split(b"\n")
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except (ValueError, RecursionError):  # damaged, or nested past Python's stack
                ev = None
            if isinstance(ev, dict) and isinstance(ev.get("type"), str):
                events.append(ev)
            else:
                self.skipped += 1
        return events


def read_events(run_dir: str | os.PathLike) -> list[dict]:
    """Every complete event written so far (as EventTail reads them: only objects with a type)."""
    return EventTail(run_dir).read_new()


def number(ev: dict, key: str) -> float | None:
    """ev[key] as a float if it is a number (NaN and infinity included: diverged runs write
    them), else None."""
    value = ev.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past any float
        return None


def whole(ev: dict, key: str) -> int | None:
    """ev[key] if it is a whole number from 0 to 2**63 (a step, a count), else None."""
    value = ev.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return None
    return value


def text(ev: dict, key: str) -> str | None:
    value = ev.get(key)
    return value if isinstance(value, str) else None


def pid_of(ev: dict) -> int | None:
    """ev["pid"] if it can be a process id: never 0 or negative (a process group, or every
    process, to os.kill)."""
    pid = whole(ev, "pid")
    return pid if pid and pid < 2**31 else None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True
