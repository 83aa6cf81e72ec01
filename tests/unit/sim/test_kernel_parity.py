"""The core acceptance test of the backtester: the compiled kernel (through `Backtest`)
agrees trade for trade and bar for bar with the independent plain-Python reference
simulator (tests/reference_sim.py) on real data (the whole bundled month), for every
built-in strategy, and on bars whose range covers both bracket legs and with a
stop-loss and a take-profit at the same price (the same-point priority)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reference_sim import (
    align_funding,
    assert_parity,
    fixed_strategy,
    ref_config,
    reference_for,
)
from sapphire import Backtest, Bars, Signals
from sapphire.strategy import get_strategy

DATA = Path(__file__).parents[2] / "data"
CASH = 100_000.0
MINUTE = 60_000_000_000
#: sizing defaults every case starts from (explicit rather than the library's defaults)
SIZING: dict[str, Any] = {"size_mode": "fixed", "leverage": None}

# (built-in, parameters): the defaults and one other setting of each
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {}),
    ("sma_cross", {"fast": 5, "slow": 50}),
    ("sma_cross", {"short": True}),
    ("sma_cross", {"short": True, "fast": 20, "slow": 60}),
    ("momentum", {}),
    ("momentum", {"lookback": 30, "threshold": 0.002, "short": True}),
    ("mean_reversion", {}),
    ("mean_reversion", {"period": 50, "entry_z": 2.5, "exit_z": 0.5, "short": True}),
    ("volatility_breakout", {}),
    ("volatility_breakout", {"channel": 60, "exit_channel": 20, "atr_mult": 3.0, "short": True}),
]
BRACKETS: dict[str, dict[str, float]] = {
    "none": {},
    "sl_tp": {"stop_loss": 0.003, "take_profit": 0.004},
    "trail": {"trailing_stop": 0.002},
    # the trail sits below the stop until the peak is 0.1 % above the entry: all three fire
    "all": {"stop_loss": 0.002, "take_profit": 0.004, "trailing_stop": 0.003},
}
COSTS: dict[str, dict[str, float]] = {
    "free": {},
    "costs": {"fee": 0.0005, "slippage_bps": 2},
}


def strategy_id(item: tuple[str, dict[str, Any]]) -> str:
    name, params = item
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def bars_of(df: pd.DataFrame, time_col: str, timeframe_ns: int) -> Bars:
    """Bars straight from the frame's columns (independent of the library's loader)."""
    return Bars(
        time=pd.DatetimeIndex(df[time_col]).as_unit("ns").asi8,
        open=df["open"].to_numpy(dtype=np.float64),
        high=df["high"].to_numpy(dtype=np.float64),
        low=df["low"].to_numpy(dtype=np.float64),
        close=df["close"].to_numpy(dtype=np.float64),
        volume=df["volume"].to_numpy(dtype=np.float64),
        timeframe_ns=timeframe_ns,
    )


@pytest.fixture(scope="module")
def btc_bars(btc_df: pd.DataFrame) -> Bars:
    assert len(btc_df) == 45_031
    return bars_of(btc_df, "timestamp", MINUTE)


_SIGNALS: dict[tuple[Any, ...], tuple[Bars, Signals]] = {}


def builtin_signals(name: str, params: dict[str, Any], bars: Bars) -> Signals:
    """A built-in's signals on `bars`, computed once per (strategy, params) per worker."""
    key = (name, tuple(sorted(params.items())), id(bars))
    if key not in _SIGNALS:  # (the bars are kept alive with their signals)
        _SIGNALS[key] = (bars, get_strategy(name)(**params).signals(bars))
    return _SIGNALS[key][1]


def check(
    df: pd.DataFrame,
    bars: Bars,
    strategy: Any,
    signals: Signals,
    *,
    params: dict[str, Any] | None = None,
    funding: pd.Series | None = None,
    funding_rates: np.ndarray | None = None,
    **kw: Any,
) -> Any:
    """Run Backtest and the reference with the same settings; require parity."""
    kw = {**SIZING, **kw}
    result = Backtest(df, strategy, funding=funding, **(params or {}), **kw).run()
    ref = reference_for(
        bars,
        signals,
        ref_config(**kw),
        stop_loss=kw.get("stop_loss"),
        take_profit=kw.get("take_profit"),
        trailing_stop=kw.get("trailing_stop"),
        funding=funding_rates,
    )
    assert_parity(result, ref)
    assert len(result.equity) == len(bars)
    assert result.equity.iloc[-1] == pytest.approx(
        kw["cash"] + result.trades["pnl"].sum(), rel=1e-9
    )
    return result


