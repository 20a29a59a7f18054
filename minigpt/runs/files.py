"""Where a run's files are: a run directory of its own, or a run named by its checkpoint.

`minigpt train` writes `checkpoints/<run>/` with `model.pt`, `events.jsonl` and its lock, `.lock`.
A run named by its checkpoint file (`train --out NAME.pt`) keeps its files beside it instead,
under its name (NAME.events.jsonl, .NAME.lock), so that several such runs share a folder.
Everything in minigpt.runs that takes a run takes either: a run directory, or a named run's
events file (RunFiles says which files those are).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

EVENTS_NAME = "events.jsonl"
LOCK_NAME = ".lock"
CHECKPOINT_NAME = "model.pt"  # a run directory's checkpoint
EVENTS_SUFFIX = ".events.jsonl"  # a named run's events: NAME.events.jsonl beside NAME.pt
DEFAULT_RUNS_ROOT = Path("checkpoints")


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


def shown(files: RunFiles) -> str:
    """A run as a message names it: its folder, or a named run's events file."""
    return str(files.folder if files.own_folder else files.events)


