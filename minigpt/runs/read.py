"""Reading an event's fields from a file that may hold anything: each reader gives the field, or
None where it is missing or of the wrong kind, never an error."""

from __future__ import annotations


def number(ev: dict, key: str) -> float | None:
    """ev[key] as a float if it is a number (NaN and infinity included: diverged runs write
    them), else None."""
    value = ev.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past any float
        return None


def whole(ev: dict, key: str) -> int | None:
    """ev[key] if it is a whole number from 0 to 2**63 (a step, a count), else None."""
    value = ev.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return None
    return value


def text(ev: dict, key: str) -> str | None:
    value = ev.get(key)
    return value if isinstance(value, str) else None


def pid_of(ev: dict) -> int | None:
    """ev["pid"] if it can be a process id: never 0 or negative (a process group, or every
    process, to os.kill)."""
    pid = whole(ev, "pid")
    return pid if pid and pid < 2**31 else None


