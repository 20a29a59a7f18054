"""How a run is steered from outside: the signals a training (or ablation) process answers to.

    STOP          SIGTERM   finish the current step, save a checkpoint, end (an ablation: cancel)
    INTERRUPT     SIGINT    Ctrl-C: as STOP; a second one cuts the step itself short
    SAVE_NOW      SIGUSR1   save a checkpoint after the current step
    TOGGLE_PAUSE  SIGUSR2   pause, or resume a paused run

The receiving side is minigpt.console.TrainerSignals (and run_ablation); the sending side is the
TUI's minigpt_tui.runs. SIGUSR1 and SIGUSR2 are POSIX only: None elsewhere.
"""

from __future__ import annotations

import signal

STOP = signal.SIGTERM
INTERRUPT = signal.SIGINT
SAVE_NOW = getattr(signal, "SIGUSR1", None)
TOGGLE_PAUSE = getattr(signal, "SIGUSR2", None)

ENDING = (INTERRUPT, STOP)  # the signals that end a run: a checkpoint being written waits for them
