"""Fixtures for the TUI tests: a small corpus file and a finished tiny run, made locally."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Corpus, prepare_data

from minigpt.runs.log import process_alive, read_events
from minigpt.train.config import preset
from minigpt.train.trainer import Trainer

TINY = dict(block_size=32, n_embd=32, n_head=2, n_layer=2, batch_size=8, eval_iters=2,
            sample_tokens=30, warmup_steps=5)


@pytest.fixture
def corpus_file(tmp_path, english_text) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(english_text[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, english_text) -> Path:
    """A run directory written by the real trainer, in this process: 4 steps, evaluations every
    2. Trained once for the session: the tests only read it (the TUI never writes to a run)."""
    run_dir = tmp_path_factory.mktemp("finished") / "checkpoints" / "finished"
    cfg = preset("tiny").with_overrides(max_steps=4, eval_interval=2, log_interval=1, **TINY)
    trainer = Trainer(cfg, prepare_data(Corpus(english_text[:30_000], "t", "test text"), cfg),
                      device="cpu", run_dir=run_dir)
    for _ in trainer.run():
        pass
    return run_dir


@pytest.fixture
def reap_runs():
    """Stop any training child a test leaves behind (found through its run's start event)."""
    run_dirs: list[Path] = []
    yield run_dirs
    for run_dir in run_dirs:
        for ev in read_events(run_dir):
            if ev.get("pid") and process_alive(ev["pid"]):
                os.kill(ev["pid"], signal.SIGKILL)


@pytest.fixture(autouse=True)
def kill_launched_children(monkeypatch):
    """Runs started by the panes outlive the app by design; a test must not leave them behind."""
    from minigpt_tui import runs

    launched = []
    real_launch = runs._launch

    def tracked(args, run_dir):
        process = real_launch(args, run_dir)
        launched.append(process)
        return process

    monkeypatch.setattr(runs, "_launch", tracked)
    yield launched
    for process in launched:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def launches(monkeypatch) -> list[tuple[list[str], Path]]:
    """The runs the panes start, as (the arguments of `minigpt`, the run directory), none of them
    started: each pane follows a stand-in that never ends (tests of what the TUI asks for, in
    this process; the slow tests start real children)."""
    from minigpt_tui import runs

    from .runs import StandIn

    asked = []

    def launch(args, run_dir):
        asked.append((args, run_dir))
        return StandIn()

    monkeypatch.setattr(runs, "_launch", launch)
    return asked