def _cases() -> list[Any]:
    out = []
    for strat in STRATEGIES:
        default = not strat[1]
        for bracket in BRACKETS:
            for cost in COSTS:
                for intrabar in ("path", "worst"):
                    fast = default and intrabar == "path"
                    marks = () if fast else (pytest.mark.slow,)
                    out.append(
                        pytest.param(
                            strat,
                            bracket,
                            cost,
                            intrabar,
                            id=f"{strategy_id(strat)}-{bracket}-{cost}-{intrabar}",
                            marks=marks,
                        )
                    )
    return out


@pytest.mark.parametrize(("strat", "bracket", "cost", "intrabar"), _cases())
def test_builtin_parity(
    btc_df: pd.DataFrame,
    btc_bars: Bars,
    strat: tuple[str, dict[str, Any]],
    bracket: str,
    cost: str,
    intrabar: str,
) -> None:
    name, params = strat
    sig = builtin_signals(name, params, btc_bars)
    kw = {"cash": CASH, "size": 1.0, "intrabar": intrabar, **BRACKETS[bracket], **COSTS[cost]}
    r = check(btc_df, btc_bars, name, sig, params=params, **kw)
    assert len(r.trades) > 50
    reasons = set(r.trades["exit_reason"])
    # the brackets actually fire on this data, so their rules are exercised
    if "stop_loss" in BRACKETS[bracket]:
        assert {"stop_loss", "take_profit"} <= reasons
    if "trailing_stop" in BRACKETS[bracket]:
        assert "trailing_stop" in reasons
    if COSTS[cost]:
        assert r.metrics["fees"] > 0


@pytest.mark.parametrize("strat", STRATEGIES[::2], ids=strategy_id)
@pytest.mark.parametrize("bracket", ["none", "all"])
@pytest.mark.parametrize("intrabar", ["path", "worst"])
def test_builtin_parity_fill_at_close(
    btc_df: pd.DataFrame,
    btc_bars: Bars,
    strat: tuple[str, dict[str, Any]],
    bracket: str,
    intrabar: str,
) -> None:
    name, params = strat
    sig = builtin_signals(name, params, btc_bars)
    kw = {
        "cash": CASH,
        "size": 1.0,
        "fill_at": "close",
        "intrabar": intrabar,
        **BRACKETS[bracket],
        **COSTS["costs"],
    }
    r = check(btc_df, btc_bars, name, sig, params=params, **kw)
    assert len(r.trades) > 50
    # fill_at="close": market entries fill at the signal bar's close (plus slippage)
    entries = r.fills[r.fills["role"] == "entry"]
    closes = btc_bars.close[entries["bar"].to_numpy()]
    slipped = np.where(entries["side"] == "buy", closes * (1 + 2 / 10_000), closes * (1 - 2e-4))
    np.testing.assert_allclose(entries["price"].to_numpy(), slipped, rtol=1e-12)


# ------------------------------------------------------------------ funding
@pytest.fixture(scope="module")
def xrp() -> tuple[pd.DataFrame, Bars, pd.DataFrame]:
    df = pd.read_feather(DATA / "binance-XRP_USDT_USDT-5m-futures.feather")
    funding = pd.read_feather(DATA / "binance-XRP_USDT_USDT-8h-funding_rate.feather")
    return df, bars_of(df, "date", 5 * MINUTE), funding


@pytest.mark.parametrize(
    "shift",
    [
        pd.Timedelta(0),  # real times (e.g. 00:00:00.017): the bar opening at 00:00
        pd.Timedelta(-1, "ms"),  # just before a bar open: charged in the previous bar
        pd.Timedelta(4, "min") + pd.Timedelta(59_999, "ms"),  # last ms of the bar
    ],
    ids=["real", "minus_1ms", "end_of_bar"],
)
@pytest.mark.parametrize("bracket", ["none", "all"])
@pytest.mark.parametrize("fill_at", ["open", "close"])
def test_funding_parity(
    xrp: tuple[pd.DataFrame, Bars, pd.DataFrame], shift: pd.Timedelta, bracket: str, fill_at: str
) -> None:
    df, bars, raw = xrp
    times = pd.DatetimeIndex(raw["date"]) + shift
    series = pd.Series(raw["open"].to_numpy(), index=times)
    # the doc's rule, computed here independently: open[i] <= T < open[i + 1]
    rates = align_funding(bars.time, bars.timeframe_ns, times.as_unit("ns").asi8, raw["open"])
    assert np.count_nonzero(rates) >= 10
    sig = builtin_signals("sma_cross", {"short": True}, bars)
    # brackets wider than on the 1-minute BTC bars, so positions live through fundings
    brackets = {"stop_loss": 0.01, "take_profit": 0.02, "trailing_stop": 0.012}
    kw = {"cash": 10_000.0, "size": 5_000.0, "fill_at": fill_at, **COSTS["costs"]}
    if bracket == "all":
        kw.update(brackets)
    r = check(
        df,
        bars,
        "sma_cross",
        sig,
        params={"short": True},
        funding=series,
        funding_rates=rates,
        **kw,
    )
    trades = r.trades
    assert (trades["funding"] != 0).sum() >= (8 if bracket == "none" else 3)
    # every funding rate in this window is positive: longs pay, shorts receive
    assert (rates >= 0).all()
    assert (trades.loc[trades["side"] == "long", "funding"] <= 0).all()
    assert (trades.loc[trades["side"] == "short", "funding"] >= 0).all()
    assert r.metrics["funding"] == pytest.approx(trades["funding"].sum(), rel=1e-12)


