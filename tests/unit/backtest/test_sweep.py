"""Sweeps in one compiled call agree with `Backtest` run one combination at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest
from sapphire.backtest.sweep import SWEEP_METRICS, grid_combinations, sweep

DATA = Path(__file__).parents[2] / "data"
PAIRS = {s: DATA / f"binance-{s}_BTC-5m.feather" for s in ("ETH", "XMR")}
RUN: dict[str, Any] = {
    "cash": 10.0,
    "size_mode": "equity",
    "size": 0.5,
    "fee": 0.001,
    "stop_loss": 0.01,
}


def test_grid_combinations_cover_the_product() -> None:
    combos = grid_combinations({"fast": [5, 10], "slow": [20, 30, 40]})
    assert len(combos) == 6 and combos[1] == {"fast": 5, "slow": 30}
    with pytest.raises(ValueError, match="no values"):
        grid_combinations({"fast": []})


def test_sweep_matches_backtests_one_by_one() -> None:
    grid = {"fast": [5, 10], "slow": [20, 40]}
    result = sweep(PAIRS, "sma_cross", grid, **RUN)
    assert len(result.table) == 8 and set(SWEEP_METRICS) <= set(result.table.columns)
    eth = pd.read_feather(PAIRS["ETH"])
    xmr_times = set(pd.to_datetime(pd.read_feather(PAIRS["XMR"])["date"]))
    aligned = eth[eth["date"].isin(xmr_times)].reset_index(drop=True)
    for params in grid_combinations(grid):
        one = Backtest(aligned, "sma_cross", **params, **RUN).run()
        row = result.table[
            (result.table["symbol"] == "ETH")
            & (result.table["fast"] == params["fast"])
            & (result.table["slow"] == params["slow"])
        ].iloc[0]
        assert row["trades"] == len(one.trades) > 0
        np.testing.assert_allclose(row["total_return"], one.metrics["total_return"], rtol=1e-9)
        np.testing.assert_allclose(row["max_drawdown"], one.metrics["max_drawdown"], rtol=1e-9)
        np.testing.assert_allclose(row["sharpe"], one.metrics["sharpe"], rtol=1e-6)
        np.testing.assert_allclose(row["win_rate"], one.metrics["win_rate"], rtol=1e-9)


def test_heatmap_and_best() -> None:
    result = sweep(PAIRS, "sma_cross", {"fast": [5, 10, 15], "slow": [30, 60]}, cash=10.0)
    heat = result.heatmap("fast", "slow")
    assert heat.shape == (2, 3)
    best = result.best("total_return")
    means = result.by_params()
    assert means["total_return"].max() == pytest.approx(
        means[(means["fast"] == best["fast"]) & (means["slow"] == best["slow"])][
            "total_return"
        ].iloc[0]
    )
    with pytest.raises(ValueError, match="not a grid parameter"):
        result.heatmap("fast", "nope")


def test_sweep_report(tmp_path: Path) -> None:
    result = sweep(PAIRS, "sma_cross", {"fast": [5, 10], "slow": [30, 60]}, cash=10.0)
    html = result.plot("fast", "slow", tmp_path / "s.html").read_text()
    assert "heatmap" in html and "sharpe by fast and slow" in html
