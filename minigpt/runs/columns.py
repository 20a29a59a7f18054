"""An ablation's results as the cells of a table, written once for the command line's tables
(cli/report.py) and the TUI's Ablate pane, and how a width is shared out among their columns:
the variant's name whole in every table, what does not fit in the first going to the next.

Strings only: no rich, no torch. Whoever draws the table says how it writes a spread ("+-" on
the command line, "±" in the TUI) and what a column costs it beyond its text (borders, padding).
"""

from __future__ import annotations

from collections.abc import Callable

from minigpt.runs.results import VariantResult
from minigpt.units import number

NOISE = {True: "within", False: "outside"}  # whether a difference is within the seeds' noise


def with_spread(value: float | None, spread: float | None, spec: str, spread_spec: str,
                plus_minus: str = "+-") -> str:
    """'2.4512 +-0.012': a mean and its spread (or interval), where there is one."""
    if value is None:
        return "-"
    return format(value, spec) + ("" if spread is None
                                  else f" {plus_minus}{format(spread, spread_spec)}")


# the results' columns, in the order a narrow terminal keeps them: (header, cell); a cell is
# made from the result and the sign a spread is written with
COLUMNS: tuple[tuple[str, Callable[[VariantResult, str], str]], ...] = (
    ("val loss", lambda r, pm: with_spread(r.val_loss, r.val_loss_std, ".4f", ".3f", pm)),
    ("vs baseline", lambda r, pm: "" if r.kind == "baseline" else
        with_spread(r.val_loss_delta, r.delta_half_width, "+.3f", ".3f", pm)),
    ("noise", lambda r, pm: NOISE.get(r.within_noise, "")),
    ("bits/byte", lambda r, pm: number(r.bits_per_byte, ".3f")),
    ("masked", lambda r, pm: number(r.masked_val_loss, ".4f")),
    ("train loss", lambda r, pm: number(r.train_loss, ".4f")),
    ("steps", lambda r, pm: number(r.steps, ",")),
    ("tokens/s", lambda r, pm: number(r.tokens_per_s, ",.0f")),
    ("params", lambda r, pm: "-" if r.params is None else f"{r.params / 1e6:.2f}M"),
    ("4-grams", lambda r, pm: number(r.distinct_4grams, ".0%")),  # the samples' repetition
    ("time", lambda r, pm: "-" if r.seconds is None else f"{r.seconds:.1f} s"),
)
# an ablation on equal time (ablate --time): the steps each variant took, and its speed, are what
# it found, and come right after the noise
TIMED_FIRST = ("steps", "tokens/s")


def result_rows(results: list[VariantResult], plus_minus: str = "+-",
                timed: bool = False) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The headers a table of these results needs, in order, and each variant's cells by header.
    A column no variant has a number for is left out (masked, noise with one seed); a diverged
    variant says so in its val loss."""
    rows = {r.variant: {h: ("diverged" if r.diverged and h == "val loss" else cell(r, plus_minus))
                        for h, cell in COLUMNS} for r in results}
    headers = [h for h, _ in COLUMNS if any(row[h] not in ("", "-") for row in rows.values())]
    if timed:
        first = [h for h in TIMED_FIRST if h in headers]
        rest = [h for h in headers if h not in first]
        at = rest.index("noise") + 1 if "noise" in rest else min(2, len(rest))
        headers = rest[:at] + first + rest[at:]
    return headers, rows


def column_width(header: str, rows: dict[str, dict[str, str]]) -> int:
    """The width of a column's widest text, its header's or a cell's."""
    return max(len(header), *(len(row[header]) for row in rows.values()))


def pack(costs: dict[str, int], room: int) -> list[list[str]]:
    """The columns (costs: each one's width as drawn, in order) in groups, each as many as fit
    in room, and at least one: the first table's, then the next one's."""
    groups: list[list[str]] = []
    for header, cost in costs.items():
        if groups and sum(costs[h] for h in groups[-1]) + cost <= room:
            groups[-1].append(header)
        else:
            groups.append([header])
    return groups
