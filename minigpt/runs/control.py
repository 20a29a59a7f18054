"""How a run is steered from outside: the signals a training (or ablation) process answers to.

    STOP          SIGTERM   finish the current step, save a checkpoint, end (an ablation: cancel)
    INTERRUPT     SIGINT    Ctrl-C: as STOP; a second one cuts the step itself short
    HANGUP        SIGHUP    the terminal closed (a dropped SSH connection): as STOP, and what
                            would be printed to the terminal goes nowhere
    SAVE_NOW      SIGUSR1   save a checkpoint after the current step
    TOGGLE_PAUSE  SIGUSR2   pause, or resume a paused run

A run that one of the first three ended exits with the shell's status for it, 128 + the signal's
number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), after saving: `train && next` and a
scheduler can tell a stopped run from a finished one. Before there is a run to stop cleanly
(while its data is prepared), Stopped is raised at once and nothing is saved.

The receiving side is RunSignals below; the sending side is the TUI's minigpt_tui.runs.
SIGHUP, SIGUSR1 and SIGUSR2 are POSIX only: None elsewhere.
"""

from __future__ import annotations

import errno
import os
import signal
from contextlib import contextmanager

STOP = signal.SIGTERM
INTERRUPT = signal.SIGINT
HANGUP = getattr(signal, "SIGHUP", None)
SAVE_NOW = getattr(signal, "SIGUSR1", None)
TOGGLE_PAUSE = getattr(signal, "SIGUSR2", None)

# the signals that end a run: a checkpoint being written waits for them
ENDING = tuple(sig for sig in (INTERRUPT, STOP, HANGUP) if sig is not None)


class Stopped(BaseException):  # noqa: N818 (as KeyboardInterrupt: not an error, not an Exception)
    """One of the ENDING signals arrived before the run had anything to save: the run ends at
    once. A BaseException, so that no `except Exception` on the way takes it for a failure."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """'SIGTERM'."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The status a shell gives a process that this signal ended: 128 + its number."""
    return 128 + int(signum)


def why_stopped(signum: int) -> str:
    """'SIGHUP: the terminal closed', for the line and the event that say how a run ended."""
    said = {INTERRUPT: "Ctrl-C", HANGUP: "the terminal closed"}.get(signum)
    return signal_name(signum) + (f": {said}" if said else "")


def ignored(signum: int) -> bool:
    """Whether this process was started with the signal ignored: SIGHUP under nohup, which
    asks for the run to outlive the terminal; a handler would undo that."""
    return signum == HANGUP and signal.getsignal(signum) == signal.SIG_IGN


# the standard streams that were a terminal when the process started: after a hangup isatty()
# may no longer say so
_TERMINAL_FDS = tuple(fd for fd in (1, 2) if os.isatty(fd))


def detach_from_terminal() -> None:
    """The terminal is gone (SIGHUP): standard output and error, where they were the terminal,
    now go nowhere, so that no print on the way to saving fails with EIO. Where they go to a file
    or a pipe (nohup, the TUI's runs), they are left as they are."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in _TERMINAL_FDS:
            try:
                os.dup2(devnull, fd)
            except OSError:
                continue
    finally:
        os.close(devnull)


class TerminalStream:
    """sys.stdout or sys.stderr where it is a terminal: a write that the closed terminal refuses
    (EIO, which comes before the SIGHUP that says it closed) is that hangup, at once: the
    stream is detached and SIGHUP raised in this process (a run stops and saves; any other
    command ends as SIGHUP ends it), instead of an error that would end a run unsaved."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            _hung_up(e)
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            _hung_up(e)

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer: the stream's own
        return getattr(self._stream, name)


def _hung_up(error: OSError) -> None:
    if error.errno != errno.EIO or HANGUP is None:
        raise error
    detach_from_terminal()
    if not ignored(HANGUP):
        signal.raise_signal(HANGUP)


def watch_terminal() -> None:
    """sys.stdout and sys.stderr, where they are a terminal, as TerminalStreams."""
    import sys

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, TerminalStream) and stream.isatty():
            setattr(sys, name, TerminalStream(stream))


class RunSignals:
    """How other processes, the terminal and Ctrl-C steer a run (minigpt.runs.control has the map; the
    TUI sends these to its children). Installed from a command's start, before its data is
    prepared; `run` is set once there is a Trainer or an AblationRunner to stop cleanly.

    INTERRUPT (Ctrl-C), STOP,  before `run`: Stopped at once (nothing to save yet). Then: stop
    HANGUP                     after the current step and save (an ablation: cancel); a second
                               Ctrl-C interrupts the step (or evaluation) itself, and the trainer
                               still saves before it ends; a checkpoint being written is never
                               interrupted. HANGUP also sends what would be printed nowhere.
    SAVE_NOW                   save a checkpoint now
    TOGGLE_PAUSE               pause, or resume a paused run

    `received` is the signal that ended the run (the first one), for its exit status.
    """

    def __init__(self, run=None, say=None):
        self.run = run
        self.received: int | None = None
        self.say = say or (lambda message: None)  # a line for whoever watches the terminal

    def handlers(self) -> dict:
        handlers = {sig: self._on_ending for sig in ENDING
                    if not ignored(sig)}  # `nohup minigpt train`: hangups are not stops
        if SAVE_NOW is not None:  # POSIX only
            handlers[SAVE_NOW] = self._on_save_now
        if TOGGLE_PAUSE is not None:
            handlers[TOGGLE_PAUSE] = self._on_toggle_pause
        return handlers

    def _on_ending(self, signum, frame):
        if signum == HANGUP:
            detach_from_terminal()
        again, self.received = self.received is not None, self.received or signum
        if self.run is None:  # preparing the data, building the model: nothing to save yet
            raise Stopped(signum)
        if again:
            # only a step or an evaluation is cut short; elsewhere (saving, printing) the run is
            # already on its way out, and an exception there would lose the checkpoint
            if signum == INTERRUPT and getattr(self.run, "interruptible", False):
                raise KeyboardInterrupt
            return
        reason = "interrupted" if signum == INTERRUPT else "stopped"
        self.run.request_stop(reason, why_stopped(signum))
        if hasattr(self.run, "evaluating"):  # a trainer: say what happens next
            again = " (Ctrl-C again to interrupt the step)" if signum == INTERRUPT else ""
            self.say(f"stopping ({signal_name(signum)}): finishing this step and saving a "
                     f"checkpoint{again}")
            if self.run.evaluating:  # an evaluation changes nothing: no need to wait for it
                raise KeyboardInterrupt

    def _on_save_now(self, signum, frame):
        if self.run is not None and hasattr(self.run, "request_save"):
            self.run.request_save()

    def _on_toggle_pause(self, signum, frame):
        if self.run is not None and hasattr(self.run, "request_pause"):
            self.run.request_pause(not self.run.paused)


@contextmanager
def signal_handlers(handlers: dict):
    """These signal handlers for the duration of the block; the previous ones come back after."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
