"""A size sweep's scaling plot: each size's validation loss against its parameters, on log axes,
and the power law ablate fitted through them, L(N) = a·N^-α + c (train/scaling.py), drawn over
the range of the sizes."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from minigpt.train.scaling import PowerLaw, Sweep
from minigpt_tui.widgets.loss_chart import COLORS

CURVE_POINTS = 60  # the fitted curve's points, evenly spaced in log N


def short(n: float) -> str:
    """A count of parameters as a tick says it: 10k, 1M, 1.5M."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def decade_ticks(lo: float, hi: float) -> list[float]:
    """The powers of ten from lo to hi; lo and hi themselves where fewer than two fall between."""
    ticks = [10.0**p for p in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)]
    return ticks if len(ticks) >= 2 else sorted({lo, *ticks, hi})


def drawable(law: PowerLaw, ns: list[float]) -> tuple[list[float], list[float]]:
    """The law's curve at ns, where it is a finite number: a law read from a file may overflow."""
    kept = []
    for n in ns:
        try:
            value = law(n)
        except (OverflowError, ZeroDivisionError):
            continue
        if math.isfinite(value):
            kept.append((n, value))
    return [n for n, _ in kept], [value for _, value in kept]


class ScalingChart(PlotextPlot):
    DEFAULT_CSS = """
    ScalingChart { height: 1fr; min-height: 6; }
    """

    def show(self, sweep: Sweep | None) -> None:
        plt = self.plt
        plt.clear_data()
        if sweep is None:
            self.refresh()
            return
        law, points = sweep.law, sweep.points
        sizes = [n for _, n, _ in points]
        lo, hi = min(sizes), max(sizes)
        step = (math.log(hi) - math.log(lo)) / (CURVE_POINTS - 1) if hi > lo else 0.0
        ns = [math.exp(math.log(lo) + i * step) for i in range(CURVE_POINTS)]
        losses = [loss for _, _, loss in points]
        ns, curve = drawable(law, ns)
        positive = all(v > 0 for v in (*losses, *curve))  # a log axis draws nothing at 0 or less
        plt.xscale("log")
        plt.yscale("log" if positive else "linear")
        plt.title(f"L(N) = a·N^-α + c   α {law.alpha:.3g}  c {law.c:.3g}"
                  + ("" if math.isnan(law.r2) else f"  R² {law.r2:.3g}"))
        plt.xlabel("parameters (log)")
        if ns:
            plt.plot(ns, curve, marker="braille", color=COLORS[0])
        plt.scatter(sizes, losses, marker="●", color=COLORS[1])
        ticks = decade_ticks(lo, hi)
        plt.xticks(ticks, [short(t) for t in ticks])
        every = sorted({*losses, *curve})
        y_lo, y_hi = every[0], every[-1]
        if math.isfinite(y_hi - y_lo):  # four ticks, at two decimals: plotext's run to many
            y_ticks = [y_lo + (y_hi - y_lo) * i / 3 for i in range(4)] if y_hi > y_lo else [y_lo]
            plt.yticks(y_ticks, [f"{y:.2f}" for y in y_ticks])
        self.refresh()