# --------------------------------------------------------- limit and stop entries
def with_entry_orders(sig: Signals, close: np.ndarray, kind: str, offset: float) -> Signals:
    """The same entries as limit / stop orders `offset` away from the signal close.

    A buy limit rests below the close, a buy stop above it; sells mirror. "mixed"
    alternates market, limit and stop from one bar to the next.
    """
    n = close.shape[0]
    long_side = np.asarray(sig.enter_long, dtype=bool)
    if kind == "mixed":
        kinds = np.array(["market", "limit", "stop"], dtype=object)[np.arange(n) % 3]
    else:
        kinds = np.full(n, kind, dtype=object)
    away = np.where(kinds == "limit", -1.0, 1.0) * np.where(long_side, 1.0, -1.0)
    price = np.where(kinds == "market", np.nan, close * (1 + away * offset))
    return Signals(
        enter_long=sig.enter_long,
        exit_long=sig.exit_long,
        enter_short=sig.enter_short,
        exit_short=sig.exit_short,
        entry_type=kinds,
        entry_price=price,
    )


@pytest.mark.parametrize("kind", ["limit", "stop", "mixed"])
@pytest.mark.parametrize("fill_at", ["open", "close"])
@pytest.mark.parametrize("bracket", ["none", "all"])
def test_limit_and_stop_entries_parity(
    btc_df: pd.DataFrame, btc_bars: Bars, kind: str, fill_at: str, bracket: str
) -> None:
    base = builtin_signals("sma_cross", {"short": True}, btc_bars)
    sig = with_entry_orders(base, btc_bars.close, kind, 0.001)
    kw = {
        "cash": CASH,
        "size": 1.0,
        "fill_at": fill_at,
        "maker_fee": 0.0002,
        "taker_fee": 0.0007,
        "slippage_bps": 2,
        **BRACKETS[bracket],
    }
    r = check(btc_df, btc_bars, fixed_strategy(sig), sig, **kw)
    entries = r.orders[r.orders["role"] == "entry"]
    statuses = set(entries["status"])
    assert {"filled", "expired"} <= statuses  # some rest and fill, some expire
    entry_fills = r.fills[r.fills["role"] == "entry"]
    if kind == "limit":
        assert set(entry_fills["liquidity"]) == {"maker"}
    if kind == "stop":
        assert set(entry_fills["liquidity"]) == {"taker"}


# ------------------------------------- both legs in one bar, both at one price
TICK = 0.01  # the sample's price step
TIE = 1e-7  # a bracket distance far under half a tick: both legs round to the entry price


def gaps_and_ties(sig: Signals, n: int) -> Signals:
    """`sig` with a bracket per entry: on every third signal bar a stop-loss and a
    take-profit that both round to the entry price (a stop and a limit at the same
    price, both crossed at the fill point), on the others a narrow bracket that one
    bar's range can cover."""
    tie = np.arange(n) % 3 == 0
    return Signals(
        enter_long=sig.enter_long, exit_long=sig.exit_long, enter_short=sig.enter_short,
        exit_short=sig.exit_short, stop_loss=np.where(tie, TIE, 0.001),
        take_profit=np.where(tie, TIE, 0.0012),
    )  # fmt: skip


