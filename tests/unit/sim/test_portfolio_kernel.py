"""The compiled portfolio kernel: running it window by window changes nothing, and each
instrument's pnl is rebuilt exactly from the events the kernel notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import sapphire.backtest.portfolio as portfolio
from sapphire.backtest.portfolio import PortfolioBacktest
from sapphire.sim.portfolio_kernel import instrument_pnl

DATA = Path(__file__).parents[2] / "data"
PAIRS = {s: DATA / f"binance-{s}_BTC-5m.feather" for s in ("ETH", "ADA", "XMR")}


def _run() -> Any:
    eth = pd.read_feather(PAIRS["ETH"])
    times = pd.to_datetime(eth["date"], utc=True)
    funding = {
        "ETH": pd.Series(0.001, index=times[::96]),
        "XMR": pd.Series(-0.002, index=times[::50]),
    }
    result = PortfolioBacktest(
        PAIRS, "sma_cross", cash=10.0, size_mode="equity", size=0.4, short=True, max_gross=0.9,
        fee=0.001, slippage_bps=2, funding=funding,
    )  # fmt: skip
    return result.run()


@pytest.mark.parametrize("width", [1, 97, 2048])
def test_windows_of_any_width_give_the_same_run(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _run()  # one window: the bundled pairs have under 6,000 bars
    monkeypatch.setattr(portfolio, "_WINDOW_CELLS", width * 3)
    monkeypatch.setattr(portfolio, "_MIN_WINDOW", width)
    windows = _run()
    assert len(whole.trades) > 100 and whole.metrics["funding"] != 0.0
    pd.testing.assert_frame_equal(windows.trades, whole.trades, check_exact=True)
    pd.testing.assert_frame_equal(windows.orders, whole.orders, check_exact=True)
    pd.testing.assert_series_equal(windows.equity, whole.equity, check_exact=True)
    pd.testing.assert_frame_equal(windows.pnl, whole.pnl, check_exact=True)
    assert windows.metrics == pytest.approx(whole.metrics, rel=0, abs=0, nan_ok=True)


def test_instrument_pnl_marks_the_position_in_force_at_each_close() -> None:
    close = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    # bought 2 at 10 at bar 1 (fee 0.5), sold at 13 at bar 3; the last bar holds both a
    # new short and the close at the end (the later note wins)
    bars = np.array([1, 3, 4, 4])
    held = np.array([2.0, 0.0, -1.0, 0.0])
    flow = np.array([-20.5, 5.5, 19.5, 5.0])
    out = np.empty(5)
    instrument_pnl(close, bars, held, flow, out)
    np.testing.assert_array_equal(out, [0.0, 1.5, 3.5, 5.5, 5.0])


def test_instrument_pnl_without_events_is_flat() -> None:
    out = np.full(3, np.nan)
    empty = np.empty(0)
    instrument_pnl(np.array([1.0, 2.0, 3.0]), np.empty(0, dtype=np.int64), empty, empty, out)
    np.testing.assert_array_equal(out, np.zeros(3))
