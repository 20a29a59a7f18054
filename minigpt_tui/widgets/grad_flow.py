"""Gradient flow on screen: each layer's gradient norm as a bar on a log scale (the Train pane),
and every variant's by layer side by side, against the baseline's (the Ablate pane)."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from minigpt.train.gradflow import layer_order
from minigpt_tui.text import plain

BLOCKS = " ▏▎▍▌▋▊▉█"  # eighths of a cell


def short(layer: str) -> str:
    return {"embedding": "emb"}.get(layer, f"L{layer}" if layer.isdigit() else layer)


def _bar(fraction: float, width: int) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def layer_bars(norms: dict[str, float], ratios: dict[str, float] | None = None,
               width: int = 8) -> Text:
    """One line per layer: its name, a bar of its gradient norm on a log scale spanning the
    layers' values (whole decades), the norm, and the update ratio where known."""
    ratios = ratios or {}
    shown = [n for n in layer_order([norms]) if math.isfinite(norms[n]) and norms[n] > 0]
    out = Text("gradient norm (log) Δw/w", style="bold")
    if not shown:
        return out
    logs = [math.log10(norms[n]) for n in shown]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    high = max(high, low + 1)
    for layer, log in zip(shown, logs, strict=True):
        out.append_text(plain(f"\n{short(layer):>4} "))
        out.append(_bar((log - low + 0.125) / (high - low + 0.125), width), style="green")
        out.append(f" {norms[layer]:.1e}")
        if layer in ratios:
            out.append(f" Δ{ratios[layer]:.0e}", style="dim")
    return out


def variants_table(by_variant: dict[str, dict[str, float]]) -> Table | None:
    """Rows: layers; columns: variants (their names cut to 7 characters). The baseline's
    gradient norm, the others' as a multiple of it; None when nothing is measured yet."""
    if not any(by_variant.values()):
        return None
    baseline = by_variant.get("baseline", {})
    table = Table(box=None, padding=(0, 1, 0, 0), title="grad norm by layer, x base",
                  title_justify="left", title_style="bold")
    table.add_column("layer", min_width=4, no_wrap=True)
    for name in by_variant:  # plain(): a name from a file is never markup
        table.add_column(plain(name[:7]), justify="right", no_wrap=True, overflow="ellipsis")
    for layer in layer_order(by_variant.values()):
        cells = []
        for name, norms in by_variant.items():
            value = norms.get(layer)
            if value is None:
                cells.append("-")
            elif name == "baseline" or not baseline.get(layer):
                cells.append(f"{value:.2g}")
            else:
                cells.append(f"{value / baseline[layer]:.2g}")
        table.add_row(plain(short(layer)), *map(Text, cells))
    return table
