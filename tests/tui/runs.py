"""Run directories written by hand, as `minigpt train` leaves them."""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.runs.events import event
from minigpt.runs.log import EventLog


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
