"""`Backtest(engine="event", risk_profile=...)`: the portfolio limits are fed once per
bar; a drawdown past the profile's limit halts the node, the kill switch cancels and
flattens, and later entries are denied with the reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sapphire import Backtest, Bars, Signals, Strategy
from sapphire.domain import RiskEvent, TradingState, TradingStateChanged
from sapphire.engine import EventStrategy
from sapphire.risk import CONSERVATIVE

MIN = 60_000_000_000


class EnterTwice(Strategy):
    """Long entries on bars 0 and 5 (with a take-profit bracket), never an exit signal."""

    def signals(self, bars: Bars) -> Signals:
        enter = np.zeros(len(bars), dtype=bool)
        enter[[0, 5]] = True
        return Signals(enter_long=enter, take_profit=0.5)


def _bars() -> Bars:
    o = [100.0, 100.0, 100.0, 60.0, 61.0, 62.0, 63.0, 64.0]
    h = [100.0, 101.0, 100.0, 61.0, 62.0, 63.0, 64.0, 65.0]
    lo = [100.0, 99.0, 60.0, 59.0, 60.0, 61.0, 62.0, 63.0]
    c = [100.0, 100.0, 60.0, 60.0, 61.0, 62.0, 63.0, 64.0]
    n = len(o)
    return Bars(
        time=np.arange(n, dtype=np.int64) * MIN, open=np.array(o), high=np.array(h),
        low=np.array(lo), close=np.array(c), volume=np.ones(n), timeframe_ns=MIN,
    )  # fmt: skip


def test_a_drawdown_past_the_limit_halts_flattens_and_denies_later_entries() -> None:
    bt = Backtest(
        _bars(), EnterTwice, size=90, size_mode="fixed", engine="event", risk_profile="conservative"
    )
    r = bt.run()
    run = bt.event_run
    # 90 long at 100; the close at 60 is a 36 % drawdown (limit 25 %): halted at bar 2's
    # close, the take-profit canceled, the position closed at bar 3's open
    (trade,) = r.trades.itertuples()
    assert (trade.entry_bar, trade.exit_bar, trade.exit_price) == (1, 3, 60.0)
    assert trade.exit_reason == "kill_switch" and trade.size == 90
    iid = next(iter(run.node.venue.instruments))
    assert run.node.portfolio.net_quantity(iid) == 0
    assert run.node.trading_state is TradingState.HALTED
    kinds = {e.kind for e in run.monitor.events if isinstance(e, RiskEvent)}
    assert {"drawdown", "strategy_drawdown", "daily_loss", "kill_switch"} <= kinds
    drawdown = next(e for e in run.monitor.events if getattr(e, "kind", "") == "drawdown")
    assert drawdown.ts_ns == 3 * MIN  # the close of bar 2
    changes = [e for e in run.monitor.events if isinstance(e, TradingStateChanged)]
    assert any(e.state is TradingState.HALTED and e.strategy_id is None for e in changes)
    orders = r.orders
    tp = orders[orders["role"] == "take_profit"]
    assert len(tp) == 0 or (tp["status"] != "filled").all()
    # the second entry (signal on bar 5) is denied, with the reason
    denied = orders[orders["reason"] == "denied by risk"]
    assert len(denied) == 1 and denied["created_time"].iloc[0] == r.equity.index[5]
    ((bar, _cid, reason),) = run.refusals
    assert bar == 5 and reason.startswith("trading state is HALTED")
    assert r.equity.iloc[-1] == pytest.approx(10_000 - 90 * 40)
    assert r.config["risk_profile"] == "conservative"


def test_without_a_breach_the_profile_changes_nothing() -> None:
    calm = _bars()
    calm.low[2], calm.close[2] = 95.0, 95.0  # a 4.5 % dip: within every limit
    for k in range(3, 8):
        calm.open[k] = calm.low[k] = calm.high[k] = calm.close[k] = 95.0
    plain = Backtest(calm, EnterTwice, size=90, size_mode="fixed", engine="event").run()
    bt = Backtest(
        calm, EnterTwice, size=90, size_mode="fixed", engine="event", risk_profile=CONSERVATIVE
    )
    guarded = bt.run()
    assert bt.event_run.node.trading_state is TradingState.ACTIVE
    assert np.array_equal(plain.equity.to_numpy(), guarded.equity.to_numpy())
    assert len(plain.trades) == len(guarded.trades) == 1


def test_the_risk_profile_is_refused_by_the_kernel_and_checked() -> None:
    with pytest.raises(ValueError, match="risk_profile needs engine='event'"):
        Backtest(_bars(), EnterTwice, risk_profile="conservative")
    with pytest.raises(ValueError, match="unknown risk profile 'careful'"):
        Backtest(_bars(), EnterTwice, engine="event", risk_profile="careful")


def _calm(level: float) -> Bars:
    calm = _bars()
    for k in range(len(calm.close)):
        calm.open[k] = calm.low[k] = calm.high[k] = calm.close[k] = level
    return calm


def test_equity_sized_entries_are_checked_at_their_estimated_size() -> None:
    # a price of 100,000 with 10,000 cash: the adapter's placeholder quantity 1 would
    # be 10x the cash; the check sees 0.95 * equity / last close instead
    bt = Backtest(
        _calm(100_000.0), EnterTwice, size=0.95, size_mode="equity", engine="event",
        risk_profile="conservative",
    )  # fmt: skip
    r = bt.run()
    assert bt.event_run.refusals == ()
    (trade,) = r.trades.itertuples()  # the second entry signal comes while long
    assert trade.size == pytest.approx(0.95 * 10_000 / 100_000)
    plain = Backtest(_calm(100_000.0), EnterTwice, size=0.95, size_mode="equity").run()
    assert np.array_equal(plain.equity.to_numpy(), r.equity.to_numpy())  # parity kept


def test_an_oversized_equity_entry_is_denied_naming_its_estimated_notional() -> None:
    bt = Backtest(
        _calm(100.0), EnterTwice, size=5, size_mode="equity", engine="event",
        risk_profile="conservative",
    )  # fmt: skip
    r = bt.run()
    assert len(r.trades) == 0
    (bar, _cid, reason), *_ = bt.event_run.refusals
    assert bar == 0
    # 5 * 10,000 / 100 = 500 at the last close 100: notional 50,000 at leverage 1
    assert "notional 50000" in reason.replace(",", "")
    assert "quantity 500" in reason and "last price 100" in reason


def test_the_balance_check_uses_the_venue_leverage(btc_df) -> None:  # type: ignore[no-untyped-def]
    # 1 BTC (~47,000 notional) on 10,000 cash: without leverage the profile's balance
    # check denies every entry; with leverage 5 the same entries pass
    df = btc_df.iloc[:3000].reset_index(drop=True)
    kw = {
        "engine": "event", "risk_profile": "conservative", "size": 1.0, "size_mode": "fixed",
        "cash": 10_000.0,
    }  # fmt: skip
    none = Backtest(df, "sma_cross", **kw).run()
    levered = Backtest(df, "sma_cross", leverage=5, **kw).run()
    assert len(none.trades) == 0
    assert len(levered.trades) > 0


class FlipEveryBar(EventStrategy):
    """Buy when flat, sell when long: one market order a bar, fees and all."""

    def __init__(self, qty: float = 1.0) -> None:
        super().__init__()
        self.qty = qty

    def on_bar(self, bar: Any) -> None:
        side = "sell" if self.position(bar.instrument_id) > 0 else "buy"
        self.submit_order(self.market(bar.instrument_id, side, self.qty))


def test_an_event_strategy_is_stopped_when_the_equity_reaches_zero() -> None:
    # 1 unit at a flat 100 with 100 cash and a 9 % fee: every fill costs 9, so the
    # equity falls bar by bar until a close finds it at or below zero
    n = 30
    flat = np.full(n, 100.0)
    bars = Bars(np.arange(n, dtype=np.int64) * MIN, flat, flat, flat, flat, flat, MIN)
    bt = Backtest(bars, FlipEveryBar, cash=100.0, leverage=0, fee=0.09)
    r = bt.run()
    assert r.stopped_at is not None
    stop = int(np.flatnonzero(r.equity.index == r.stopped_at)[0])
    assert 5 < stop < n - 5
    assert r.equity.iloc[stop] <= 0 and (r.equity.iloc[:stop] > 0).all()
    assert r.warnings == [
        f"equity reached zero at {r.stopped_at:%Y-%m-%d %H:%M} UTC; trading stopped"
    ]
    # the strategy's later orders are denied, with the reason; nothing fills after the
    # close of the open position at the next open
    denied = [reason for bar, _cid, reason in bt.event_run.refusals if bar > stop]
    assert len(denied) == n - 1 - stop
    assert set(denied) == {"trading stopped: the equity reached zero"}
    assert (r.fills["bar"] <= stop + 1).all()
    assert r.equity.iloc[stop + 1 :].nunique() == 1
