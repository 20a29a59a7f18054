"""What the panes that follow a run share (the Train and the Ablate pane): one run at a time, its
state as a RunFollower folds it, a redraw at each change, and a word to the app about it.

The pane draws; the follower reads (minigpt_tui.follower). At each change the pane posts
RunChanged, so the app knows which runs are live (the quit question, the Chat pane's threads) and
where the Train pane's run saves its model, without reading the panes.
"""

from __future__ import annotations

from pathlib import Path
from subprocess import Popen
from typing import ClassVar

from textual import on
from textual.widget import Widget

from minigpt.runs.state import LIVE, RunState
from minigpt_tui.follower import RunFollower
from minigpt_tui.messages import RunChanged


class FollowingPane(Widget):
    """A pane showing one run directory at a time. Subclasses draw it (redraw) and clear what
    they drew of the run before (clear_run)."""

    RUN_NAME: ClassVar[str] = "A run"  # its runs in the quit question: "Training still running"

    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.follower: RunFollower | None = None

    @property
    def state(self) -> RunState | None:
        """The followed run's state (None before any run)."""
        return self.follower.state if self.follower else None

    @property
    def is_live(self) -> bool:
        """Whether the followed run's process may still be at work."""
        return self.state is not None and self.state.status in LIVE

    @property
    def checkpoint(self) -> Path | None:
        """Where the followed run saves a model to chat with, saved yet or not; None where its
        runs save none."""
        return None

    def attach(self, run_dir: Path, process: Popen | None = None) -> None:
        """Follow a run directory from its first event, letting go of the run shown before (it
        goes on); process is the run's child when this pane started it."""
        if self.follower is not None:
            self.follower.stop()
        self.clear_run()
        self.follower = RunFollower(self, Path(run_dir), process)
        self._changed()  # its name at once; what it did as its events come

    @on(RunFollower.Changed)
    @on(RunFollower.Ended)
    def _run_changed(self, message: RunFollower.Changed | RunFollower.Ended) -> None:
        if message.follower is self.follower:  # not one this pane has since let go
            self._changed()

    def _changed(self) -> None:
        self.redraw()
        self.post_message(RunChanged(self, self.is_live, self.checkpoint))

    def stop_run(self) -> None:
        """Ask the followed run to stop, if it is live (it saves and ends)."""
        if self.is_live:
            self.follower.ask_to_stop()

    def clear_run(self) -> None:
        """Forget what was drawn of the run followed before."""

    def redraw(self) -> None:
        """Draw the followed run's state."""
        raise NotImplementedError
