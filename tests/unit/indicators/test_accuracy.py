"""Numerical accuracy on long and ill-conditioned series, against exact arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import sapphire.indicators as ind
from sapphire.indicators.statistics import rolling_mean_std


def _exact_mean_std(window: np.ndarray) -> tuple[float, float]:
    values = [Fraction(float(v)) for v in window]
    mean = sum(values, Fraction(0)) / len(values)
    var = sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)
    return float(mean), math.sqrt(var)


@pytest.fixture(scope="module")
def long_walk() -> np.ndarray:
    """A million-bar random walk around 100,000: long enough for naive running sums to drift."""
    rng = np.random.default_rng(11)
    return 100_000.0 + np.cumsum(rng.normal(0.0, 25.0, 1_000_000))


def test_running_sums_do_not_drift_over_a_million_bars(long_walk: np.ndarray) -> None:
    period = 30
    sma = ind.sma(long_walk, period)
    wma = ind.wma(long_walk, period)
    weights = np.arange(1.0, period + 1)
    for t in range(len(long_walk) - 5_000, len(long_walk), 37):
        window = long_walk[t - period + 1 : t + 1]
        assert sma[t] == pytest.approx(math.fsum(window) / period, rel=1e-13)
        assert wma[t] == pytest.approx(math.fsum(window * weights) / weights.sum(), rel=1e-13)


@pytest.mark.parametrize("period", [2, 3, 20, 200])
def test_std_is_accurate_when_tiny_next_to_the_level(period: int) -> None:
    # Price ~40,000 moving by ~1e-3: the variance is 1e-15 of the squared level, where a
    # sum-of-squares formula loses every digit.
    rng = np.random.default_rng(period)
    x = 40_000.0 + np.cumsum(rng.normal(0.0, 1e-3, 20_000))
    x[5_000:5_400] += np.cumsum(rng.normal(0.0, 50.0, 400))  # a violent patch, then calm again
    mean, std = rolling_mean_std(x, period)
    z = ind.zscore(x, period)
    for t in range(period - 1, len(x), 97):
        ref_mean, ref_std = _exact_mean_std(x[t - period + 1 : t + 1])
        assert std[t] == pytest.approx(ref_std, rel=1e-9), t
        assert mean[t] == pytest.approx(ref_mean, rel=1e-14), t
        assert z[t] == pytest.approx((x[t] - ref_mean) / ref_std, rel=1e-6, abs=1e-9), t


def test_std_after_a_long_flat_stretch_is_exact_zero_then_recovers() -> None:
    x = np.r_[np.linspace(100.0, 200.0, 50), np.full(100, 150.0), [151.0, 149.0, 150.5]]
    _, std = rolling_mean_std(x, 10)
    assert (std[59:150] == 0.0).all()
    for t in (150, 151, 152):
        assert std[t] == pytest.approx(_exact_mean_std(x[t - 9 : t + 1])[1], rel=1e-12)
