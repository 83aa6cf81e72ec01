"""`PortfolioBacktest`: the shared account, several strategies by weight, the limits,
clear errors and the HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sapphire import Backtest
from sapphire.backtest.portfolio import PortfolioBacktest

DATA = Path(__file__).parents[2] / "data"
PAIRS = {s: DATA / f"binance-{s}_BTC-5m.feather" for s in ("ETH", "ADA", "XMR")}
RUN: dict[str, Any] = {"cash": 10.0, "size_mode": "notional", "size": 1.0, "fee": 0.001}


def test_one_instrument_equals_backtest() -> None:
    one = PortfolioBacktest({"ETH": PAIRS["ETH"]}, "sma_cross", **RUN).run()
    ref = Backtest(PAIRS["ETH"], "sma_cross", **RUN).run()
    assert one.trades["entry_bar"].tolist() == ref.trades["entry_bar"].tolist()
    np.testing.assert_allclose(one.equity.to_numpy(), ref.equity.to_numpy(), rtol=1e-12)
    assert one.metrics["total_return"] == pytest.approx(ref.metrics["total_return"])


def test_shared_account_sums_instrument_pnl() -> None:
    res = PortfolioBacktest(PAIRS, "sma_cross", **RUN).run()
    assert set(res.trades["symbol"]) == set(PAIRS)
    np.testing.assert_allclose(res.equity.to_numpy(), 10.0 + res.pnl.sum(axis=1).to_numpy())
    per_symbol = res.trades.groupby("symbol")["pnl"].sum()
    for sym in PAIRS:
        assert res.pnl[sym].iloc[-1] == pytest.approx(per_symbol[sym], abs=1e-9)


def test_limits_cap_positions() -> None:
    free = PortfolioBacktest(PAIRS, "sma_cross", cash=10.0, size_mode="equity", size=0.6).run()
    capped = PortfolioBacktest(
        PAIRS, "sma_cross", cash=10.0, size_mode="equity", size=0.6, max_weight=0.2, max_gross=0.4
    ).run()
    notional = capped.trades["size"] * capped.trades["entry_price"]
    assert notional.max() <= 0.2 * capped.equity.max() + 1e-9
    assert notional.max() < (free.trades["size"] * free.trades["entry_price"]).max()
    assert (capped.orders["status"] == "rejected").any()  # gross exposure full


def test_strategies_side_by_side_by_weight() -> None:
    res = PortfolioBacktest(PAIRS, ["sma_cross", "momentum"], weights=[3, 1], **RUN).run()
    assert res.weights == {"sma_cross": 0.75, "momentum": 0.25}
    assert set(res.trades["strategy"]) == {"sma_cross", "momentum"}
    assert res.sleeves["sma_cross"].iloc[0] == pytest.approx(7.5, rel=0.05)
    total = res.sleeves["sma_cross"] + res.sleeves["momentum"]
    np.testing.assert_allclose(res.equity.to_numpy(), total.to_numpy())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"stop_loss": 0.01}, "stop_loss is not supported"),
        ({"weights": [1, 1]}, "weights="),
        ({"max_weight": -1}, "max_weight=-1"),
        ({"instruments": {"DOGE": {"fee": 0.0}}}, "no data"),
        ({"instruments": {"ETH": {"tick_size": 0.1}}}, "cannot be set per instrument"),
        ({"engine": "gpu"}, "engine='gpu'"),
    ],
)
def test_clear_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PortfolioBacktest(PAIRS, "sma_cross", **kw)


def test_report(tmp_path: Path) -> None:
    res = PortfolioBacktest(PAIRS, ["sma_cross", "momentum"], **RUN).run()
    html = res.plot(tmp_path / "p.html").read_text()
    assert "Net pnl by instrument" in html and "Equity by strategy" in html and "ADA" in html
