"""The run directory and its event log.

`minigpt train` writes `checkpoints/<run>/` with `model.pt` and `events.jsonl`: one JSON object a
line, appended and flushed as training goes, so another process (the TUI, `--attach`, a test) can
replay a run's history and follow it live. Every event has "type" and "time" (Unix seconds):

    start       step, max_steps, config, device, precision ("bf16" or "fp32"), peak_flops (of all
                processes' devices; null where unknown, as on CPUs), compiled (--compile), params,
                data, data_key (the prepared data's cache key), train_tokens, val_tokens, run_dir
    step        step, max_steps, loss, lr, grad_norm, tokens_per_s, flops_per_s (the model FLOPs
                those tokens need: PaLM's count), mfu (flops_per_s / peak_flops, or null), elapsed
    eval        step, train_loss, val_loss
    sample      step, text
    checkpoint  step, path
    done        step, reason ("finished", "interrupted", "stopped"), train_loss, val_loss,
                tokens_per_s, elapsed, checkpoint
    paused      step                      (and "resumed", step)
    error       message                   (the run's last event: one line, as the command prints it)
    note        step, message             (something the user should know, e.g. compiling failed)
    prepare     stage ("vocabulary", "sample" or "encode"), bytes_done, bytes_total (of this
                stage's reading of the source), tokens (written so far), tokens_per_s, elapsed
                (since preparation began), pid: the data's preparation, before "start", a few
                times a second (see prepare.py); the run is "preparing" until its start
    prepared    path, cached (found ready: nothing tokenized), tokens, dtype, tokenizer,
                vocab_size, seconds, pid

A run directory has one writer: the process that writes it holds an exclusive lock on its
`.lock` file (which names its pid) from start to end, and a second `minigpt train` or `ablate`
aimed at it is refused. The operating system drops the lock when its process ends, however it
ends, so a killed run never blocks the next one.

An ablation's directory holds the events of every variant, each tagged "variant", between
"ablation_start" (variants, max_steps, pid) and "ablation_done" (reason), with a "result" event
per finished variant. A variant whose training diverged gets a "note" saying so, and a result
whose losses are null and whose "diverged" holds that message.
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

EVENTS_NAME = "events.jsonl"
LOCK_NAME = ".lock"
DEFAULT_RUNS_ROOT = Path("checkpoints")
PREPARE_STAGES = {"vocabulary": "collecting characters", "sample": "reading a BPE sample",
                  "encode": "tokenizing"}  # what each stage of a "prepare" event is doing


def event(type_: str, **fields) -> dict:
    return {"type": type_, "time": time.time(), **fields}


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
    """Hold the run directory's writer lock for the block; refused (RunDirectoryError) while
    another process holds it. Nested holds in one process share one lock."""
    from minigpt.errors import RunDirectoryError

    key = os.path.realpath(run_dir)
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
    path = Path(run_dir) / LOCK_NAME
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise RunDirectoryError(f"{run_dir} is a file, not a run directory: give a folder, or a "
                                "path ending in .pt for the checkpoint")
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirectoryError(f"cannot write to {run_dir}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirectoryError(
            f"{run_dir} is in use by another run (pid {holder}): wait for it to end, stop it, "
            "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[key] = [fd, 1]
    try:
        yield
    finally:
        del _held_locks[key]
        os.close(fd)  # closing drops the lock


class EventLog:
    """Appends events to <run_dir>/events.jsonl, one flushed line each."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / EVENTS_NAME
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
        self.path = Path(run_dir) / EVENTS_NAME
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


@dataclass
class RunSummary:
    """What a run picker shows about a run directory."""

    path: Path
    kind: str  # "train" or "ablate"
    status: str  # "preparing", "running", "paused", "finished", "stopped", "interrupted",
    #              "failed", "ended"
    step: int
    max_steps: int
    val_loss: float | None
    data: str
    pid: int | None
    modified: float


def summarize_run(run_dir: str | os.PathLike) -> RunSummary | None:
    """What the run's events say about it, or None if they hold neither a start, nor a data
    preparation, nor an error that ended the run before either. A run whose last start (if any)
    came before its preparation's events is preparing its data (a new run, or one resumed in the
    same folder): "preparing" while the process that wrote them lives. Never raises on what the file holds: a field of the wrong kind
    counts as missing."""
    run_dir = Path(run_dir)
    events = read_events(run_dir)
    start_at = max((i for i, e in enumerate(events) if e["type"] in ("start", "ablation_start")),
                   default=None)
    prepare_at = max((i for i, e in enumerate(events) if e["type"] in ("prepare", "prepared")),
                     default=None)
    failed_early = bool(events) and events[-1]["type"] == "error"
    if start_at is None and prepare_at is None and not failed_early:
        return None  # neither a run nor one that failed before its start (a corpus refused)
    start = events[start_at] if start_at is not None else {}
    preparing = prepare_at is not None and (start_at is None or prepare_at > start_at)
    kind = "ablate" if start.get("type") == "ablation_start" else "train"
    last = events[-1]
    steps = [s for e in events if e["type"] == "step" and (s := whole(e, "step")) is not None]
    val_losses = [v for e in events
                  if e["type"] == "eval" and (v := number(e, "val_loss")) is not None]
    pid = pid_of(events[prepare_at] if preparing else start)
    if last["type"] == "error":
        status = "failed"
    elif preparing:
        status = "preparing" if process_alive(pid) else "ended"
    elif last["type"] == "done" and kind == "train":
        status = text(last, "reason") or "finished"
    elif last["type"] == "ablation_done":
        status = text(last, "reason") or "finished"
    elif process_alive(pid):
        status = "paused" if last["type"] == "paused" else "running"
    else:
        status = "ended"  # the process is gone without saying goodbye (killed)
    try:
        modified = (run_dir / EVENTS_NAME).stat().st_mtime
    except OSError:  # removed since we read it
        modified = 0.0
    return RunSummary(
        path=run_dir, kind=kind, status=status,
        step=steps[-1] if steps else whole(start, "step") or 0,
        max_steps=whole(start, "max_steps") or 0,
        val_loss=val_losses[-1] if val_losses else None,
        data=text(start, "data") or "", pid=pid,
        modified=modified,
    )


def list_runs(root: str | os.PathLike = DEFAULT_RUNS_ROOT) -> list[RunSummary]:
    """Every run directory under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in root.iterdir() if (p / EVENTS_NAME).is_file()]
    return sorted((r for r in runs if r), key=lambda r: r.modified, reverse=True)
