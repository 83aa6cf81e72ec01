"""Hand-worked bar sequences: the expected numbers are derived in the comments from
docs/backtest.md, and both the kernel (through `Backtest`) and the reference simulator
(tests/reference_sim.py) must produce them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_sim import (
    RefResult,
    assert_parity,
    equity_from_fills,
    fixed_strategy,
    make_bars,
    ref_config,
    reference_for,
)
from sapphire import Backtest, Signals

FLAT = (100.0, 100.5, 99.5, 100.0)  # a quiet bar: nothing is reached in it
CASH = 10_000.0


def flags(n: int, *bars: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(bars)] = True
    return out


def run_both(
    rows: list[tuple[float, float, float, float]],
    signals: Signals,
    *,
    funding_rates: list[float] | None = None,
    **kw: Any,
) -> tuple[Any, RefResult]:
    """Run Backtest (kernel) and the reference on the same bars/signals; check parity."""
    bars = make_bars(rows)
    # the hand-worked cases trade 1 unit without a margin limit (the old defaults) unless
    # they say otherwise: the figures in the comments follow from that
    kw = {"cash": CASH, "size": 1.0, "size_mode": "fixed", "leverage": None, **kw}
    funding = None
    if funding_rates is not None:
        # one funding time 30 s into each bar with a non-zero rate
        times = pd.to_datetime(bars.time + 30_000_000_000, utc=True)
        funding = pd.Series(funding_rates, index=times)
        funding = funding[funding != 0]
    result = Backtest(bars, fixed_strategy(signals), funding=funding, **kw).run()
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
    # accounting: final equity is the final cash; the curve follows from the fills
    final = kw["cash"] + result.trades["pnl"].sum()
    assert result.equity.iloc[-1] == pytest.approx(final, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(
        result.equity.to_numpy(),
        equity_from_fills(bars.open, bars.close, result.fills, kw["cash"], funding_rates),
        rtol=1e-12,
    )
    return result, ref


def entry_orders(result: Any) -> pd.DataFrame:
    orders = result.orders
    return orders[orders["role"] == "entry"].reset_index(drop=True)


# --------------------------------------------------------------------- entries
def test_market_entry_fills_at_next_open_and_closes_at_end() -> None:
    rows = [(100, 101, 99, 100), (102, 103, 101, 102), (103, 104, 102, 103.5)]
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)))
    # signal on bar 0 -> buy 1 at open[1] = 102; still open after the last bar -> sold
    # at close[2] = 103.5 with reason "end"; pnl = 1.5
    assert len(r.trades) == 1
    t = r.trades.iloc[0]
    assert (t.entry_bar, t.exit_bar, t.side, t.exit_reason) == (1, 2, "long", "end")
    assert (t.entry_price, t.exit_price, t.pnl) == (102.0, 103.5, 1.5)
    # equity: flat 10000; bar 1 cash 9898 + 1 * 102; bar 2 final cash 10001.5
    np.testing.assert_allclose(r.equity.to_numpy(), [10_000, 10_000, 10_001.5])


def test_costs_on_market_entry_and_end_exit() -> None:
    rows = [(100, 101, 99, 100), (102, 103, 101, 102), (103, 104, 102, 103.5)]
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)), fee=0.001, slippage_bps=10)
    # buy at 102 * (1 + 10 / 10_000) = 102.102, fee 0.102102 (taker);
    # "end" exit sells at 103.5 * (1 - 0.001) = 103.3965, fee 0.1033965
    entry, exit_ = 102 * (1 + 10 / 10_000), 103.5 * (1 - 10 / 10_000)
    fees = entry * 0.001 + exit_ * 0.001
    t = r.trades.iloc[0]
    assert t.entry_price == pytest.approx(entry, rel=1e-12)
    assert t.exit_price == pytest.approx(exit_, rel=1e-12)
    assert t.fees == pytest.approx(fees, rel=1e-12)
    assert t.pnl == pytest.approx(exit_ - entry - fees, rel=1e-12)
    assert r.metrics["fees"] == pytest.approx(fees, rel=1e-12)
    assert set(r.fills["liquidity"]) == {"taker"}


def test_fill_at_close_enters_on_the_signal_bar() -> None:
    rows = [(100, 101, 99, 100), (102, 103, 101, 102), (103, 104, 102, 103.5)]
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)), fill_at="close")
    # the signal on bar 0 fills at close[0] = 100 on bar 0 itself
    t = r.trades.iloc[0]
    assert (t.entry_bar, t.entry_price, t.exit_bar, t.exit_reason) == (0, 100.0, 2, "end")
    np.testing.assert_allclose(r.equity.to_numpy(), [10_000, 10_002, 10_003.5])


def test_fill_at_close_brackets_start_on_the_next_bar() -> None:
    # entry at close[0] = 100 with a 2 % stop (98); bar 0's own low (97) came before the
    # fill, so it cannot stop the trade; bar 1 reaches 97.5 -> stopped at 98 in bar 1
    rows = [(101, 101, 97, 100), (100, 100.2, 97.5, 99), FLAT]
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)), fill_at="close", stop_loss=0.02)
    t = r.trades.iloc[0]
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (0, 1, "stop_loss")
    assert t.exit_price == pytest.approx(98.0, rel=1e-12)


def test_signal_on_the_last_bar_is_dropped() -> None:
    rows = [FLAT, FLAT, FLAT]
    for fill_at in ("open", "close"):
        r, _ = run_both(rows, Signals(enter_long=flags(3, 2)), fill_at=fill_at)
        assert r.trades.empty
        assert r.orders.empty
        np.testing.assert_allclose(r.equity.to_numpy(), CASH)


def test_fill_at_close_exit_on_the_last_bar_is_a_signal_exit() -> None:
    rows = [FLAT, (100, 101, 99.5, 101), (101, 102, 100.5, 102)]
    sig = Signals(enter_long=flags(3, 0), exit_long=flags(3, 2))
    r, _ = run_both(rows, sig, fill_at="close")
    # bought at close[0] = 100, the exit signal on the last bar sells at close[2] = 102
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason, t.exit_price, t.pnl) == (2, "signal", 102.0, 2.0)


def test_reversal_long_to_short() -> None:
    rows = [FLAT, FLAT, FLAT, (101, 101.5, 100.5, 101), (100, 100.5, 99, 99)]
    sig = Signals(enter_long=flags(5, 0), enter_short=flags(5, 2))
    r, _ = run_both(rows, sig)
    # enter_short[2] closes the long at open[3] = 101 (signal) and sells short at 101;
    # the short is covered at close[4] = 99 at the end
    assert list(r.trades["side"]) == ["long", "short"]
    assert list(r.trades["entry_bar"]) == [1, 3]
    assert list(r.trades["exit_bar"]) == [3, 4]
    assert list(r.trades["exit_reason"]) == ["signal", "end"]
    assert list(r.trades["pnl"]) == [1.0, 2.0]


def test_entry_and_same_side_exit_on_one_bar_do_not_enter() -> None:
    rows = [FLAT] * 4
    sig = Signals(enter_long=flags(4, 0, 1), exit_long=flags(4, 1))
    r, _ = run_both(rows, sig)
    # long from open[1]; bar 1 has enter_long and exit_long: closed at open[2], no re-entry
    assert list(r.trades["entry_bar"]) == [1]
    assert list(r.trades["exit_bar"]) == [2]
    assert len(entry_orders(r)) == 1


def test_entry_ignored_while_same_side_position_open() -> None:
    rows = [FLAT] * 5
    r, _ = run_both(rows, Signals(enter_long=flags(5, 0, 1, 2)))
    # no pyramiding: one entry order, one trade, size 1
    assert len(r.trades) == 1
    assert r.trades["size"].iloc[0] == 1.0
    assert len(entry_orders(r)) == 1


# ------------------------------------------------------------------- brackets
def test_stop_loss_gap_fills_at_the_open() -> None:
    rows = [FLAT, FLAT, (95, 96, 94, 95.5), FLAT]
    r, _ = run_both(rows, Signals(enter_long=flags(4, 0)), stop_loss=0.02)
    # entry 100, stop 98; bar 2 opens at 95, below the stop -> filled at 95, not 98
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (2, "stop_loss", 95.0)


def test_take_profit_fills_at_the_level_as_maker() -> None:
    rows = [FLAT, FLAT, (101, 106, 100.5, 104), FLAT]
    r, _ = run_both(
        rows, Signals(enter_long=flags(4, 0)), take_profit=0.05, maker_fee=0.001, taker_fee=0.002
    )
    # entry 100 (taker fee 0.2), target 105 reached inside bar 2 -> sold at 105 (maker,
    # fee 0.105, no slippage)
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason) == (2, "take_profit")
    assert t.exit_price == pytest.approx(105.0, rel=1e-12)
    assert t.fees == pytest.approx(0.2 + 0.105, rel=1e-9)
    assert list(r.fills["liquidity"]) == ["taker", "maker"]


def test_take_profit_gap_fills_at_the_open() -> None:
    rows = [FLAT, FLAT, (107, 108, 106, 107), FLAT]
    r, _ = run_both(rows, Signals(enter_long=flags(4, 0)), take_profit=0.05)
    # target 105; bar 2 opens at 107 above it -> filled at the open, 107
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (2, "take_profit", 107.0)


@pytest.mark.parametrize(
    ("side", "bar2", "intrabar", "reason", "price"),
    [
        # open 100.5: the high (2.5 away) is nearer than the low (3.5) -> high first
        ("long", (100.5, 103, 97, 100), "path", "take_profit", 102.0),
        ("long", (100.5, 103, 97, 100), "worst", "stop_loss", 98.0),
        # open 99.5: the low is nearer -> low first
        ("long", (99.5, 103, 97, 100), "path", "stop_loss", 98.0),
        ("long", (99.5, 103, 97, 100), "worst", "stop_loss", 98.0),
        # equal distances: the high goes first
        ("long", (100, 103, 97, 100), "path", "take_profit", 102.0),
        # a short's stop is above (102), its target below (98)
        ("short", (100.5, 103, 97, 100), "path", "stop_loss", 102.0),
        ("short", (99.5, 103, 97, 100), "path", "take_profit", 98.0),
        ("short", (99.5, 103, 97, 100), "worst", "stop_loss", 102.0),
    ],
)
def test_path_order_decides_stop_vs_target(
    side: str, bar2: tuple[float, ...], intrabar: str, reason: str, price: float
) -> None:
    rows = [FLAT, FLAT, bar2, FLAT]
    key = "enter_long" if side == "long" else "enter_short"
    sig = Signals(**{key: flags(4, 0)})
    r, _ = run_both(rows, sig, stop_loss=0.02, take_profit=0.02, intrabar=intrabar)
    t = r.trades.iloc[0]
    assert (t.side, t.exit_bar, t.exit_reason) == (side, 2, reason)
    assert t.exit_price == pytest.approx(price, rel=1e-12)


@pytest.mark.parametrize(("intrabar", "price"), [("path", 107 * 0.95), ("worst", 104 * 0.95)])
def test_trailing_stop_ratchets_along_the_path(intrabar: str, price: float) -> None:
    rows = [
        FLAT,
        (100, 100, 99, 100),  # entry at 100, peak 100, trail 95
        (101, 104, 100, 103),  # low first (1 < 3): 101 -> 100 -> 104: peak 104, trail 98.8
        # "path": high first (4 < 6): 103 -> 107 lifts the trail to 101.65, then 107 -> 97
        # crosses 101.65; "worst" (low first): 103 -> 97 crosses the old 98.8 first
        (103, 107, 97, 99),
        FLAT,
    ]
    r, _ = run_both(rows, Signals(enter_long=flags(5, 0)), trailing_stop=0.05, intrabar=intrabar)
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason) == (3, "trailing_stop")
    assert t.exit_price == pytest.approx(price, rel=1e-12)


def test_the_first_level_crossed_wins() -> None:
    rows = [FLAT, FLAT, (99, 99.5, 97, 98), FLAT]
    r, _ = run_both(rows, Signals(enter_long=flags(4, 0)), stop_loss=0.02, trailing_stop=0.02)
    # entry 100 in bar 1 (a tie: high first) whose high 100.5 lifts the trail to
    # 100.5 * 0.98 = 98.49, above the stop 98; bar 2 falls 99.5 -> 97 through 98.49 first
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason) == (2, "trailing_stop")
    assert t.exit_price == pytest.approx(100.5 * 0.98, rel=1e-12)


def test_stop_loss_and_trailing_stop_tie_goes_to_stop_loss() -> None:
    rows = [FLAT, (100, 100, 99.5, 100), (99, 99.5, 97, 98), FLAT]
    r, _ = run_both(rows, Signals(enter_long=flags(4, 0)), stop_loss=0.02, trailing_stop=0.02)
    # the peak stays at the entry 100 (bar 1 never trades above it): stop 98 == trail 98
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason) == (2, "stop_loss")
    assert t.exit_price == pytest.approx(98.0, rel=1e-12)


def test_brackets_of_a_strategy_per_entry() -> None:
    rows = [FLAT, FLAT, FLAT, (99, 99.5, 96, 97), FLAT]
    sl = np.array([0.01, np.nan, np.nan, np.nan, np.nan])
    # the entry signalled on bar 0 carries a 1 % stop: 99 reached at bar 3's open -> 99
    r, _ = run_both(rows, Signals(enter_long=flags(5, 0), stop_loss=sl))
    t = r.trades.iloc[0]
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (3, "stop_loss", 99.0)


# ------------------------------------------------------------ limit and stop
def limit_signals(n: int, bar: int, side: str, kind: str, price: float) -> Signals:
    etype = np.array(["market"] * n, dtype=object)
    etype[bar] = kind
    eprice = np.full(n, np.nan)
    eprice[bar] = price
    key = "enter_long" if side == "long" else "enter_short"
    return Signals(**{key: flags(n, bar)}, entry_type=etype, entry_price=eprice)


def test_limit_entry_expires_after_one_bar() -> None:
    rows = [FLAT, (100, 101, 96, 100), (100, 100, 90, 95), FLAT]
    r, _ = run_both(rows, limit_signals(4, 0, "long", "limit", 95.0))
    # buy limit 95 lives in bar 1 only (low 96: not reached); bar 2's 90 comes too late
    assert r.trades.empty
    orders = entry_orders(r)
    assert list(orders["status"]) == ["expired"]
    assert list(orders["type"]) == ["limit"]


def test_limit_entry_fills_at_the_level_as_maker() -> None:
    rows = [FLAT, (100, 100.5, 98, 99.5), FLAT]
    r, _ = run_both(
        rows,
        limit_signals(3, 0, "long", "limit", 99.0),
        maker_fee=0.0002,
        taker_fee=0.001,
        slippage_bps=5,
    )
    # path 100 -> 100.5 -> 98 reaches 99: bought at 99 exactly (no slippage), maker fee
    t = r.trades.iloc[0]
    assert (t.entry_bar, t.entry_price) == (1, 99.0)
    assert r.fills["liquidity"].iloc[0] == "maker"
    assert r.fills["fee"].iloc[0] == pytest.approx(99 * 0.0002, rel=1e-12)


def test_limit_entry_fills_at_the_open_when_the_bar_opens_through_it() -> None:
    rows = [FLAT, (98, 99.5, 97.5, 99), FLAT]
    r, _ = run_both(rows, limit_signals(3, 0, "long", "limit", 99.0))
    # bar 1 opens at 98, below the buy limit 99 -> bought at the open, 98
    assert r.trades["entry_price"].iloc[0] == 98.0


def test_sell_limit_entry() -> None:
    rows = [FLAT, (100, 101.5, 99.8, 100), FLAT]
    r, _ = run_both(rows, limit_signals(3, 0, "short", "limit", 101.0))
    # low first (0.2 < 1.5): 100 -> 99.8 -> 101.5 crosses 101 -> sold short at 101
    t = r.trades.iloc[0]
    assert (t.side, t.entry_bar, t.entry_price) == ("short", 1, 101.0)


def test_stop_entry_is_a_slipped_taker_fill() -> None:
    rows = [FLAT, (100, 102, 99.8, 101.5), FLAT]
    r, _ = run_both(rows, limit_signals(3, 0, "long", "stop", 101.0), slippage_bps=10)
    # 100 -> 99.8 -> 102 crosses the buy stop 101: filled at 101 * (1 + 0.001)
    t = r.trades.iloc[0]
    assert t.entry_price == pytest.approx(101 * 1.001, rel=1e-12)
    assert r.fills["liquidity"].iloc[0] == "taker"


def test_stop_entry_gap_fills_at_the_open() -> None:
    rows = [FLAT, (103, 104, 102.5, 103), FLAT]
    r, _ = run_both(rows, limit_signals(3, 0, "long", "stop", 101.0))
    assert r.trades["entry_price"].iloc[0] == 103.0


def test_limit_entry_brackets_live_from_the_fill_point() -> None:
    rows = [FLAT, (100, 100.2, 97, 97.5), FLAT]
    r, _ = run_both(rows, limit_signals(3, 0, "long", "limit", 99.0), stop_loss=0.01)
    # 100 -> 100.2 -> 97: bought at 99 on the way down, stop 99 * 0.99 = 98.01 crossed
    # later on the same segment -> stopped in the entry bar
    t = r.trades.iloc[0]
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (1, 1, "stop_loss")
    assert t.exit_price == pytest.approx(99 * 0.99, rel=1e-12)


@pytest.mark.parametrize(("bar1_low", "filled"), [(99.5, False), (98.8, True)])
def test_fill_at_close_limit_entry_lives_in_the_next_bar_only(
    bar1_low: float, filled: bool
) -> None:
    rows = [FLAT, (100, 100.2, bar1_low, 100), (99, 99.5, 97, 98), FLAT]
    r, _ = run_both(rows, limit_signals(4, 0, "long", "limit", 99.0), fill_at="close")
    # the limit signalled at bar 0's close rests during bar 1 only: it fills at 99 if bar
    # 1 reaches it, and bar 2 (which opens below 99) comes too late otherwise
    assert list(entry_orders(r)["status"]) == ["filled" if filled else "expired"]
    if filled:
        t = r.trades.iloc[0]
        assert (t.entry_bar, t.entry_price) == (1, 99.0)
    else:
        assert r.trades.empty


# -------------------------------------------------------------- sizes, money
def test_lot_rounding_rejects_a_too_small_size() -> None:
    rows = [FLAT] * 3
    sig = Signals(enter_long=flags(3, 0))
    r, _ = run_both(rows, sig, size=50, size_mode="notional", lot_size=1)
    # 50 / 100 = 0.5 units, rounded down to lots of 1 -> 0 -> rejected
    assert r.trades.empty
    orders = entry_orders(r)
    assert list(orders["status"]) == ["rejected"]
    assert list(orders["reason"]) == ["size below lot"]


def test_lot_rounding_rounds_down() -> None:
    rows = [FLAT] * 3
    sig = Signals(enter_long=flags(3, 0))
    r, _ = run_both(rows, sig, size=250, size_mode="notional", lot_size=1)
    assert r.trades["size"].iloc[0] == 2.0  # 2.5 units -> 2


def test_equity_size_mode() -> None:
    rows = [FLAT] * 3
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)), size=0.5, size_mode="equity")
    assert r.trades["size"].iloc[0] == pytest.approx(0.5 * CASH / 100, rel=1e-12)


@pytest.mark.parametrize("entry", ["market", "limit"])
def test_a_run_whose_equity_reaches_zero_stops_trading(entry: str) -> None:
    # a short of the whole equity (1 unit at 100 with cash 100) is closed at 300: cash
    # 100 + 100 - 300 = -100 at bar 2's close, so trading stops there: the long signal of
    # bar 3 sends no order (it used to be sized from -100 of equity and rejected)
    rows = [FLAT, FLAT, (300.0, 300.5, 299.5, 300.0), FLAT, FLAT, FLAT]
    n = len(rows)
    sig = Signals(enter_short=flags(n, 0), exit_short=flags(n, 1), enter_long=flags(n, 3))
    if entry == "limit":
        sig.entry_type = np.array(["market"] * 3 + ["limit"] * (n - 3))
        sig.entry_price = np.full(n, 100.2)
    r, _ = run_both(rows, sig, cash=100.0, size=1.0, size_mode="equity")
    assert len(r.trades) == 1
    assert r.equity.iloc[-1] == pytest.approx(-100.0)
    assert list(entry_orders(r)["status"]) == ["filled"]
    assert r.stopped_at == r.equity.index[2]
    assert r.warnings == ["equity reached zero at 2024-01-01 00:02 UTC; trading stopped"]
    assert r.summary()["stopped_at"] == "2024-01-01T00:02:00+00:00"


def test_a_position_open_when_the_equity_reaches_zero_closes_at_the_next_open() -> None:
    # long 1 unit at 100 with cash 50 (no margin limit): cash -50; bar 2 closes at 40,
    # equity -50 + 40 = -10 <= 0: the position is closed at bar 3's open (45, taker fee
    # 0.001 * 45) with exit reason zero_equity, and bar 4's entry signal is ignored
    rows = [FLAT, FLAT, (60.0, 60.5, 39.5, 40.0), (45.0, 46.0, 44.0, 45.0), FLAT, FLAT]
    n = len(rows)
    sig = Signals(enter_long=flags(n, 0, 4), exit_long=flags(n, 5))
    r, _ = run_both(rows, sig, cash=50.0, fee=0.001)
    t = r.trades.iloc[0]
    assert (len(r.trades), t.exit_reason, t.exit_bar, t.exit_price) == (1, "zero_equity", 3, 45.0)
    assert t.pnl == pytest.approx(45.0 - 100.0 - 0.001 * (100.0 + 45.0), rel=1e-12)
    assert r.stopped_at == r.equity.index[2]
    assert list(r.equity.iloc[3:]) == [r.equity.iloc[3]] * 3  # nothing moves any more
    closing = r.orders[r.orders["role"] == "zero_equity"]
    assert list(closing["created_time"]) == [r.equity.index[2]]


def test_a_run_that_never_reaches_zero_equity_says_nothing() -> None:
    r, _ = run_both([FLAT] * 3, Signals(enter_long=flags(3, 0)))
    assert (r.stopped_at, r.warnings, r.summary()["stopped_at"]) == (None, [], None)


@pytest.mark.parametrize(
    ("kw", "filled"),
    [
        ({"size": 200}, True),  # no leverage given: no margin limit, cash goes negative
        ({"size": 200, "leverage": 1}, False),  # notional 20000 > equity 10000 * leverage 1
        ({"size": 200, "leverage": 2}, True),  # 20000 <= 20000, no fee
        ({"size": 200, "leverage": 2, "fee": 0.001}, False),  # 10000 + fee 20 > 10000
        ({"size": 200, "leverage": 2.5, "fee": 0.001}, True),  # 8000 + 20 <= 10000
    ],
)
def test_insufficient_margin_rejects(kw: dict[str, float], filled: bool) -> None:
    rows = [FLAT] * 3
    r, _ = run_both(rows, Signals(enter_long=flags(3, 0)), **kw)
    orders = entry_orders(r)
    assert len(r.trades) == int(filled)
    assert list(orders["status"]) == ["filled" if filled else "rejected"]
    if not filled:
        assert list(orders["reason"]) == ["insufficient margin"]


@pytest.mark.parametrize(("side", "sign"), [("long", -1.0), ("short", 1.0)])
def test_funding_sign(side: str, sign: float) -> None:
    rows = [FLAT, FLAT, (101, 101.5, 100.5, 101), (102, 102.5, 101.5, 102), FLAT]
    key, exit_key = ("enter_long", "exit_long") if side == "long" else ("enter_short", "exit_short")
    sig = Signals(**{key: flags(5, 0), exit_key: flags(5, 2)})
    rates = [0.0, 0.001, 0.001, 0.001, 0.001]
    r, _ = run_both(rows, sig, funding_rates=rates)
    # in the market from open[1] to open[3]: bar 1's funding comes before the entry, bars
    # 2 and 3 are charged on the position held at their open: 1 * 101 * 0.001 + 1 * 102 *
    # 0.001 = 0.203; a long pays it, a short receives it; bar 4 is flat
    t = r.trades.iloc[0]
    assert t.funding == pytest.approx(sign * 0.203, rel=1e-12)
    assert t.pnl == pytest.approx(sign * 0.203 + (-2.0 if side == "short" else 2.0), rel=1e-12)
    assert r.metrics["funding"] == pytest.approx(sign * 0.203, rel=1e-12)


def test_funding_in_the_last_bar() -> None:
    bars = make_bars([FLAT, FLAT, (101, 101.5, 100.5, 101)])
    sig = Signals(enter_long=flags(3, 0))
    last = pd.Timestamp(int(bars.time[2]), tz="UTC")
    funding = pd.Series(
        [0.001, 0.002],
        # inside the last bar (open <= T < open + 1 minute) / at its end: not in the data
        index=[last + pd.Timedelta(59_999, "ms"), last + pd.Timedelta(1, "min")],
    )
    r = Backtest(bars, fixed_strategy(sig), funding=funding, size_mode="fixed", size=1.0).run()
    ref = reference_for(bars, sig, ref_config(), funding=[0.0, 0.0, 0.001])
    assert_parity(r, ref)
    # long 1 from open[1]; only the first rate is charged: 1 * open[2] * 0.001
    assert r.trades["funding"].iloc[0] == pytest.approx(-0.101, rel=1e-12)


# ----------------------------------------------------------------- property
@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(2, 40))
    price = 100.0
    rows = []
    for _ in range(n):
        gap = draw(st.sampled_from([0.0, 0.0, 0.0, 0.004, -0.004, 0.02, -0.02]))
        o = round(price * (1 + gap), 2)
        c = round(o * (1 + draw(st.floats(-0.02, 0.02))), 2)
        h = round(max(o, c) * (1 + draw(st.floats(0, 0.02))), 2)
        lo = round(min(o, c) * (1 - draw(st.floats(0, 0.02))), 2)
        rows.append((o, h, lo, c))
        price = c
    sig = {
        k: np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        & np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        for k in ("enter_long", "exit_long", "enter_short", "exit_short")
    }
    if draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(["market", "limit", "stop"]), min_size=n, max_size=n))
        offsets = draw(st.lists(st.floats(0.0005, 0.02), min_size=n, max_size=n))
        closes = np.array([r[3] for r in rows])
        # a buy limit below / a buy stop above the close; the short side mirrors it
        sign = np.where(sig["enter_long"], 1.0, -1.0) * np.where(
            np.array(kinds) == "limit", -1.0, 1.0
        )
        sig["entry_type"] = np.array(kinds, dtype=object)
        sig["entry_price"] = np.round(closes * (1 + sign * np.array(offsets)), 2)
    # round distances put tick-rounded levels on exact half-tick ties now and then
    dist = st.one_of(st.none(), st.floats(0.003, 0.05), st.sampled_from([0.0025, 0.005, 0.01]))
    kw: dict[str, Any] = {
        "stop_loss": draw(dist),
        "take_profit": draw(dist),
        "trailing_stop": draw(dist),
        "intrabar": draw(st.sampled_from(["path", "worst"])),
        "fill_at": draw(st.sampled_from(["open", "close"])),
        "maker_fee": draw(st.sampled_from([0.0, 0.0002, -0.0001])),
        "taker_fee": draw(st.sampled_from([0.0, 0.0005, 0.001])),
    }
    slip = draw(st.sampled_from(["none", "bps", "ticks"]))
    if slip == "bps":
        kw["slippage_bps"] = draw(st.floats(0.5, 5))
    if draw(st.booleans()) or slip == "ticks":
        kw["tick_size"] = draw(st.sampled_from([0.01, 0.05]))
        if slip == "ticks":
            kw["slippage_ticks"] = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["fixed", "notional", "equity"]))
    kw["size_mode"] = mode
    kw["size"] = {"fixed": 10.0, "notional": 5_000.0, "equity": 0.9}[mode]
    if draw(st.booleans()):
        kw["lot_size"] = draw(st.sampled_from([0.001, 1.0, 100.0]))
    kw["leverage"] = draw(st.sampled_from([None, 1.0, 3.0]))
    if draw(st.booleans()):
        kw["funding_rates"] = draw(
            st.lists(st.sampled_from([0.0, 0.0, 0.0001, -0.0003, 0.001]), min_size=n, max_size=n)
        )
    return {"rows": rows, "signals": Signals(**sig), "kw": kw}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_kernel_matches_reference_on_random_bars(case: dict[str, Any]) -> None:
    # run_both asserts parity, final equity == cash + sum(pnl) and the fills-derived curve
    r, ref = run_both(case["rows"], case["signals"], **case["kw"])
    assert len(r.trades) == len(ref.trades)
    assert (r.trades["exit_bar"] >= r.trades["entry_bar"]).all()
    assert r.fills["fee"].sum() == pytest.approx(r.trades["fees"].sum(), rel=1e-9, abs=1e-9)
