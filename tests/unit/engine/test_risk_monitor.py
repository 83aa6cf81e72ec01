"""`RiskMonitor`: a strategy past its own drawdown limit is halted and flattened while
the others trade on; its later orders are denied with the reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sapphire.domain import (
    Bar,
    ContractType,
    Instrument,
    InstrumentId,
    OrderDenied,
    RiskEvent,
    TradingState,
    TradingStateChanged,
)
from sapphire.engine import EventStrategy, RiskMonitor, TradingNode
from sapphire.risk import PortfolioLimits, RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
MIN = 60_000_000_000
INSTRUMENT = Instrument(
    BTC, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"),
)  # fmt: skip


class BuyOn(EventStrategy):
    """Buys `qty` at market on the given bar numbers."""

    def __init__(self, name: str, bars: set[int], qty: str) -> None:
        super().__init__(name)
        self.on, self.qty, self.seen, self.denied = bars, Decimal(qty), 0, []

    def on_bar(self, bar: Bar) -> None:
        if self.seen in self.on:
            self.submit_order(self.market(BTC, "BUY", self.qty))
        self.seen += 1

    def on_order_update(self, order: object, event: object) -> None:
        if isinstance(event, OrderDenied):
            self.denied.append(event.reason)


def _bar(i: int, o: float, c: float) -> Bar:
    return Bar(
        instrument_id=BTC, ts_ns=i * MIN, open=o, high=max(o, c), low=min(o, c), close=c,
        volume=1.0,
    )  # fmt: skip


def test_a_strategy_past_its_drawdown_is_halted_and_flattened_alone() -> None:
    venue = SimulatedVenue([INSTRUMENT], cash=10_000)
    node = TradingNode(venue, run_id="m", risk=RiskEngine(RiskConfig()))
    limits = PortfolioLimits(strategy_max_drawdown=0.1)
    monitor = RiskMonitor(limits, strategy_capital={"a": 5_000, "b": 5_000})
    a, b = BuyOn("a", {0, 3}, "40"), BuyOn("b", {3}, "1")
    node.add_strategy(monitor, bars=[BTC])
    node.add_strategy(a, bars=[BTC])
    node.add_strategy(b, bars=[BTC])
    node.start()
    node.process_bar(_bar(0, 100.0, 100.0), MIN)  # a buys 40
    node.process_bar(_bar(1, 100.0, 100.0), MIN)  # filled at 100
    # 40 * (100 - 85) = 600 of a's 5,000 (fee 2): a 12 % drawdown, past 10 %
    node.process_bar(_bar(2, 100.0, 85.0), MIN)
    assert node.strategy_states["a"] is TradingState.HALTED
    assert node.trading_state is TradingState.ACTIVE and limits.state_for(b.strategy_id) is (
        TradingState.ACTIVE
    )
    (event,) = [e for e in monitor.events if isinstance(e, RiskEvent)]
    assert event.kind == "strategy_drawdown" and event.strategy_id == "a"
    assert any(
        isinstance(e, TradingStateChanged) and e.state is TradingState.HALTED
        for e in monitor.events
    )
    node.process_bar(_bar(3, 86.0, 86.0), MIN)  # the close fills at 86; b buys, a denied
    assert node.portfolio.net_quantity(BTC) == 0
    closes = [o for o in node.orders.values() if node.tags.get(o.client_order_id) == "kill_switch"]
    assert len(closes) == 1 and closes[0].avg_px == Decimal("86") and closes[0].reduce_only
    assert len(a.denied) == 1 and a.denied[0].startswith("trading state is HALTED")
    node.process_bar(_bar(4, 87.0, 87.0), MIN)
    assert node.portfolio.net_quantity(BTC) == 1 and b.denied == []


def test_the_monitor_needs_portfolio_limits() -> None:
    with pytest.raises(ValueError, match="RiskMonitor needs PortfolioLimits"):
        RiskMonitor(object())  # type: ignore[arg-type]


def test_a_daily_loss_halt_flattens_and_ends_at_the_next_utc_day() -> None:
    """The daily loss limit halts the node until the next UTC day (its documented
    rule): the kill switch cancels and flattens, but does not latch; a drawdown halt
    stays until the limits are reset."""
    day = 24 * 60 * MIN
    venue = SimulatedVenue([INSTRUMENT], cash=10_000)
    node = TradingNode(venue, run_id="d", risk=RiskEngine(RiskConfig()))
    limits = PortfolioLimits(daily_loss_limit=0.05, max_drawdown=0.2)
    monitor = RiskMonitor(limits)
    trader = BuyOn("t", {1, 3, 4}, "40")
    node.add_strategy(monitor, bars=[BTC])
    node.add_strategy(trader, bars=[BTC])
    node.start()

    def bar(i: int, ts: int, o: float, c: float) -> None:
        node.process_bar(
            Bar(instrument_id=BTC, ts_ns=ts, open=o, high=max(o, c), low=min(o, c), close=c,
                volume=1.0),
            MIN,
        )  # fmt: skip

    bar(0, 0, 100.0, 100.0)
    bar(1, MIN, 100.0, 100.0)  # buys 40
    bar(2, 2 * MIN, 100.0, 85.0)  # filled at 100, closes at 85: 6 % down on the day
    assert node.trading_state is TradingState.HALTED
    kinds = [e.kind for e in monitor.events if isinstance(e, RiskEvent)]
    assert kinds == ["daily_loss", "kill_switch"]
    assert not monitor.kill_switch.tripped  # nothing latched
    bar(3, 3 * MIN, 85.0, 85.0)  # the close fills; the buy is denied
    assert node.portfolio.net_quantity(BTC) == 0
    assert trader.denied and trader.denied[0].startswith("trading state is HALTED")
    bar(4, day + MIN, 85.0, 85.0)  # the next UTC day: the breach clears, the buy goes
    assert node.trading_state is TradingState.ACTIVE
    bar(5, day + 2 * MIN, 85.0, 86.0)
    assert node.portfolio.net_quantity(BTC) == 40
    # a drawdown halt is latched: the next day changes nothing
    bar(6, day + 3 * MIN, 86.0, 40.0)  # a 24 % drawdown (and a daily loss)
    assert node.trading_state is TradingState.HALTED and monitor.kill_switch.tripped
    bar(7, 2 * day + MIN, 40.0, 40.0)
    assert node.trading_state is TradingState.HALTED
