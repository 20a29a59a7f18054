"""Runs as child processes: the TUI starts `minigpt train` / `minigpt ablate`, follows their
events.jsonl, and steers them with signals.

Each child starts in its own session (start_new_session), so neither quitting the TUI nor a
closed SSH connection (SIGHUP to the TUI's session) reaches it: the run goes on, and
`minigpt tui --attach RUN_DIR` picks it up again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from minigpt.backends.cpu import environment_for_training
from minigpt.runs import control
from minigpt.runs.files import run_files

LOG_NAME = "output.log"


def _launch(args: list[str], run_dir: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG_NAME, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "minigpt", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: our SIGHUP is not its SIGHUP
            env=environment_for_training(),  # with AMX, whatever the Chat pane decodes with
        )


def launch_training(run_dir: Path, data: str | None, preset: str | None, steps: int | None,
                    extra: list[str] | None = None, text_field: str | None = None,
                    time: str | None = None) -> subprocess.Popen:
    """time: a timed run's length as --time takes it (110s, 5m), instead of steps."""
    args = ["train", "--out", str(run_dir), "--quiet"]
    if data:
        args += ["--data", data]
    if text_field:
        args += ["--text-field", text_field]
    if preset:
        args += ["--preset", preset]
    if steps:
        args += ["--steps", str(steps)]
    if time:
        args += ["--time", time]
    return _launch(args + list(extra or []), run_dir)


def launch_ablation(run_dir: Path, variants: list[str], data: str | None, steps: int | None,
                    preset: str | None = None, text_field: str | None = None, seeds: int = 1,
                    time: str | None = None) -> subprocess.Popen:
    """steps None: ablate's own, or time: each model's time as --time takes it (110s, 5m)."""
    args = ["ablate", *variants, "--out", str(run_dir), "--quiet", "--seeds", str(seeds)]
    if steps:
        args += ["--steps", str(steps)]
    if time:
        args += ["--time", time]
    if data:
        args += ["--data", data]
    if text_field:
        args += ["--text-field", text_field]
    if preset:
        args += ["--preset", preset]
    return _launch(args, run_dir)


def last_output_line(run_dir: Path) -> str:
    """The child's last words (its one-line error, if it failed before writing events); the
    TUI's runs are run directories, where it writes them."""
    if not run_files(run_dir).own_folder:
        return ""
    try:
        lines = (run_dir / LOG_NAME).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def send(pid: int | None, sig) -> bool:
    """Signal a run's process (one of minigpt.runs.control's); False if it is gone."""
    if not pid:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def stop(pid: int | None) -> bool:
    """Finish the current step, save, end (an ablation: cancel)."""
    return send(pid, control.STOP)


def save_now(pid: int | None) -> bool:
    return send(pid, control.SAVE_NOW)


def toggle_pause(pid: int | None) -> bool:
    return send(pid, control.TOGGLE_PAUSE)
