"""Is a difference real, or noise? The statistics `minigpt ablate --seeds N` says its results
with, written out (no torch, no scipy).

Each variant trains at N seeds. Its loss is the mean over them, its spread their standard
deviation (n - 1 in the denominator). A difference from the baseline comes with the half-width
of its 95% confidence interval by Welch's t (the two variants' spreads need not be equal):
t(0.975, df) * sqrt(s1^2 / n1 + s2^2 / n2), df by Welch-Satterthwaite. Where the interval holds
zero, the difference is within the noise of N seeds, and is said so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Student's t at 0.975 for 1..30 degrees of freedom; beyond, the normal's 1.960 is within 0.04
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(df: float) -> float:
    """t's 0.975 quantile at df degrees of freedom (fractional df: interpolated)."""
    if df < 1:
        return math.inf
    if df >= len(T_975):
        return 1.960 + (T_975[-1] - 1.960) * len(T_975) / df  # towards the normal's
    low = int(df)
    frac = df - low
    high = T_975[min(low, len(T_975) - 1)]
    return T_975[low - 1] + frac * (high - T_975[low - 1])


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def std(values: list[float]) -> float | None:
    """The sample standard deviation; None for fewer than two values (no spread measured)."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Difference:
    """b minus a: the difference of the means, and its 95% interval's half-width (None with a
    single value on either side)."""

    value: float
    half_width: float | None
    df: float | None = None

    @property
    def within_noise(self) -> bool | None:
        """Whether the interval holds zero; None where no interval was measured."""
        return None if self.half_width is None else abs(self.value) <= self.half_width


def difference(a: list[float], b: list[float]) -> Difference:
    """Welch's interval for mean(b) - mean(a)."""
    value = mean(b) - mean(a)
    sa, sb = std(a), std(b)
    if sa is None or sb is None:
        return Difference(value, None)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(value, 0.0, math.inf)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return Difference(value, t_975(df) * se, df)
