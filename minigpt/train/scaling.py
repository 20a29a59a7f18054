"""A scaling law from a size sweep: L(N) = a * N^(-alpha) + c (Kaplan et al. 2020; Hoffmann et
al. 2022 add a term for data). N is the model's non-embedding parameters, or the compute its
training took (6 N D FLOPs for D tokens); c is the loss no size reaches, what the data leaves
unpredictable at this budget.

The fit is least squares in log space, as people fit it: for each c below the smallest loss, a
straight line through log N and log(L - c) gives alpha and a; the c whose curve is closest to
the losses (least squared error in L) wins. It needs at least three points; five make it mean
something. No torch, no scipy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from minigpt.runs.read import number, text, whole


@dataclass(frozen=True)
class PowerLaw:
    a: float
    alpha: float
    c: float
    r2: float  # how much of the losses' variance the curve explains (1: all of it)
    points: int
    against: str = "parameters"  # or "compute": what N counts

    def __call__(self, n: float) -> float:
        return self.a * n ** (-self.alpha) + self.c

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> PowerLaw | None:
        """A law as to_dict() wrote it, read back from a file that may hold anything: None
        without a finite a, alpha and c."""
        if not isinstance(d, dict):
            return None
        a, alpha, c = number(d, "a"), number(d, "alpha"), number(d, "c")
        if any(v is None or not math.isfinite(v) for v in (a, alpha, c)):
            return None
        r2 = number(d, "r2")
        return cls(a, alpha, c, math.nan if r2 is None else r2, whole(d, "points") or 0,
                   text(d, "against") or "parameters")


@dataclass(frozen=True)
class Sweep:
    """A size sweep's law against the parameters and the points it was fitted to, as ablate's
    --json and its ablation_done event carry them (ablation.scaling_laws)."""

    law: PowerLaw
    points: list[tuple[str, float, float]]  # (variant, parameters, validation loss)

    @classmethod
    def from_dict(cls, d) -> Sweep | None:
        """The sweep a "scaling" entry holds; None without a law, or with no point to draw."""
        law = PowerLaw.from_dict(d.get("parameters")) if isinstance(d, dict) else None
        points = d.get("points") if isinstance(d, dict) else None
        read = [(text(p, "variant") or "", number(p, "params"), number(p, "val_loss"))
                for p in (points if isinstance(points, list) else []) if isinstance(p, dict)]
        read = [(name, n, loss) for name, n, loss in read
                if n is not None and 0 < n < math.inf and loss is not None and math.isfinite(loss)]
        return cls(law, read) if law is not None and read else None


def fit(sizes: list[float], losses: list[float], against: str = "parameters",
        steps: int = 200) -> PowerLaw | None:
    """The power law through (size, loss) points; None for fewer than three usable points (a
    positive size and a finite loss). c is searched on a grid between 0 (a cross-entropy is
    never below it) and just under the lowest loss, then narrowed by golden-section search
    around the best grid point."""
    points = sorted((n, loss) for n, loss in zip(sizes, losses, strict=True)
                    if n > 0 and math.isfinite(loss))
    if len(points) < 3:
        return None
    xs = [math.log(n) for n, _ in points]
    ls = [loss for _, loss in points]
    lowest, span = min(ls), (max(ls) - min(ls)) or 1.0
    floor = max(0.0, lowest - span * 4)
    grid = [floor + (lowest - floor) * i / steps for i in range(steps)]  # up to just under it
    errors = [_error(xs, ls, c)[0] for c in grid]
    i = min(range(steps), key=errors.__getitem__)
    low, high = grid[max(i - 1, 0)], grid[i + 1] if i + 1 < steps else lowest - span * 1e-6
    for _ in range(60):  # golden-section search for the c with the least error
        m1, m2 = high - (high - low) / 1.618, low + (high - low) / 1.618
        if _error(xs, ls, m1)[0] < _error(xs, ls, m2)[0]:
            high = m2
        else:
            low = m1
    c = (low + high) / 2
    error, a, alpha = _error(xs, ls, c)
    if not math.isfinite(error):
        return None
    mean_loss = sum(ls) / len(ls)
    total = sum((loss - mean_loss) ** 2 for loss in ls)
    return PowerLaw(a, alpha, c, 1 - error / total if total else 1.0, len(points), against)


def _error(xs: list[float], ls: list[float], c: float) -> tuple[float, float, float]:
    """(squared error in L, a, alpha) of the straight line through log N, log(L - c)."""
    if c >= min(ls):
        return math.inf, math.nan, math.nan
    line = _line(xs, [math.log(loss - c) for loss in ls])
    if line is None:
        return math.inf, math.nan, math.nan
    slope, intercept = line
    a, alpha = math.exp(intercept), -slope
    return sum((a * math.exp(-alpha * x) + c - loss) ** 2
               for x, loss in zip(xs, ls, strict=True)), a, alpha


def _line(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """The least-squares slope and intercept of ys on xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx
