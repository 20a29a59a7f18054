"""A run's log and its one writer.

EventLog appends events to the run's events file, one flushed line each; logged() passes a
stream of events through it and records an exception as the run's last event. EventTail reads
what was appended since it last looked, never blocking.

A run has one writer: the process that writes it holds an exclusive lock on its lock file (which
names its pid) from start to end, and a second `minigpt train` or `ablate` aimed at it is
refused. The operating system drops the lock when its process ends, however it ends, so a killed
run never blocks the next one. A run's log is its own: a new run is refused where another left
something to keep (refuse_another_run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from minigpt.runs.events import event
from minigpt.runs.files import run_files, shown

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
            f"{shown(files)} is in use by another run (pid {holder}): wait for it to end, stop "
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
                        f"{shown(files)} holds another run (its {files.events.name}): a new "
                        "run there would mix its events with that run's; choose another --out")
    except OSError:  # no log yet (or none readable): no run to mix with
        return


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