@pytest.mark.parametrize("intrabar", ["path", "worst"])
def test_same_price_stop_and_limit_and_bars_covering_both_legs(
    btc_df: pd.DataFrame, btc_bars: Bars, intrabar: str
) -> None:
    """A swapped same-point priority or path order in the kernel breaks parity here."""
    sig = gaps_and_ties(builtin_signals("sma_cross", {"short": True}, btc_bars), len(btc_bars))
    kw = {"cash": CASH, "size": 0.1, "tick_size": TICK, "maker_fee": 0.0002,
          "taker_fee": 0.0007, "intrabar": intrabar}  # fmt: skip
    trades = check(btc_df, btc_bars, fixed_strategy(sig), sig, **kw).trades
    entry = trades["entry_price"].to_numpy()
    side = np.where(trades["side"] == "long", 1.0, -1.0)
    entry_bar, exit_bar = trades["entry_bar"].to_numpy(), trades["exit_bar"].to_numpy()
    tie = (entry_bar - 1) % 3 == 0  # market entries fill at the open after the signal

    def level(fraction: np.ndarray) -> np.ndarray:
        return np.round(entry * (1.0 + fraction) / TICK) * TICK

    # both legs exactly at the fill price: the stop-loss wins (the documented priority)
    same = tie & (level(-side * TIE) == entry) & (level(side * TIE) == entry)
    assert same.sum() > 100
    assert set(trades.loc[same, "exit_reason"]) == {"stop_loss"}
    assert (exit_bar[same] == entry_bar[same]).all()
    # bars whose range covers both legs: the path order decides which one fills
    sl, tp = level(-side * 0.001), level(side * 0.0012)
    covers = ~tie & (btc_bars.high[exit_bar] >= np.maximum(sl, tp))
    covers &= btc_bars.low[exit_bar] <= np.minimum(sl, tp)
    covers &= trades["exit_reason"].isin(["stop_loss", "take_profit"]).to_numpy()
    assert covers.sum() >= 5
    want = {"stop_loss"} if intrabar == "worst" else {"stop_loss", "take_profit"}
    assert set(trades.loc[covers, "exit_reason"]) == want


# ----------------------------------------------------- sizing, ticks, leverage
MONEY_CASES = {
    "notional": {"size": 20_000.0, "size_mode": "notional"},
    "equity": {"size": 0.5, "size_mode": "equity"},
    "equity_leveraged": {"size": 1.8, "size_mode": "equity", "leverage": 2.0},
    "tick_lot_bps": {
        "size": 20_000.0,
        "size_mode": "notional",
        "tick_size": 0.5,
        "lot_size": 0.001,
    },
    "tick_lot_ticks": {
        "size": 20_000.0,
        "size_mode": "notional",
        "tick_size": 0.5,
        "lot_size": 0.001,
        "slippage_ticks": 2,
    },
    "leverage_fixed": {"size": 4.0, "leverage": 2.0},  # <= 192k notional <= 2 * 100k
    "leverage_rejects": {"size": 4.0, "leverage": 1.0},  # >= 130k notional > 100k
}


@pytest.mark.parametrize("case", list(MONEY_CASES))
@pytest.mark.parametrize("intrabar", ["path", "worst"])
def test_sizing_ticks_lots_leverage_parity(
    btc_df: pd.DataFrame, btc_bars: Bars, case: str, intrabar: str
) -> None:
    money = dict(MONEY_CASES[case])
    costs = {"fee": 0.0005} if "slippage_ticks" in money else dict(COSTS["costs"])
    kw = {"cash": CASH, "intrabar": intrabar, **BRACKETS["all"], **costs, **money}
    sig = builtin_signals("sma_cross", {"short": True}, btc_bars)
    r = check(btc_df, btc_bars, "sma_cross", sig, params={"short": True}, **kw)
    entries = r.orders[r.orders["role"] == "entry"]
    if case == "leverage_rejects":
        assert r.trades.empty
        assert set(entries["reason"]) == {"insufficient margin"}
        return
    assert len(r.trades) > 100
    if "lot_size" in money:
        lots = r.trades["size"].to_numpy() / 0.001
        np.testing.assert_allclose(lots, np.round(lots), atol=1e-6)
    if "tick_size" in money:
        # every slipped (taker) fill lies on the tick grid
        taker = r.fills[r.fills["liquidity"] == "taker"]["price"].to_numpy() / 0.5
        np.testing.assert_allclose(taker, np.round(taker), atol=1e-6)
    if money.get("size_mode") == "notional":
        # qty = 20000 / fill price, rounded down to the lot: notional in (20000 - lot * p, 20000]
        entry = r.trades["entry_price"].to_numpy()
        notional = r.trades["size"].to_numpy() * entry
        lot = money.get("lot_size", 0.0)
        assert (notional <= 20_000 * (1 + 1e-12)).all()
        assert (notional > 20_000 - lot * entry - 1e-6).all()
