"""Polling helpers: a slow machine makes a TUI test slower, not red."""

from __future__ import annotations

import asyncio
import time


async def wait_for(pilot, condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.1)


def wait_until(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


async def settle(pilot, seconds: float = 0.6) -> None:
    """Let interval timers run (a pane's RunFollower reads and posts twice a second)."""
    await asyncio.sleep(seconds)
    await pilot.pause()
