"""The one follower of a run directory, as both panes use it: new events, then the end."""

import subprocess
import sys

import pytest
from textual.app import App
from textual.widget import Widget

from minigpt.runs.events import event
from minigpt.runs.log import EventLog
from minigpt_tui import runs
from minigpt_tui.follower import RunFollower

from .runs import NO_PROCESS, StandIn
from .waiting import wait_for

KILLED = """
import sys
from minigpt.runs.events import event
from minigpt.runs.log import EventLog
EventLog(sys.argv[1]).write(event("start", step=0, max_steps=10))
print("the last line it printed")
"""  # a run that ends without its "done", as a killed one does


class Owner(Widget):
    def __init__(self):
        super().__init__()
        self.heard: list[tuple] = []

    def on_run_follower_changed(self, message: RunFollower.Changed) -> None:
        self.heard.append(("changed", [ev["type"] for ev in message.events],
                           message.follower.state.status))

    def on_run_follower_ended(self, message: RunFollower.Ended) -> None:
        self.heard.append(("ended", message.follower.state.status, message.follower.state.error))


@pytest.mark.slow
async def test_a_follower_posts_the_new_events_then_the_end_of_its_process(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / runs.LOG_NAME, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", KILLED, str(run_dir)], stdout=log)
    app = App()
    async with app.run_test() as pilot:
        owner = Owner()
        await app.mount(owner)
        follower = RunFollower(owner, run_dir, process)
        await wait_for(pilot, lambda: any(h[0] == "ended" for h in owner.heard),
                       what="the end of the run's process")
        assert owner.heard == [("changed", ["start"], "running"),
                               ("ended", "ended", "the last line it printed")]
        follower.stop()


async def test_a_follower_says_when_a_run_ended_without_a_word(tmp_path):
    """As above, in this process: the run's events and last words written by hand, its process
    a stand-in that has exited, under a pid no process has."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.LOG_NAME).write_text("the last line it printed\n", encoding="utf-8")
    log = EventLog(run_dir)
    log.write(event("start", step=0, max_steps=10))
    log.close()
    app = App()
    async with app.run_test() as pilot:
        owner = Owner()
        await app.mount(owner)
        follower = RunFollower(owner, run_dir, StandIn(exit_code=-9, pid=NO_PROCESS))
        await wait_for(pilot, lambda: any(h[0] == "ended" for h in owner.heard),
                       what="the end of the run's process")
        assert owner.heard == [("changed", ["start"], "running"),
                               ("ended", "ended", "the last line it printed")]
        follower.stop()

