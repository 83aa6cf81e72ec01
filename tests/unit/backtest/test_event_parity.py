"""Parity of the two engines: the event-driven node (VectorAdapter + SimulatedVenue,
Decimal accounting) and the compiled kernel produce identical trades on real BTC data,
for every built-in strategy, with and without brackets, fees and slippage, in every
sizing mode, with reversals, limit/stop entries, lots, leverage, ticks and funding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest, Bars, Signals
from sapphire.strategy.base import Param, Strategy

BARS = 4000
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {}),
    ("sma_cross", {"short": True}),
    ("momentum", {}),
    ("momentum", {"short": True}),
    ("mean_reversion", {}),
    ("mean_reversion", {"short": True}),
    ("volatility_breakout", {}),
    ("volatility_breakout", {"short": True}),
]
BRACKETS: dict[str, dict[str, float]] = {
    "none": {},
    "sl_tp": {"stop_loss": 0.003, "take_profit": 0.004},
    "trail": {"trailing_stop": 0.002},
    "all": {"stop_loss": 0.002, "take_profit": 0.004, "trailing_stop": 0.003},
}
COSTS: dict[str, dict[str, float]] = {
    "free": {},
    "costs": {"fee": 0.0005, "slippage_bps": 2},
}


@pytest.fixture(scope="module")
def btc(btc_df: pd.DataFrame) -> pd.DataFrame:
    return btc_df.iloc[:BARS].reset_index(drop=True)


def assert_same(df: pd.DataFrame, strategy: Any, **kw: Any) -> pd.DataFrame:
    vec = Backtest(df, strategy, engine="vector", **kw).run()
    evt = Backtest(df, strategy, engine="event", **kw).run()
    a, b = vec.trades, evt.trades
    assert len(a) == len(b), f"{len(a)} kernel trades vs {len(b)} event trades"
    for col in ("entry_bar", "exit_bar", "side", "exit_reason"):
        assert a[col].tolist() == b[col].tolist(), col
    for col in ("size", "entry_price", "exit_price", "pnl", "fees", "funding"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, atol=1e-9, err_msg=col)
    np.testing.assert_allclose(evt.equity.values, vec.equity.values, rtol=1e-9)
    for key in ("total_return", "max_drawdown", "exposure", "win_rate", "fees"):
        np.testing.assert_allclose(evt.metrics[key], vec.metrics[key], rtol=1e-9, atol=1e-12)
    assert evt.config["engine"] == "event"
    return a


@pytest.mark.parametrize("costs", COSTS, ids=list(COSTS))
@pytest.mark.parametrize("bracket", BRACKETS, ids=list(BRACKETS))
@pytest.mark.parametrize(
    "item", STRATEGIES, ids=[n + ("-short" if p else "") for n, p in STRATEGIES]
)
def test_builtins_match_the_kernel(
    btc: pd.DataFrame, item: tuple[str, dict[str, Any]], bracket: str, costs: str
) -> None:
    name, params = item
    trades = assert_same(btc, name, **params, **BRACKETS[bracket], **COSTS[costs])
    assert len(trades) > 0
    if bracket != "none" and name != "volatility_breakout":
        assert set(trades["exit_reason"]) - {"signal", "end"}, "no bracket exit exercised"


@pytest.mark.parametrize(
    "sizing",
    [
        {"size_mode": "notional", "size": 5_000.0},
        {"size_mode": "equity", "size": 0.9},
        {"size_mode": "equity", "size": 0.5, "lot_size": 0.001},
        {"size_mode": "equity", "size": 2.5, "leverage": 3.0},
        {"size": 0.37, "lot_size": 0.01},
    ],
    ids=["notional", "equity", "equity-lot", "equity-leverage", "fixed-lot"],
)
def test_sizing_modes_and_reversals(btc: pd.DataFrame, sizing: dict[str, Any]) -> None:
    trades = assert_same(
        btc, "sma_cross", short=True, fee=0.0007, slippage_bps=3, stop_loss=0.004, **sizing
    )
    # reversals: a trade exits at the open where the next one enters
    assert (trades["exit_bar"].to_numpy()[:-1] == trades["entry_bar"].to_numpy()[1:]).any()


def test_ticks_worst_path_and_funding(btc: pd.DataFrame) -> None:
    times = pd.to_datetime(btc["timestamp"])
    funding = pd.Series(0.0001, index=times[::480])
    assert_same(
        btc, "momentum", short=True, tick_size=0.5, slippage_ticks=2, stop_loss=0.003,
        take_profit=0.005, trailing_stop=0.002, intrabar="worst", fee=0.0004, funding=funding,
    )  # fmt: skip


class PendingEntries(Strategy):
    """Limit entries below / stop entries above the close, alternating, with brackets."""

    every = Param(7)

    def signals(self, bars: Bars) -> Signals:
        n = len(bars)
        i = np.arange(n)
        enter_long = i % self.every == 0
        enter_short = i % self.every == 3
        exit_long = i % (2 * self.every) == 5
        exit_short = i % (2 * self.every) == 12
        kind = np.where(i % 2 == 0, "limit", "stop")
        long_px = np.where(kind == "limit", bars.close * 0.9995, bars.close * 1.0005)
        short_px = np.where(kind == "limit", bars.close * 1.0005, bars.close * 0.9995)
        price = np.where(enter_long, long_px, short_px)
        price[i % 29 == 0] = np.nan  # an invalid price is refused
        return Signals(
            enter_long=enter_long, exit_long=exit_long, enter_short=enter_short,
            exit_short=exit_short, entry_type=kind, entry_price=price,
        )  # fmt: skip


@pytest.mark.parametrize("extra", [{}, {"size_mode": "equity", "size": 0.8}])
def test_limit_and_stop_entries(btc: pd.DataFrame, extra: dict[str, Any]) -> None:
    trades = assert_same(
        btc, PendingEntries, fee=0.0005, slippage_bps=2, stop_loss=0.002, take_profit=0.003,
        trailing_stop=0.0015, **extra,
    )  # fmt: skip
    assert len(trades) > 50
    vec_run = Backtest(btc, PendingEntries, engine="vector", fee=0.0005).run()
    evt_run = Backtest(btc, PendingEntries, engine="event", fee=0.0005).run()
    vec, evt = vec_run.orders, evt_run.orders
    assert list(evt.columns) == list(vec.columns)
    for status in ("filled", "expired", "rejected"):
        assert (vec["status"] == status).sum() == (evt["status"] == status).sum(), status
    assert sorted(evt["reason"]) == sorted(vec["reason"])
    # the same fills (the tables list them in event order, so compare sorted)
    key = ["bar", "side", "role", "price", "liquidity"]
    a = vec_run.fills.sort_values(key).reset_index(drop=True)
    b = evt_run.fills.sort_values(key).reset_index(drop=True)
    assert a[["bar", "side", "role", "liquidity"]].equals(b[["bar", "side", "role", "liquidity"]])
    np.testing.assert_allclose(b["price"], a["price"], rtol=1e-12)
    np.testing.assert_allclose(b["fee"], a["fee"], rtol=1e-9)


class LastBarSignals(Strategy):
    """Signals on the very last bars: an exit and a reversal that have no next bar."""

    def signals(self, bars: Bars) -> Signals:
        n = len(bars)
        el = np.zeros(n, dtype=bool)
        es = np.zeros(n, dtype=bool)
        xl = np.zeros(n, dtype=bool)
        el[[10, n - 20]] = True
        xl[[30]] = True
        es[[n - 1]] = True  # exit the long and enter short: both dropped
        entry = np.where(np.arange(n) == n - 2, "limit", "market")
        el[n - 2] = True  # a limit entry on the last-but-one bar, alive on the last bar
        return Signals(
            enter_long=el, exit_long=xl, enter_short=es, entry_type=entry,
            entry_price=bars.close * 0.5,
        )  # fmt: skip


def test_signals_on_the_last_bar_are_dropped(btc: pd.DataFrame) -> None:
    trades = assert_same(btc, LastBarSignals, fee=0.001)
    assert trades["exit_reason"].tolist() == ["signal", "end"]
    vec = Backtest(btc, LastBarSignals, engine="vector").run().orders
    evt = Backtest(btc, LastBarSignals, engine="event").run().orders
    assert sorted(evt["status"]) == sorted(vec["status"])


def test_event_engine_refuses_fill_at_close(btc: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="fill_at"):
        Backtest(btc, "sma_cross", engine="event", fill_at="close")
    with pytest.raises(ValueError, match="engine='turbo'"):
        Backtest(btc, "sma_cross", engine="turbo")  # type: ignore[arg-type]


def test_cli_engine_event_prints_the_same_metrics() -> None:
    import json

    from typer.testing import CliRunner

    from sapphire.cli.main import app

    out = {}
    for engine in ("vector", "event"):
        result = CliRunner().invoke(
            app,
            ["backtest", "--data", "sample", "--end", "2022-01-04", "--fee", "0.001",
             "--stop-loss", "0.01", "--engine", engine, "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        out[engine] = json.loads(result.stdout)["metrics"]
    assert out["event"]["n_trades"] == out["vector"]["n_trades"] > 10
    for key in ("total_return", "fees", "max_drawdown"):
        assert out["event"][key] == pytest.approx(out["vector"][key], rel=1e-9)
    bad = CliRunner().invoke(app, ["backtest", "--engine", "turbo"])
    assert bad.exit_code != 0 and "engine='turbo'" in bad.output


class HoldLong(Strategy):
    """Long from bar 10 to the last bar: a position that spans every funding time."""

    def signals(self, bars: Bars) -> Signals:
        enter = np.zeros(len(bars), dtype=bool)
        enter[10] = True
        return Signals(enter_long=enter)


def test_funding_lands_on_its_own_bar_in_both_engines(btc: pd.DataFrame) -> None:
    times = pd.DatetimeIndex(btc["timestamp"])
    funding = pd.Series([0.001, -0.002, 0.0015, 0.0005, -0.001], index=times[100::700][:5])
    trades = assert_same(btc, HoldLong, funding=funding, fee=0.0004)
    assert len(trades) == 1 and trades["funding"].iloc[0] != 0.0
