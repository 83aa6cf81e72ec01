"""`PortfolioBacktest`: the shared account, several strategies by weight, the limits,
clear errors and the HTML report."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest
from sapphire.backtest.portfolio import PortfolioBacktest, align_bars, load_instruments

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


def test_tables_are_built_on_first_use() -> None:
    res = PortfolioBacktest(PAIRS, "sma_cross", **RUN).run()
    assert all(callable(vars(res)[f"_{t}"]) for t in ("pnl", "trades", "orders"))  # not built
    assert res.trades is res.trades and res.pnl is res.pnl and res.orders is res.orders
    assert isinstance(vars(res)["_pnl"], pd.DataFrame)  # built once, then kept
    fresh = PortfolioBacktest(PAIRS, "sma_cross", **RUN).run()
    again = pickle.loads(pickle.dumps(fresh))  # pickled with its tables built
    pd.testing.assert_frame_equal(again.orders, res.orders)
    pd.testing.assert_frame_equal(again.pnl, res.pnl)
    assert list(res.pnl.columns) == list(PAIRS) and len(res.pnl) == len(res.equity)
    assert len(res.orders) >= 2 * len(res.trades) > 0


def test_instruments_with_the_same_bar_times_share_them() -> None:
    times = pd.date_range("2024-01-01", periods=50, freq="1h", tz="UTC").as_unit("us")
    bars = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0}
    frames = {
        "A": pd.DataFrame({"timestamp": times, **bars}),
        "B": pd.DataFrame({"timestamp": times, **bars}),
        "C": pd.DataFrame({"timestamp": times[1:], **bars}),
    }
    loaded = load_instruments(frames)
    stamps = {k: pd.DatetimeIndex(f["timestamp"]).asi8 for k, f in loaded.items()}
    assert np.shares_memory(stamps["A"], stamps["B"])
    assert not np.shares_memory(stamps["A"], stamps["C"])
    aligned = align_bars(loaded)
    assert all(len(b) == 49 for b in aligned.values())
    assert aligned["A"].time is aligned["B"].time and aligned["A"].timeframe_ns == 3_600_000_000_000
