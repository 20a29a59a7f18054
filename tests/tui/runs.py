"""Runs without a process: run directories written by hand, as `minigpt train` and `minigpt
ablate` leave them, and stand-ins for their processes."""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.runs.events import event
from minigpt.runs.log import EventLog

NO_PROCESS = 2**22 + 1  # above any process id Linux or macOS hands out: a process long gone


class StandIn:
    """In place of a run's child process (subprocess.Popen): started, and still running, or
    ended with exit_code; no signal reaches it (pid None, or a pid no process has)."""

    def __init__(self, exit_code: int | None = None, pid: int | None = None):
        self.exit_code, self.pid = exit_code, pid

    def poll(self) -> int | None:
        return self.exit_code


def live_run(root: Path, name: str = "live") -> Path:
    """A run that has started training and whose process is alive: this test process stands in
    for it, so nothing trains (never send it a signal: it would reach the tests)."""
    run_dir = root / name
    log = EventLog(run_dir)
    log.write(event("start", step=0, max_steps=100, device="cpu", precision="fp32",
                    params=1000, data="x", pid=os.getpid()))
    log.close()
    return run_dir


def live_ablation(root: Path, name: str = "ablate-live") -> Path:
    """An ablation under way, as live_run: this test process stands in for its process."""
    run_dir = root / name
    log = EventLog(run_dir)
    log.write(event("ablation_start", variants=["baseline", "residual"], max_steps=10,
                    pid=os.getpid()))
    log.close()
    return run_dir
