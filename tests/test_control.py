"""The signals the TUI sends to a run are the ones the run answers: one map, minigpt.runs.control."""

import pytest

from minigpt.runs import control
from minigpt.runs.control import RunSignals
from minigpt_tui import runs


class FakeTrainer:
    def __init__(self):
        self.asked = []
        self.paused = False
        self.evaluating = False

    def request_stop(self, reason, why=None):
        self.asked.append(("stop", reason, why))

    def request_save(self):
        self.asked.append(("save",))

    def request_pause(self, pause):
        self.asked.append(("pause", pause))


@pytest.mark.skipif(control.SAVE_NOW is None, reason="POSIX signals")
@pytest.mark.parametrize("send, asked", [
    (runs.stop, ("stop", "stopped", "SIGTERM")),
    (runs.save_now, ("save",)),
    (runs.toggle_pause, ("pause", True)),
])
def test_what_the_tui_sends_the_trainer_answers(monkeypatch, send, asked):
    sent = []
    monkeypatch.setattr(runs.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    assert send(4242)
    [(pid, sig)] = sent
    trainer = FakeTrainer()
    RunSignals(trainer).handlers()[sig](sig, None)
    assert pid == 4242 and trainer.asked == [asked]


@pytest.mark.parametrize("sig", control.ENDING)
def test_a_stop_before_there_is_a_run_ends_it_at_once(sig):
    """While the data is prepared there is nothing to save: Stopped, naming the signal, whose
    exit status is the shell's for it (130, 143, 129)."""
    signals = RunSignals()
    with pytest.raises(control.Stopped) as stopped:
        signals.handlers()[sig](sig, None)
    assert stopped.value.signum == sig and signals.received == sig
    assert control.exit_status(sig) == 128 + int(sig)


@pytest.mark.skipif(control.HANGUP is None, reason="POSIX signals")
def test_a_hangup_stops_the_run_as_sigterm_does(monkeypatch):
    detached = []
    monkeypatch.setattr(control, "detach_from_terminal", lambda: detached.append(True))
    trainer = FakeTrainer()
    signals = RunSignals(trainer)
    signals.handlers()[control.HANGUP](control.HANGUP, None)
    assert trainer.asked == [("stop", "stopped", "SIGHUP: the terminal closed")]
    assert detached and signals.received == control.HANGUP
