"""The signals the TUI sends to a run are the ones the run answers: one map, minigpt.control."""

import pytest

from minigpt import control
from minigpt.console import TrainerSignals
from minigpt_tui import runs


class FakeTrainer:
    def __init__(self):
        self.asked = []
        self.paused = False
        self.evaluating = False

    def request_stop(self, reason):
        self.asked.append(("stop", reason))

    def request_save(self):
        self.asked.append(("save",))

    def request_pause(self, pause):
        self.asked.append(("pause", pause))


@pytest.mark.skipif(control.SAVE_NOW is None, reason="POSIX signals")
@pytest.mark.parametrize("send, asked", [
    (runs.stop, ("stop", "stopped")),
    (runs.save_now, ("save",)),
    (runs.toggle_pause, ("pause", True)),
])
def test_what_the_tui_sends_the_trainer_answers(monkeypatch, send, asked):
    sent = []
    monkeypatch.setattr(runs.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    assert send(4242)
    [(pid, sig)] = sent
    trainer = FakeTrainer()
    TrainerSignals(trainer).handlers()[sig](sig, None)
    assert pid == 4242 and trainer.asked == [asked]
