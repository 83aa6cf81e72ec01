"""VaR and volatility statistics, against hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.risk import (
    historical_var,
    parametric_var,
    realised_volatility,
    returns_from_equity,
    value_at_risk,
)

Z95 = 1.6448536269514722
Z99 = 2.3263478740408408


def test_historical_var_is_the_interpolated_lower_quantile() -> None:
    # 100 returns -0.50, -0.49, ..., 0.49; the 5 % quantile sits at order statistic
    # 0.05 * 99 = 4.95, between -0.46 and -0.45: -0.46 + 0.95 * 0.01 = -0.4505.
    returns = [(k - 50) / 100 for k in range(100)]
    assert historical_var(returns, 0.95) == pytest.approx(0.4505)
    # 1 % quantile: position 0.99 between -0.50 and -0.49 -> -0.4901
    assert historical_var(returns, 0.99) == pytest.approx(0.4901)


def test_historical_var_ignores_order_and_is_zero_when_the_tail_is_a_gain() -> None:
    returns = [0.03, -0.02, 0.01, -0.04, 0.0] * 10
    assert historical_var(returns, 0.95) == pytest.approx(historical_var(sorted(returns), 0.95))
    assert historical_var([0.01, 0.02, 0.03], 0.95) == 0.0


def test_parametric_var_uses_mean_and_sample_std() -> None:
    returns = [0.01, -0.01] * 50  # mean 0, sample std 0.01 * sqrt(100 / 99)
    std = 0.01 * math.sqrt(100 / 99)
    assert parametric_var(returns, 0.95) == pytest.approx(Z95 * std)
    assert parametric_var(returns, 0.99) == pytest.approx(Z99 * std)
    shifted = [r + 0.002 for r in returns]  # a positive mean lowers the VaR
    assert parametric_var(shifted, 0.95) == pytest.approx(Z95 * std - 0.002)


def test_value_at_risk_dispatches_and_names_unknown_methods() -> None:
    returns = [0.01, -0.02, 0.005, -0.01, 0.0]
    assert value_at_risk(returns, 0.95, "historical") == historical_var(returns, 0.95)
    assert value_at_risk(returns, 0.99, "parametric") == parametric_var(returns, 0.99)
    with pytest.raises(ValueError, match=r"unknown VaR method 'montecarlo'"):
        value_at_risk(returns, 0.95, "montecarlo")


@pytest.mark.parametrize("confidence", [1.0, 0.4, 1.5, -0.95])
def test_bad_confidence_is_named(confidence: float) -> None:
    with pytest.raises(ValueError, match=f"confidence must be in \\[0.5, 1\\), got {confidence}"):
        historical_var([0.01, -0.01], confidence)


def test_bad_returns_are_named() -> None:
    with pytest.raises(ValueError, match=r"at least 1 returns, got 0"):
        historical_var([], 0.95)
    with pytest.raises(ValueError, match=r"at least 2 returns, got 1"):
        parametric_var([0.01], 0.95)
    with pytest.raises(ValueError, match=r"finite, got nan at index 1"):
        historical_var([0.01, float("nan")], 0.95)


def test_realised_volatility_annualises_the_sample_std() -> None:
    returns = [0.01, -0.01] * 50
    assert realised_volatility(returns) == pytest.approx(0.01 * math.sqrt(100 / 99) * 365**0.5)
    assert realised_volatility(returns, 252) == pytest.approx(0.01 * math.sqrt(100 / 99) * 252**0.5)
    with pytest.raises(ValueError, match=r"periods_per_year must be positive, got 0"):
        realised_volatility(returns, 0)


def test_returns_from_equity() -> None:
    np.testing.assert_allclose(returns_from_equity([100.0, 110.0, 99.0]), [0.1, -0.1])
    with pytest.raises(ValueError, match=r"positive and finite, got 0.0 at index 2"):
        returns_from_equity([100.0, 90.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=2, max_size=200)
)
def test_var_properties(returns: list[float]) -> None:
    for var in (historical_var, parametric_var):
        v95, v99 = var(returns, 0.95), var(returns, 0.99)
        assert v95 >= 0.0
        assert v99 >= v95 - 1e-12  # more confidence never means less VaR
    # the historical VaR never exceeds the worst loss
    assert historical_var(returns, 0.99) <= max(0.0, -min(returns)) + 1e-12
