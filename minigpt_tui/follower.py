"""One follower per run a pane shows: it reads the run directory and says what changed.

Like toolong's watcher, it does the reading and the panes only draw: twice a second it reads
what the run appended to events.jsonl (EventTail: a non-blocking read of what is new), folds
each event into the run's state (minigpt.runs.state, the one reducer), and watches the run's
process. It posts to the widget that owns it:

    RunFollower.Changed   new events, already folded into follower.state
    RunFollower.Ended     the process is gone without saying how the run ended (killed, or it
                          failed before its first event: its last output line is in state.error)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from textual.message import Message
from textual.widget import Widget

from minigpt.runs.log import EventTail, process_alive
from minigpt.runs.state import LIVE, RunState
from minigpt_tui import runs


class RunFollower:
    INTERVAL_S = 0.5  # reading is cheap; each batch of events is one redraw of the pane

    class Changed(Message, bubble=False):
        def __init__(self, follower: RunFollower, events: list[dict]):
            super().__init__()
            self.follower, self.events = follower, events

    class Ended(Message, bubble=False):
        def __init__(self, follower: RunFollower):
            super().__init__()
            self.follower = follower

    def __init__(self, owner: Widget, run_dir: Path,
                 process: subprocess.Popen | None = None):
        """Follow run_dir for owner from its first event; process is the run's when owner
        started it (then its exit is noticed at once), else its pid comes from the events."""
        self.owner = owner
        self.tail = EventTail(run_dir)
        self.process = process
        self.state = RunState(Path(run_dir), pid=process.pid if process else None)
        self.stop_sent = False  # the pane asked the run to stop (see RunState.process_ended)
        self._timer = owner.set_interval(self.INTERVAL_S, self.poll)
        self.poll()

    @property
    def skipped(self) -> int:
        """Lines that were not events, and events that lacked what their type needs."""
        return self.tail.skipped + self.state.skipped

    def poll(self) -> None:
        events = self.tail.read_new()
        for ev in events:
            self.state.apply(ev)
        if events:
            self.owner.post_message(self.Changed(self, events))
        if self.process is not None and self.process.poll() is not None:
            self.process = None  # reaped; what happened is in the events or its last words
        # asked only when nothing came, so the events a run writes as it ends are read first
        if self.state.status in LIVE and not events and not self._alive():
            self.state.process_ended(runs.last_output_line(self.state.run_dir), self.stop_sent)
            self.owner.post_message(self.Ended(self))

    def _alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self.state.pid)

    def ask_to_stop(self) -> bool:
        """Send the run STOP (it saves and ends; before training it ends at once); False if its
        process is gone."""
        sent = runs.stop(self.state.pid)
        self.stop_sent = self.stop_sent or sent
        return sent

    def stop(self) -> None:
        """Stop following (the run goes on)."""
        self._timer.stop()
