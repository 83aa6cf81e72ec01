"""Accounting identities of backtest results on real data (docs/backtest.md, "Sizing
and money"): the equity curve, the trades, the fills and the metrics tell one story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reference_sim import align_funding, equity_from_fills
from sapphire import Backtest

DATA = Path(__file__).parents[2] / "data"

BUILTINS: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {}),
    ("sma_cross", {"short": True}),
    ("momentum", {"short": True, "lookback": 30, "threshold": 0.002}),
    ("mean_reversion", {"short": True}),
    ("volatility_breakout", {"short": True}),
]
IDS = [name + ("-short" if p.get("short") else "") for name, p in BUILTINS]


@pytest.fixture(scope="module")
def xrp() -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """XRP perpetual 5m bars, the real funding series and its per-bar summed rates."""
    df = pd.read_feather(DATA / "binance-XRP_USDT_USDT-5m-futures.feather")
    raw = pd.read_feather(DATA / "binance-XRP_USDT_USDT-8h-funding_rate.feather")
    times = pd.DatetimeIndex(raw["date"])
    series = pd.Series(raw["open"].to_numpy(), index=times)
    bar_times = pd.DatetimeIndex(df["date"]).as_unit("ns").asi8
    rates = align_funding(bar_times, 300_000_000_000, times.as_unit("ns").asi8, raw["open"])
    assert np.count_nonzero(rates) >= 10
    return df, series, rates


def check_identities(r: Any, df: pd.DataFrame, cash: float, rates: np.ndarray | None) -> None:
    trades, fills, equity = r.trades, r.fills, r.equity.to_numpy()
    assert len(trades) > 5
    # final equity == initial cash + sum of trade pnl (the last value is after the end close)
    assert equity[-1] == pytest.approx(cash + trades["pnl"].sum(), rel=1e-9)
    # equity[i] == cash_i + qty_i * close[i], with cash and position rebuilt from the fills
    # (and the funding charged at each bar's open on the position held into it)
    rebuilt = equity_from_fills(df["open"], df["close"], fills, cash, rates)
    np.testing.assert_allclose(equity, rebuilt, rtol=1e-9)
    # fees: fills == trades == metrics
    assert fills["fee"].sum() == pytest.approx(trades["fees"].sum(), rel=1e-9)
    assert r.metrics["fees"] == pytest.approx(trades["fees"].sum(), rel=1e-9)
    assert r.metrics["funding"] == pytest.approx(trades["funding"].sum(), rel=1e-9, abs=1e-12)
    # one entry and one exit fill per trade, at the trade's prices and size
    assert len(fills) == 2 * len(trades)
    entries = fills[fills["role"] == "entry"]
    np.testing.assert_allclose(entries["price"], trades["entry_price"], rtol=1e-12)
    np.testing.assert_allclose(entries["quantity"], trades["size"], rtol=1e-12)
    assert list(entries["bar"]) == list(trades["entry_bar"])
    assert list(entries["side"]) == ["buy" if s == "long" else "sell" for s in trades["side"]]
    # each trade's pnl and return from its own columns
    sign = np.where(trades["side"] == "long", 1.0, -1.0)
    pnl = (
        sign * trades["size"] * (trades["exit_price"] - trades["entry_price"])
        - trades["fees"]
        + trades["funding"]
    )
    np.testing.assert_allclose(trades["pnl"], pnl, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        trades["return"], trades["pnl"] / (trades["size"] * trades["entry_price"]), rtol=1e-9
    )
    # no overlapping trades: each one starts at or after the previous exit
    assert (trades["entry_bar"].to_numpy()[1:] >= trades["exit_bar"].to_numpy()[:-1]).all()


@pytest.mark.parametrize(("name", "params"), BUILTINS, ids=IDS)
@pytest.mark.parametrize("brackets", [False, True], ids=["signals", "brackets"])
def test_accounting_with_costs_and_funding(
    xrp: tuple[pd.DataFrame, pd.Series, np.ndarray],
    name: str,
    params: dict[str, Any],
    brackets: bool,
) -> None:
    df, series, rates = xrp
    extra = {"stop_loss": 0.01, "take_profit": 0.02, "trailing_stop": 0.012} if brackets else {}
    cash = 10_000.0
    r = Backtest(
        df,
        name,
        cash=cash,
        size=0.8,
        size_mode="equity",
        maker_fee=0.0002,
        taker_fee=0.0005,
        slippage_bps=2,
        funding=series,
        **extra,
        **params,
    ).run()
    check_identities(r, df, cash, rates)
    if params.get("short") and name == "sma_cross" and not brackets:
        # always in the market: every funding time is charged to some trade
        assert (r.trades["funding"] != 0).sum() >= 8


@pytest.mark.parametrize(("name", "params"), BUILTINS, ids=IDS)
def test_accounting_on_the_btc_month(
    btc_df: pd.DataFrame, name: str, params: dict[str, Any]
) -> None:
    cash = 100_000.0
    r = Backtest(
        btc_df,
        name,
        cash=cash,
        size=1.0,
        size_mode="fixed",
        fee=0.0005,
        slippage_bps=2,
        stop_loss=0.004,
        take_profit=0.008,
        **params,
    ).run()
    check_identities(r, btc_df, cash, None)
    assert r.metrics["fees"] > 0
