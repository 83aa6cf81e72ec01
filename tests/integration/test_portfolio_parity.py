"""Parity of the portfolio engines: the compiled portfolio kernel and the event-driven
node (one venue, one shared account, one adapter per instrument) make the same trades
on the bundled Binance 5m pairs, in every sizing mode, with fees, slippage, lots, the
portfolio limits and funding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.portfolio import PortfolioBacktest

DATA = Path(__file__).parents[1] / "data"
PAIRS = {s: DATA / f"binance-{s}_BTC-5m.feather" for s in ("ETH", "ADA", "XMR")}
CASES: dict[str, dict[str, Any]] = {
    "notional": {"size_mode": "notional", "size": 0.2},
    "equity-lot-gross": {
        "size_mode": "equity", "size": 0.3, "fee": 0.001, "lot_size": 0.01, "max_gross": 0.8,
    },
    "equity-short-weight-slip": {
        "size_mode": "equity", "size": 0.5, "max_weight": 0.3, "short": True,
        "slippage_bps": 2,
    },
    "fixed-per-instrument": {
        "size_mode": "fixed", "size": 1.0, "leverage": 2.0,
        "instruments": {"ADA": {"size": 20_000.0, "fee": 0.002}, "XMR": {"size": 2.0}},
    },
}  # fmt: skip


def _sorted(trades: pd.DataFrame) -> pd.DataFrame:
    return trades.sort_values(["symbol", "entry_bar"]).reset_index(drop=True)


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_and_event_engine_make_the_same_trades(case: str) -> None:
    kw: dict[str, Any] = {"cash": 10.0, "leverage": None, **CASES[case]}
    vec = PortfolioBacktest(PAIRS, "sma_cross", **kw).run()
    evt = PortfolioBacktest(PAIRS, "sma_cross", engine="event", **kw).run()
    a, b = _sorted(vec.trades), _sorted(evt.trades)
    assert len(a) > 100 and len(a) == len(b)
    assert set(a["symbol"]) == set(PAIRS)
    for col in ("symbol", "entry_bar", "exit_bar", "side", "exit_reason"):
        assert a[col].tolist() == b[col].tolist(), col
    for col in ("size", "entry_price", "exit_price", "pnl", "fees"):
        np.testing.assert_allclose(
            np.asarray(b[col], dtype=float),
            np.asarray(a[col], dtype=float),
            rtol=1e-9,
            atol=1e-12,
            err_msg=col,
        )
    np.testing.assert_allclose(evt.equity.values, vec.equity.values, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(evt.pnl.values, vec.pnl.values, rtol=1e-9, atol=1e-11)
    rejected = (vec.orders["status"] == "rejected").sum()
    assert rejected == (evt.orders["status"] == "rejected").sum()


def test_funding_parity() -> None:
    eth = pd.read_feather(PAIRS["ETH"])
    times = pd.to_datetime(eth["date"], utc=True)
    funding = {
        "ETH": pd.Series(0.001, index=times[::96]),
        "XMR": pd.Series(-0.002, index=times[::96]),
    }
    kw: dict[str, Any] = {"cash": 10.0, "size_mode": "equity", "size": 0.3, "funding": funding}
    vec = PortfolioBacktest(PAIRS, "sma_cross", **kw).run()
    evt = PortfolioBacktest(PAIRS, "sma_cross", engine="event", **kw).run()
    a, b = _sorted(vec.trades), _sorted(evt.trades)
    assert a["funding"].abs().sum() > 0
    np.testing.assert_allclose(
        np.asarray(b["funding"], dtype=float),
        np.asarray(a["funding"], dtype=float),
        rtol=1e-9,
        atol=1e-13,
    )
    np.testing.assert_allclose(evt.equity.values, vec.equity.values, rtol=1e-9, atol=1e-11)
