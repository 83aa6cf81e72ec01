"""Fixed-width-window fractional differentiation and the minimum stationary order."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import binom

from sapphire.ml.fracdiff import ffd_weights, frac_diff, min_frac_order


@pytest.mark.parametrize("d", [0.05, 0.3, 0.5, 0.75, 1.5])
def test_weights_follow_the_recurrence_and_the_binomial_series(d: float) -> None:
    w = ffd_weights(d, threshold=1e-4)
    for k in range(1, w.size):
        assert w[k] == pytest.approx(-w[k - 1] * (d - k + 1) / k, rel=1e-15)
    lags = np.arange(w.size)
    np.testing.assert_allclose(w, (-1.0) ** lags * binom(d, lags), rtol=1e-9)
    assert (np.abs(w) >= 1e-4).all()
    next_weight = -w[-1] * (d - len(w) + 1) / len(w)
    assert abs(next_weight) < 1e-4  # the window stops at the first weight below the threshold


def test_weights_by_hand() -> None:
    np.testing.assert_allclose(ffd_weights(0.5, 0.1), [1.0, -0.5, -0.125])
    np.testing.assert_allclose(ffd_weights(0.5, 0.05), [1.0, -0.5, -0.125, -0.0625])
    np.testing.assert_array_equal(ffd_weights(1.0), [1.0, -1.0])
    np.testing.assert_array_equal(ffd_weights(0.0), [1.0])
    assert ffd_weights(0.5, 1e-4, max_width=3).size == 3


def test_frac_diff_by_hand_and_at_integer_orders() -> None:
    x = np.array([1.0, 2.0, 4.0, 8.0])
    # weights (1, -0.5, -0.125): y2 = 4 - 1 - 0.125, y3 = 8 - 2 - 0.25
    np.testing.assert_allclose(frac_diff(x, 0.5, threshold=0.1), [np.nan, np.nan, 2.875, 5.75])
    np.testing.assert_array_equal(frac_diff(x, 0.0), x)
    np.testing.assert_array_equal(frac_diff(x, 1.0), [np.nan, 1.0, 2.0, 4.0])
    assert np.isnan(frac_diff(x, 0.5, threshold=1e-4)).all()  # window wider than the data


def test_frac_diff_is_a_causal_dot_product_and_nan_stays_local() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=300))
    w = ffd_weights(0.4, 1e-3)
    y = frac_diff(x, 0.4, 1e-3)
    width = w.size
    assert np.isnan(y[: width - 1]).all()
    for t in (width - 1, 150, 299):
        assert y[t] == pytest.approx(float(np.dot(w, x[t - np.arange(width)])), rel=1e-12)
    x[200] = np.nan
    z = frac_diff(x, 0.4, 1e-3)
    assert np.isnan(z[200 : 200 + width]).all()
    np.testing.assert_array_equal(z[:200], y[:200])
    assert np.isfinite(z[200 + width :]).all()


def _adf_p(x: np.ndarray) -> float:
    from statsmodels.tsa.stattools import adfuller

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return float(adfuller(x[~np.isnan(x)], maxlag=1, regression="c", autolag=None)[1])


def test_min_order_of_a_random_walk_is_fractional_and_passes() -> None:
    walk = np.cumsum(np.random.default_rng(0).normal(size=3_000)) + 100.0
    result = min_frac_order(walk)
    assert result.d == pytest.approx(0.25)
    assert result.passed and result.p_value < 0.05
    assert result.p_value == pytest.approx(_adf_p(frac_diff(walk, 0.25)))
    assert result.correlation_with_original > 0.9  # memory kept, unlike returns (d = 1)
    for lower in (0.0, 0.05, 0.1, 0.15, 0.2):
        assert _adf_p(frac_diff(walk, lower)) >= 0.05  # no lower order on the grid passes


def test_min_order_of_real_log_prices_keeps_their_memory(btc_df: pd.DataFrame) -> None:
    log_close = np.log(btc_df["close"].to_numpy())
    result = min_frac_order(log_close, step=0.05)
    assert 0.0 < result.d <= 0.5 and result.passed
    assert result.correlation_with_original > 0.99
    assert _adf_p(log_close) > 0.05


def test_min_order_of_white_noise_is_zero() -> None:
    noise = np.random.default_rng(8).normal(size=2_000)
    result = min_frac_order(noise)
    assert (result.d, result.passed, result.correlation_with_original) == (0.0, True, 1.0)
    assert result.adf_stat < -10


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="d must be in"):
        frac_diff([1.0, 2.0], -0.5)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        ffd_weights(0.5, 0.0)
    with pytest.raises(ValueError, match="step must be > 0"):
        min_frac_order([1.0] * 100, step=0.0)
    with pytest.raises(ValueError, match="too short"):
        min_frac_order([1.0, 2.0, 3.0])


def test_pieces_are_differenced_apart_and_tested_together() -> None:
    rng = np.random.default_rng(3)
    a = np.cumsum(rng.normal(size=1_500)) + 100.0
    b = np.cumsum(rng.normal(size=1_200)) + 500.0  # a level jump from a's end
    result = min_frac_order([a, b])
    joined = np.concatenate([frac_diff(a, result.d), frac_diff(b, result.d)])
    assert result.passed and result.p_value == pytest.approx(_adf_p(joined))
    # one series is one piece
    assert min_frac_order(a) == min_frac_order([a])
