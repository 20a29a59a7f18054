"""The rules settings obey, written once for every route a setting comes by.

Settings come from the command line, the TUI and hand-editable checkpoint files, so each one is
checked by its rule, whatever the route: a count must be a real int (not 2.0, not True), a number
must be finite (nan and inf pass every comparison's test the wrong way), and both in range.
No torch here: the command line reads settings without paying for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minigpt.errors import ConfigError

INT64_MAX = 2**63 - 1  # the largest count torch holds (sizes, steps, seeds)


@dataclass(frozen=True)
class Whole:
    """An int from minimum to maximum."""

    minimum: int
    maximum: int = INT64_MAX

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{name} must be a whole number, got {value!r}")
        if value < self.minimum:
            raise error(f"{name} must be at least {self.minimum}, got {value}")
        if value > self.maximum:
            raise error(f"{name} must be at most {self.maximum}, got {value}")


@dataclass(frozen=True)
class Real:
    """A finite number between low and high (either bound open, either one absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise error(f"{name} must be a finite number, got {value}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open
                                              else value > self.high)
        if too_low or too_high:
            raise error(f"{name} must be {self.describe()}, got {value}")

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low}, {self.high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


@dataclass(frozen=True)
class Maybe:
    """None, or what the rule allows."""

    rule: Whole | Real

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if value is not None:
            self.rule.check(name, value, error)


@dataclass(frozen=True)
class OneOf:
    choices: tuple

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if not isinstance(value, str) or value not in self.choices:
            raise error(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")


@dataclass(frozen=True)
class Names:
    """One or more of choices, separated by commas, none twice: "c_attn,c_fc"."""

    choices: tuple

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if not isinstance(value, str):
            raise error(f"{name} must be names separated by commas, got {value!r}")
        given = value.split(",")
        for item in given:
            if item not in self.choices:
                raise error(f"{name}: {item!r} is not one of {', '.join(self.choices)}")
        twice = next((item for i, item in enumerate(given) if item in given[:i]), None)
        if twice is not None:
            raise error(f"{name} names {twice} twice")


@dataclass(frozen=True)
class Flag:
    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if not isinstance(value, bool):
            raise error(f"{name} must be true or false, got {value!r}")


def settings_record(d, what: str) -> dict:
    """A record of settings read from a file: a dict with string keys, or a clear error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a mapping of names to values, got {type(d).__name__}")
    odd = [k for k in d if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"unknown {what}: {', '.join(map(repr, odd[:3]))}")
    return d


