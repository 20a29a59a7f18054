"""Loss curves over steps, drawn with plotext in braille dots; several named series overlay with a
legend (train and validation in the Train pane, one per variant in the Ablate pane)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from minigpt_tui.text import clean

# distinct in 256 colours and readable on dark and light themes
COLORS = ["cyan", "orange", "green", "magenta", "blue", "red", "yellow", "gray"]


class LossChart(PlotextPlot):
    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.series: dict[str, tuple[list[float], list[float]]] = {}

    def set_series(self, name: str, steps: list[float], losses: list[float]) -> None:
        self.series[name] = (steps, losses)

    def clear(self) -> None:
        self.series.clear()
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        for i, (name, (steps, losses)) in enumerate(self.series.items()):
            if steps:
                plt.plot(steps, losses, label=clean(name), marker="braille",
                         color=COLORS[i % len(COLORS)])
        self.refresh()
