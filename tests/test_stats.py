"""The statistics ablate says its results with, on numbers worked out by hand, and the scaling
law's fit on points made from known power laws."""

import math

import pytest

from minigpt.train.scaling import PowerLaw, Sweep, fit
from minigpt.train.stats import difference, mean, std, t_975


def test_mean_and_sample_spread():
    assert mean([1.0, 2.0, 6.0]) == 3.0
    assert std([1.0, 2.0, 6.0]) == pytest.approx(math.sqrt(7))  # (4 + 1 + 9) / (3 - 1)
    assert std([1.5]) is None  # one seed: no spread measured


def test_welch_interval_of_a_difference():
    """a = 1, 2, 3 and b = 4, 5, 6: the difference 3, standard error sqrt(1/3 + 1/3), Welch's
    df 4, t(0.975, 4) = 2.776: a half-width of 2.267, so 3 is outside the noise."""
    d = difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert d.value == 3.0 and d.df == pytest.approx(4.0)
    assert d.half_width == pytest.approx(2.776 * math.sqrt(2 / 3), abs=1e-3)
    assert d.within_noise is False
    close = difference([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert close.within_noise is True  # 0.5 inside +-2.27
    assert difference([1.0], [2.0]).within_noise is None  # one seed each: not measured


def test_t_quantiles():
    assert t_975(2) == pytest.approx(4.303) and t_975(30) == pytest.approx(2.042)
    assert 4.303 > t_975(2.5) > 3.182  # between 2 and 3 degrees of freedom
    assert t_975(1000) == pytest.approx(1.96, abs=0.01)


@pytest.mark.parametrize("a, alpha, c", [(8.0, 0.076, 1.2), (50.0, 0.3, 1.5), (300.0, 0.5, 0.8)])
def test_a_known_power_law_gives_back_its_exponent(a, alpha, c):
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    law = fit(sizes, [a * n ** -alpha + c for n in sizes])
    assert law.alpha == pytest.approx(alpha, rel=1e-6) and law.c == pytest.approx(c, rel=1e-6)
    assert law.a == pytest.approx(a, rel=1e-5) and law.r2 == pytest.approx(1.0)
    assert law(1e5) == pytest.approx(a * 1e5 ** -alpha + c)


def test_noisy_points_fit_closely_and_too_few_do_not_fit():
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
    noise = [0.01, -0.008, 0.005, -0.01, 0.004]
    law = fit(sizes, [8 * n ** -0.3 + 1.5 + e for n, e in zip(sizes, noise, strict=True)])
    assert 0.2 < law.alpha < 0.45 and law.r2 > 0.99
    assert fit([1e4, 1e5], [3.0, 2.0]) is None
    assert fit([1e4, 1e5, 0.0, 1e6], [3.0, 2.0, 1.0, float("nan")]) is None  # two usable points


def test_the_floor_of_a_fitted_loss_is_never_below_zero():
    """c is the loss no size gets under, and a cross-entropy is never negative: points that a
    curve with c < 0 would fit best (a few short runs) get c = 0, a pure power law."""
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
    law = fit(sizes, [10 * n ** -0.05 - 2.0 for n in sizes])
    assert 0.0 <= law.c < 1e-3 and law.r2 > 0.99


def test_a_sweep_is_read_back_as_ablate_wrote_it_and_a_bad_one_is_none():
    """The "scaling" entry of ablate's --json and ablation_done event: the law and its points
    back; what a file may hold instead is None, or the points that can be drawn."""
    law = fit([1e4, 1e5, 1e6], [3.0, 2.5, 2.2])
    points = [{"variant": "size-1x32", "params": 1e4, "val_loss": 3.0},
              {"variant": "baseline", "params": 1e5, "val_loss": 2.5}]
    sweep = Sweep.from_dict({"parameters": law.to_dict(), "compute": None, "points": points})
    assert sweep.law == law and sweep.points == [("size-1x32", 1e4, 3.0), ("baseline", 1e5, 2.5)]
    bad_points = [{"params": 0, "val_loss": 2.0}, {"params": math.inf, "val_loss": 2.0},
                  {"params": 1e5, "val_loss": math.nan}, {"params": "1e5", "val_loss": 2.0}, 7]
    for d in (None, [], {"parameters": None, "points": points},
              {"parameters": {"a": 1.0, "alpha": math.nan, "c": 1.0}, "points": points},
              {"parameters": {"a": True, "alpha": 0.1, "c": 1.0}, "points": points},
              {"parameters": law.to_dict(), "points": bad_points}):
        assert Sweep.from_dict(d) is None, d
    assert PowerLaw.from_dict({"a": 2.0, "alpha": 0.5, "c": 1.0})(4.0) == 2.0
