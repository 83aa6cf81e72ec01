"""Allocation methods (skfolio), walk-forward rebalancing after costs, target orders."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire.portfolio.allocation import METHODS, allocate, target_orders, walk_forward

DATA = Path(__file__).parents[2] / "data"


@pytest.fixture(scope="module")
def returns() -> pd.DataFrame:
    closes = {
        s: pd.read_feather(DATA / f"binance-{s}_BTC-5m.feather").set_index("date")["close"]
        for s in ("ETH", "ADA", "XMR")
    }
    hourly = pd.DataFrame(closes).dropna().resample("1h").last()
    return hourly.pct_change().dropna()


@pytest.mark.parametrize("method", METHODS)
def test_weights_are_long_only_and_sum_to_one(returns: pd.DataFrame, method: str) -> None:
    w = allocate(returns, method, max_weight=0.6 if method != "inverse_vol" else None)
    assert list(w.index) == ["ETH", "ADA", "XMR"]
    assert w.sum() == pytest.approx(1.0) and (w >= -1e-9).all()
    if method in ("risk_parity", "hrp", "mean_variance", "min_cvar"):
        assert w.max() <= 0.6 + 1e-6


def test_inverse_vol_favours_the_calm_asset(returns: pd.DataFrame) -> None:
    w = allocate(returns, "inverse_vol")
    vol = returns.std()
    assert w.idxmax() == vol.idxmin() and w.idxmin() == vol.idxmax()
    assert allocate(returns, "equal").tolist() == pytest.approx([1 / 3] * 3)


def test_walk_forward_against_equal_weight(returns: pd.DataFrame) -> None:
    wf = walk_forward(returns, "hrp", train=120, step=48, cost=0.001)
    assert list(wf.equity.columns) == ["hrp", "equal"]
    assert len(wf.equity) == len(returns) - 120 and len(wf.weights) == len(
        range(120, len(returns), 48)
    )
    free = walk_forward(returns, "hrp", train=120, step=48, cost=0.0)
    assert free.equity["hrp"].iloc[-1] > wf.equity["hrp"].iloc[-1]  # costs are paid
    assert set(wf.metrics["hrp"]) == {"total_return", "max_drawdown", "sharpe"}
    with pytest.raises(ValueError, match="train="):
        walk_forward(returns, "hrp", train=len(returns))


def test_equal_weight_buy_and_hold_matches_by_hand(returns: pd.DataFrame) -> None:
    wf = walk_forward(returns, "equal", train=10, step=10_000, cost=0.0)
    growth = (1 + returns.iloc[10:]).cumprod()
    np.testing.assert_allclose(wf.equity["equal"].to_numpy(), growth.mean(axis=1).to_numpy())


def test_target_orders() -> None:
    orders = target_orders(
        {"ETH": 0.5, "ADA": 0.5},
        {"ETH": Decimal("1"), "XMR": Decimal("2")},
        {"ETH": Decimal("100"), "ADA": Decimal("3"), "XMR": Decimal("50")},
        Decimal("1000"),
        {"ADA": Decimal("1")},
    )
    assert orders == {"ETH": Decimal("4"), "ADA": Decimal("166"), "XMR": Decimal("-2")}
    with pytest.raises(ValueError, match="no price"):
        target_orders({"ETH": 1.0}, {}, {}, Decimal("1"))


def test_bad_inputs(returns: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="method='magic'"):
        allocate(returns, "magic")
    with pytest.raises(ValueError, match=r"max_weight=0\.2"):
        allocate(returns, "hrp", max_weight=0.2)
