"""The run directory and its event log.

`minigpt train` writes `checkpoints/<run>/` with `model.pt` and `events.jsonl`: one JSON object a
line, appended and flushed as training goes, so another process (the TUI, `--attach`, a test) can
replay a run's history and follow it live. Every event has "type" and "time" (Unix seconds):

    start       step, max_steps, config, device, params, data, train_tokens, val_tokens, run_dir
    step        step, max_steps, loss, lr, grad_norm, tokens_per_s, elapsed
    eval        step, train_loss, val_loss
    sample      step, text
    checkpoint  step, path
    done        step, reason ("finished", "interrupted", "stopped"), train_loss, val_loss,
                tokens_per_s, elapsed, checkpoint
    error       message
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

EVENTS_NAME = "events.jsonl"
DEFAULT_RUNS_ROOT = Path("checkpoints")


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


class EventLog:
    """Appends events to <run_dir>/events.jsonl, one flushed line each."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / EVENTS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, ev: dict) -> None:
        self._file.write(json.dumps(ev, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(run_dir: str | os.PathLike) -> list[dict]:
    """Every complete event written so far (a half-written last line is left for later)."""
    return list(follow_events(run_dir, follow=False, stop_after_done=False))


def follow_events(run_dir: str | os.PathLike, follow: bool = True, poll_s: float = 0.2,
                  stop_after_done: bool = True) -> Iterator[dict]:
    """Yield the run's events from the first; with follow, keep waiting for new ones like `tail -f`."""
    path = Path(run_dir) / EVENTS_NAME
    while follow and not path.exists():
        time.sleep(poll_s)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        pending = ""
        while True:
            chunk = f.readline()
            if chunk:
                pending += chunk
                if not pending.endswith("\n"):
                    continue  # the writer is mid-line: wait for the rest
                line, pending = pending.strip(), ""
                if not line:
                    continue
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue
                yield ev
                if stop_after_done and ev.get("type") in ("done", "error"):
                    return
            elif follow:
                time.sleep(poll_s)
            else:
                return
