"""Parity of the two engines: the event-driven node (VectorAdapter + SimulatedVenue,
Decimal accounting) and the compiled kernel produce identical trades on the whole
bundled BTC month, for every built-in strategy, with and without brackets, fees and
slippage, in every sizing mode, with reversals, limit/stop entries, lots, leverage,
ticks and funding, bars whose range covers both bracket legs, and a stop-loss and a
take-profit at the same price (the venue's same-point priority)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest, Bars, Signals
from sapphire.strategy.base import Param, Strategy

BARS = 45_031  # the whole bundled month
#: the run options every case starts from, explicit rather than the library's defaults
#: (1 BTC on 100,000: no run of the month comes near zero equity, where trading stops)
RUN: dict[str, Any] = {"cash": 100_000.0, "size": 1.0, "size_mode": "fixed", "leverage": None}
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
    assert len(btc_df) == BARS
    return btc_df


def assert_same(df: pd.DataFrame, strategy: Any, **kw: Any) -> pd.DataFrame:
    kw = {**RUN, **kw}
    vec = Backtest(df, strategy, engine="vector", **kw).run()
    evt = Backtest(df, strategy, engine="event", **kw).run()
    a, b = vec.trades, evt.trades
    assert len(a) == len(b), f"{len(a)} kernel trades vs {len(b)} event trades"
    for col in ("entry_bar", "exit_bar", "side", "exit_reason"):
        assert a[col].tolist() == b[col].tolist(), col
    for col in ("size", "entry_price", "exit_price", "pnl", "fees", "funding"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, atol=1e-9, err_msg=col)
    # relative, and 1e-12 of the cash absolute: a run that loses nearly all its equity
    # over the month keeps the float kernel's absolute error, not its relative one
    atol = 1e-12 * kw["cash"]
    np.testing.assert_allclose(evt.equity.values, vec.equity.values, rtol=1e-9, atol=atol)
    for key in ("total_return", "max_drawdown", "exposure", "win_rate", "fees"):
        np.testing.assert_allclose(evt.metrics[key], vec.metrics[key], rtol=1e-9, atol=1e-12)
    assert evt.config["engine"] == "event"
    return a


def _builtin_cases() -> list[Any]:
    """Every strategy x bracket x costs; sma_cross (all brackets) and every strategy with
    all brackets and costs run by default, the rest are marked slow."""
    out = []
    for item in STRATEGIES:
        for bracket in BRACKETS:
            for costs in COSTS:
                fast = item == STRATEGIES[0] or (bracket == "all" and costs == "costs")
                name = item[0] + ("-short" if item[1] else "")
                out.append(
                    pytest.param(
                        item, bracket, costs, id=f"{name}-{bracket}-{costs}",
                        marks=() if fast else (pytest.mark.slow,),
                    )
                )  # fmt: skip
    return out


@pytest.mark.parametrize(("item", "bracket", "costs"), _builtin_cases())
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


@pytest.mark.slow  # about 6,400 pending entries on the month, four runs
@pytest.mark.parametrize("extra", [{}, {"size_mode": "equity", "size": 0.8}])
def test_limit_and_stop_entries(btc: pd.DataFrame, extra: dict[str, Any]) -> None:
    trades = assert_same(
        btc, PendingEntries, fee=0.0005, slippage_bps=2, stop_loss=0.002, take_profit=0.003,
        trailing_stop=0.0015, **extra,
    )  # fmt: skip
    assert len(trades) > 50
    vec_run = Backtest(btc, PendingEntries, engine="vector", fee=0.0005, **RUN).run()
    evt_run = Backtest(btc, PendingEntries, engine="event", fee=0.0005, **RUN).run()
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
    vec = Backtest(btc, LastBarSignals, engine="vector", **RUN).run().orders
    evt = Backtest(btc, LastBarSignals, engine="event", **RUN).run().orders
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


TICK = 0.01  # the sample's price step
TIE = 1e-7  # a bracket distance far under half a tick: both legs round to the entry price


class GapsAndTies(Strategy):
    """sma_cross (long and short) with a bracket per entry: on every third signal bar a
    stop-loss and a take-profit so close that both round to the entry price (a stop and
    a limit at the same price, both crossed at the fill point), on the others a narrow
    bracket that one bar's range can cover (both legs inside the bar)."""

    def signals(self, bars: Bars) -> Signals:
        from sapphire.strategy import get_strategy

        base = get_strategy("sma_cross")(short=True).signals(bars)
        tie = np.arange(len(bars)) % 3 == 0
        return Signals(
            enter_long=base.enter_long, exit_long=base.exit_long,
            enter_short=base.enter_short, exit_short=base.exit_short,
            stop_loss=np.where(tie, TIE, 0.001), take_profit=np.where(tie, TIE, 0.0012),
        )  # fmt: skip


@pytest.mark.parametrize("intrabar", ["path", "worst"])
def test_same_price_stop_and_limit_and_bars_covering_both_legs(
    btc: pd.DataFrame, intrabar: str
) -> None:
    """A swapped same-point priority or path order in the venue breaks parity here."""
    trades = assert_same(
        btc, GapsAndTies, size=0.1, tick_size=TICK, maker_fee=0.0002, taker_fee=0.0007,
        intrabar=intrabar,
    )  # fmt: skip
    high, low = btc["high"].to_numpy(), btc["low"].to_numpy()
    entry = trades["entry_price"].to_numpy()
    side = np.where(trades["side"] == "long", 1.0, -1.0)
    entry_bar, exit_bar = trades["entry_bar"].to_numpy(), trades["exit_bar"].to_numpy()
    tie = (entry_bar - 1) % 3 == 0  # market entries fill at the open after the signal

    def level(fraction: np.ndarray) -> np.ndarray:
        return np.round(entry * (1.0 + fraction) / TICK) * TICK

    # (b) both legs exactly at the fill price: the stop wins (stop > limit at one point)
    sl, tp = level(-side * TIE), level(side * TIE)
    same = tie & (sl == entry) & (tp == entry)
    assert same.sum() > 100
    assert set(trades.loc[same, "exit_reason"]) == {"stop_loss"}
    assert (exit_bar[same] == entry_bar[same]).all()
    # (a) bars whose range covers both legs, so the path order decides which leg fills
    sl, tp = level(-side * 0.001), level(side * 0.0012)
    covers = ~tie & (high[exit_bar] >= np.maximum(sl, tp)) & (low[exit_bar] <= np.minimum(sl, tp))
    covers &= trades["exit_reason"].isin(["stop_loss", "take_profit"]).to_numpy()
    assert covers.sum() >= 5
    if intrabar == "worst":  # the worst path visits the stop first
        assert set(trades.loc[covers, "exit_reason"]) == {"stop_loss"}
    else:
        assert set(trades.loc[covers, "exit_reason"]) == {"stop_loss", "take_profit"}
