"""Polling helpers: a slow machine makes a TUI test slower, not red. A test waits for the
condition it needs (what a widget shows, where focus is, a run's state), never for a fixed time."""

from __future__ import annotations

import time


async def wait_for(pilot, condition, timeout: float = 120.0, what: str = "condition") -> None:
    """Let the app run until condition() holds; then once more, so that the messages posted on
    the way (a redraw, a focus) have been handled too."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.1)
    await pilot.pause()


def wait_until(condition, timeout: float = 120.0, what: str = "condition") -> None:
    """wait_for, for what happens outside an app: a child process, a file."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


async def focus(pilot, widget, what: str = "the focus") -> None:
    """Give widget the focus and wait until it has it. A widget not shown yet (its pane still
    opening) takes no focus, and a pane that opens may move it once more: it is given again
    until it holds."""
    def held() -> bool:
        if pilot.app.focused is widget:
            return True
        widget.focus()
        return False

    await wait_for(pilot, held, what=what)
