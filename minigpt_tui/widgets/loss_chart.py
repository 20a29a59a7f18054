"""Loss curves over steps, drawn with plotext in braille dots; several named series overlay with a
legend (train and validation in the Train pane, one per variant in the Ablate pane). A series may
carry a spread (an ablation's seeds: the mean drawn, the lowest and highest dotted about it in
its colour)."""

from __future__ import annotations

import itertools
import math

from textual_plotext import PlotextPlot

from minigpt_tui.text import clean

# distinct in 256 colours and readable on dark and light themes
COLORS = ["cyan", "orange", "green", "magenta", "blue", "red", "yellow", "gray"]


def whole_ticks(lo: float, hi: float, most: int) -> list[int]:
    """At most `most` ticks (two or more) for a step axis from lo to hi: whole steps, 1, 2 or 5
    times a power of ten apart. Plotext's own split the range evenly, into steps like 62.5."""
    first, last = math.ceil(lo), math.floor(hi)
    for power in itertools.count():
        for multiple in (1, 2, 5):
            spacing = multiple * 10**power
            if (last - first) // spacing + 1 <= max(most, 2):
                return list(range(math.ceil(first / spacing) * spacing, last + 1, spacing))


class LossChart(PlotextPlot):
    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.spreads: dict[str, tuple[list[float], list[float]]] = {}  # name: (lowest, highest)

    def set_series(self, name: str, steps: list[float], losses: list[float],
                   spread: tuple[list[float], list[float]] | None = None) -> None:
        """A curve, and the lowest and highest loss at each of its steps where it has a spread."""
        self.series[name] = (steps, losses)
        if spread is None:
            self.spreads.pop(name, None)
        else:
            self.spreads[name] = spread

    def clear(self) -> None:
        self.series.clear()
        self.spreads.clear()
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        for i, (name, (steps, losses)) in enumerate(self.series.items()):
            if not steps:
                continue
            color = COLORS[i % len(COLORS)]
            for edge in self.spreads.get(name, ()):
                plt.plot(steps, edge, marker="·", color=color)
            plt.plot(steps, losses, label=clean(name), marker="braille", color=color)
        self.refresh()

    def render(self):
        """The plot at this size, its step axis marked at whole steps."""
        xs = [x for steps, _ in self.series.values() for x in steps]
        if xs:
            label = len(str(int(max(xs))))  # a tick's label, and room around it
            self.plt.xticks(whole_ticks(min(xs), max(xs), self.size.width // (label + 6)))
        return super().render()
