"""Numbers as people read and type them: durations, sizes, clocks. Written once, for the command
line, the TUI and the engine's own messages. No torch here."""

from __future__ import annotations

import math
import re

from minigpt.errors import ConfigError

_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d*)?)h)?(?:(?P<m>\d+(?:\.\d*)?)m)?"
                       r"(?:(?P<s>\d+(?:\.\d*)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds, from '110s', '5m', '1h', '1h30m', '2.5m' or a bare number of seconds ('90'):
    what --time and the TUI's time field take. Anything else, or no time at all, is a
    ConfigError."""
    shown = text.strip() if len(text.strip()) <= 20 else text.strip()[:20] + "..."
    spelled = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d*)?", spelled):
        seconds = float(spelled)
    else:
        match = _DURATION.fullmatch(spelled)
        if not spelled or match is None:
            raise ConfigError(f"{shown!r} is not a time: write it as 110s, 5m, 1h or 1h30m "
                              "(a bare number is seconds)")
        seconds = sum(float(match[unit] or 0) * factor
                      for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"a time must be more than 0 seconds (and finite), got {shown!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """'1h30m', '1m50s', '45s', '2.5s': a time as parse_duration reads it."""
    if seconds < 10:
        return f"{seconds:.2g}s"
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def rough_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h': an estimate, said as roughly as it is known."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float | None) -> str:
    """'1:02:03', '4:05': elapsed time and ETAs as a clock shows them; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def size(n: float) -> str:
    """'512 B', '3.4 kB', '1.2 MB', '5.0 GB': bytes in powers of 1000."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def number(value: float | None, spec: str) -> str:
    """value in the format spec, or '-' where there is none (a loss not measured yet)."""
    return "-" if value is None else format(value, spec)
