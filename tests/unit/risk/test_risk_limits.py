"""Portfolio limits (drawdown, daily loss, VaR) and the kill switch."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCancelRequested,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    RiskEvent,
    StrategyId,
    TradeId,
    TradingState,
    TradingStateChanged,
    VenueOrderId,
)
from sapphire.risk import CONSERVATIVE, CloseIntent, KillSwitch, PortfolioLimits

DAY = 86_400 * 1_000_000_000
HOUR = 3_600 * 1_000_000_000
T0 = 20_000 * DAY  # 2024-10-04 00:00 UTC
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


def risk_events(events: list) -> list[RiskEvent]:
    return [e for e in events if isinstance(e, RiskEvent)]


def state_changes(events: list) -> list[TradingStateChanged]:
    return [e for e in events if isinstance(e, TradingStateChanged)]


def test_max_drawdown_halts_until_reset() -> None:
    limits = PortfolioLimits(max_drawdown=Decimal("0.25"))
    assert limits.evaluate(T0, 100_000) == []
    assert limits.evaluate(T0 + 1, 120_000) == []  # new peak
    assert limits.evaluate(T0 + 2, 91_000) == []  # 24.17 %
    events = limits.evaluate(T0 + 3, Decimal(90_000))  # 25 %: reached
    (risk,) = risk_events(events)
    assert risk.kind == "drawdown" and risk.ts_ns == T0 + 3 and risk.strategy_id is None
    assert risk.reason == (
        "portfolio drawdown 25.00% (equity 90,000.00 from peak 120,000.00) reached "
        "max_drawdown 25.00%"
    )
    assert risk.detail["action"] == "HALTED"
    (change,) = state_changes(events)
    assert (change.state, change.previous, change.reason) == (HALTED, ACTIVE, risk.reason)
    assert events.index(risk) < events.index(change)
    assert limits.state is HALTED
    # no repeat while the breach stands, and a recovery does not lift a drawdown halt
    assert limits.evaluate(T0 + 4, 80_000) == []
    assert limits.evaluate(T0 + 5, 125_000) == []
    assert limits.state is HALTED
    (reset,) = limits.reset(T0 + 6)
    assert (reset.state, reset.previous, reset.reason) == (
        ACTIVE,
        HALTED,
        "limits reset by the operator",
    )
    # the peak restarts from the current equity (125,000): 100,000 is a 20 % drawdown
    assert limits.evaluate(T0 + 7, 100_000) == []
    assert state_changes(limits.evaluate(T0 + 8, 93_750))[0].state is HALTED


def test_drawdown_action_can_be_reducing() -> None:
    limits = PortfolioLimits(max_drawdown=0.1, drawdown_action=TradingState.REDUCING)
    limits.evaluate(T0, 100)
    (change,) = state_changes(limits.evaluate(T0 + 1, 89))
    assert change.state is REDUCING
    with pytest.raises(
        ValueError, match=r"drawdown_action must be REDUCING or HALTED, got 'ACTIVE'"
    ):
        PortfolioLimits(max_drawdown=0.1, drawdown_action="ACTIVE")


def test_daily_loss_limit_resets_on_the_next_utc_day() -> None:
    limits = PortfolioLimits(daily_loss_limit=Decimal("0.05"))
    limits.evaluate(T0 + HOUR, 100_000)
    assert limits.evaluate(T0 + 2 * HOUR, 96_000) == []  # -4 %
    limits.evaluate(T0 + 3 * HOUR, 110_000)
    events = limits.evaluate(T0 + 4 * HOUR, 95_000)  # -5 % from the day's start 100,000
    (risk,) = risk_events(events)
    assert risk.kind == "daily_loss"
    assert risk.reason == (
        "daily loss 5.00% (equity 95,000.00 from 100,000.00 at the start of 2024-10-04 UTC) "
        "reached daily_loss_limit 5.00%"
    )
    assert limits.state is HALTED
    assert limits.evaluate(T0 + 23 * HOUR, 94_000) == []
    # next UTC day: the limit resets; the day starts from yesterday's last equity (94,000)
    (change,) = limits.evaluate(T0 + DAY + HOUR, 93_000)
    assert isinstance(change, TradingStateChanged)
    assert (change.state, change.previous) == (ACTIVE, HALTED)
    assert change.reason == "new UTC day 2024-10-05: daily loss limit reset"
    # 94,000 * 0.95 = 89,300
    assert limits.evaluate(T0 + DAY + 2 * HOUR, 89_301) == []
    assert risk_events(limits.evaluate(T0 + DAY + 3 * HOUR, 89_300))[0].kind == "daily_loss"


def _daily(limits: PortfolioLimits, closes: list[float], start_day: int = 0) -> list:
    """One snapshot per UTC day at noon."""
    events: list = []
    for i, equity in enumerate(closes):
        events.extend(limits.evaluate(T0 + (start_day + i) * DAY + 12 * HOUR, equity))
    return events


def test_var_limit_moves_to_reducing_and_back() -> None:
    limits = PortfolioLimits(
        var_limit=0.03, var_confidence=0.95, var_window=10, var_min_observations=10
    )
    # 11 daily closes = 10 returns; VaR is evaluated when the 12th day starts
    assert _daily(limits, [100_000.0] * 12) == []
    assert limits.last_var == pytest.approx(0.0)
    # alternate +5 % / -5 % days: VaR ~ 5 % > 3 %
    equity = 100_000.0
    wild = []
    for i in range(10):
        equity *= 1.05 if i % 2 else 0.95
        wild.append(equity)
    events = _daily(limits, wild, start_day=12)
    (risk,) = risk_events(events)
    assert risk.kind == "var" and risk.detail["action"] == "REDUCING"
    assert risk.reason.startswith("1-day historical VaR 95% of 5.00% (from 10 daily returns)")
    assert risk.reason.endswith("exceeds daily VaR limit 3.00%")
    (change,) = state_changes(events)
    assert change.state is REDUCING
    assert limits.state is REDUCING
    # ten calm days push the wild returns out of the window
    events = _daily(limits, [equity] * 11, start_day=22)
    (back,) = state_changes(events)
    assert (back.state, back.previous) == (ACTIVE, REDUCING)
    m = re.fullmatch(r"1-day VaR (\d\.\d\d)% back within the limit 3\.00%", back.reason)
    assert m is not None and float(m.group(1)) <= 3.0, back.reason
    assert limits.last_var is not None and limits.last_var <= 0.03


def test_var_needs_enough_observations() -> None:
    limits = PortfolioLimits(var_limit=0.01, var_window=30, var_min_observations=20)
    closes = [100.0 * (1.1 if i % 2 else 0.9) for i in range(20)]  # 19 returns by day 21
    assert _daily(limits, closes) == []
    assert limits.last_var is None
    assert state_changes(_daily(limits, [100.0, 100.0], start_day=20))[0].state is REDUCING


def test_most_severe_breach_wins_and_reset_keeps_the_var_breach() -> None:
    limits = PortfolioLimits(max_drawdown=0.2, var_limit=0.01, var_window=4, var_min_observations=4)
    _daily(limits, [100.0, 103.0, 100.0, 103.0, 100.0, 100.0])  # VaR ~3 % > 1 %
    assert limits.state is REDUCING
    (change,) = state_changes(limits.evaluate(T0 + 5 * DAY + 13 * HOUR, 80.0))  # -23 %
    assert (change.state, change.previous) == (HALTED, REDUCING)
    assert [b.kind for b in limits.breaches] == ["drawdown", "var"]
    (change,) = limits.reset(T0 + 5 * DAY + 14 * HOUR)
    assert (change.state, change.previous) == (REDUCING, HALTED)
    assert change.reason.startswith("1-day historical VaR")


def test_strategy_drawdown_halts_only_that_strategy() -> None:
    a, b = StrategyId("a"), StrategyId("b")
    limits = PortfolioLimits(strategy_max_drawdown=Decimal("0.15"))
    limits.evaluate(T0, 200_000, {a: 100_000, b: 100_000})
    assert limits.evaluate(T0 + 1, 190_000, {a: 86_000, b: 104_000}) == []
    events = limits.evaluate(T0 + 2, 189_000, {a: 85_000, b: 104_000})
    (risk,) = risk_events(events)
    assert risk.kind == "strategy_drawdown" and risk.strategy_id == a
    assert risk.reason == (
        "strategy a drawdown 15.00% (equity 85,000.00 from peak 100,000.00) reached "
        "strategy_max_drawdown 15.00%"
    )
    (change,) = state_changes(events)
    assert (change.state, change.strategy_id) == (HALTED, a)
    assert limits.state is ACTIVE
    assert limits.state_for(a) is HALTED
    assert limits.state_for(b) is ACTIVE
    (back,) = limits.reset(T0 + 3)
    assert (back.state, back.strategy_id, back.previous) == (ACTIVE, a, HALTED)
    assert limits.state_for(a) is ACTIVE


def test_node_state_applies_to_every_strategy() -> None:
    limits = PortfolioLimits(max_drawdown=0.1)
    limits.evaluate(T0, 100)
    limits.evaluate(T0 + 1, 50)
    assert limits.state_for(StrategyId("any")) is HALTED


def test_bad_input_is_named() -> None:
    limits = PortfolioLimits(max_drawdown=0.1)
    limits.evaluate(T0 + 10, 100)
    with pytest.raises(ValueError, match=r"at ts_ns 5 is before the previous one at"):
        limits.evaluate(5, 100)
    with pytest.raises(ValueError, match=r"equity must be finite, got inf"):
        limits.evaluate(T0 + 11, float("inf"))
    with pytest.raises(ValueError, match=r"max_drawdown must be a fraction in \(0, 1\], got 25"):
        PortfolioLimits(max_drawdown=25)
    with pytest.raises(ValueError, match=r"var_min_observations 40 exceeds var_window 30"):
        PortfolioLimits(var_limit=0.03, var_window=30, var_min_observations=40)
    with pytest.raises(ValueError, match=r"unknown var_method 'cornish'"):
        PortfolioLimits(var_method="cornish")


def test_from_profile() -> None:
    limits = PortfolioLimits.from_profile(CONSERVATIVE)
    assert limits.max_drawdown == Decimal("0.25")
    assert limits.strategy_max_drawdown == Decimal("0.15")
    assert limits.daily_loss_limit == Decimal("0.05")
    assert limits.var_limit == pytest.approx(0.03)
    assert limits.var_confidence == 0.95


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1_000), min_size=1, max_size=60))
def test_halted_exactly_when_the_drawdown_has_reached_the_limit(path: list[int]) -> None:
    limits = PortfolioLimits(max_drawdown=Decimal("0.3"))
    peak = Decimal(0)
    breached = False
    for i, value in enumerate(path):
        eq = Decimal(value)
        peak = max(peak, eq)
        breached = breached or (1 - eq / peak) >= Decimal("0.3")
        events = limits.evaluate(T0 + i, eq)
        assert limits.state is (HALTED if breached else ACTIVE)
        assert len(risk_events(events)) <= 1


# -- kill switch ------------------------------------------------------------------------


def _order(n: int, inst: Instrument) -> Order:
    return Order.limit(
        ClientOrderId(f"k-{n}"),
        StrategyId("s1"),
        inst.id,
        OrderSide.BUY,
        Decimal("0.1"),
        Decimal(40_000),
        ts_init=0,
    )


class _Pos:
    def __init__(self, sid: str, iid: InstrumentId, qty: str) -> None:
        self.strategy_id = StrategyId(sid)
        self.instrument_id = iid
        self.quantity = Decimal(qty)


def test_kill_switch_cancels_open_orders_and_flattens(perp: Instrument) -> None:
    initialized = _order(0, perp)
    submitted = _order(1, perp)
    submitted.apply(OrderSubmitted(ts_ns=1, client_order_id=submitted.client_order_id))
    accepted = _order(2, perp)
    accepted.apply(OrderSubmitted(ts_ns=1, client_order_id=accepted.client_order_id))
    accepted.apply(
        OrderAccepted(
            ts_ns=2, client_order_id=accepted.client_order_id, venue_order_id=VenueOrderId("v2")
        )
    )
    pending = _order(3, perp)
    pending.apply(OrderSubmitted(ts_ns=1, client_order_id=pending.client_order_id))
    pending.apply(
        OrderAccepted(
            ts_ns=2, client_order_id=pending.client_order_id, venue_order_id=VenueOrderId("v3")
        )
    )
    pending.apply(OrderCancelRequested(ts_ns=3, client_order_id=pending.client_order_id))
    filled = _order(4, perp)
    filled.apply(OrderSubmitted(ts_ns=1, client_order_id=filled.client_order_id))
    filled.apply(
        OrderAccepted(
            ts_ns=2, client_order_id=filled.client_order_id, venue_order_id=VenueOrderId("v4")
        )
    )
    filled.apply(
        OrderFilled(
            ts_ns=3, client_order_id=filled.client_order_id, trade_id=TradeId("t1"),
            last_qty=Decimal("0.1"), last_px=Decimal(40_000), liquidity=LiquiditySide.MAKER,
            fee=Decimal("0.8"), fee_currency="USDT",
        )
    )  # fmt: skip
    eth = InstrumentId("ETH/USDT:USDT", "BYBIT")
    positions = [_Pos("s1", perp.id, "0.5"), _Pos("s2", eth, "-3"), _Pos("s1", eth, "0")]

    limits = PortfolioLimits()
    switch = KillSwitch(limits, flatten=True)
    assert not switch.tripped
    actions = switch.trip(
        "operator pressed the button",
        T0,
        [initialized, submitted, accepted, pending, filled],
        positions,
    )
    assert actions.cancel == (ClientOrderId("k-1"), ClientOrderId("k-2"))
    assert actions.close == (
        CloseIntent(StrategyId("s1"), perp.id, OrderSide.SELL, Decimal("0.5")),
        CloseIntent(StrategyId("s2"), eth, OrderSide.BUY, Decimal(3)),
    )
    assert all(c.reduce_only for c in actions.close)
    risk, change = actions.events
    assert isinstance(risk, RiskEvent) and risk.kind == "kill_switch"
    assert risk.reason == "kill switch: operator pressed the button"
    assert isinstance(change, TradingStateChanged) and change.state is HALTED
    assert switch.tripped and limits.state is HALTED

    # tripping again lists the actions again but halts only once; flatten can be overridden
    again = switch.trip("again", T0 + 1, [accepted], positions, flatten=False)
    assert again.cancel == (ClientOrderId("k-2"),) and again.close == () and again.events == ()

    (resumed,) = switch.reset(T0 + 2)
    assert resumed.state is ACTIVE and not switch.tripped


def test_kill_switch_without_flatten_only_cancels(perp: Instrument) -> None:
    switch = KillSwitch(PortfolioLimits())
    actions = switch.trip("manual", T0, [], [_Pos("s1", perp.id, "1")])
    assert actions.close == () and actions.cancel == ()
    with pytest.raises(ValueError, match=r"a halt needs a reason, got ''"):
        switch.trip("", T0 + 1, [])


def test_kill_switch_reads_portfolio_positions(perp: Instrument) -> None:
    from sapphire.portfolio import Position

    long = Position(perp.id, StrategyId("s1"))
    long.apply_fill(OrderSide.BUY, Decimal("0.25"), Decimal(50_000))
    short = Position(perp.id, StrategyId("s2"))
    short.apply_fill(OrderSide.SELL, Decimal("1.5"), Decimal(50_000))
    flat = Position(perp.id, StrategyId("s3"))
    actions = KillSwitch(PortfolioLimits(), flatten=True).trip("test", T0, [], [long, short, flat])
    assert actions.close == (
        CloseIntent(StrategyId("s1"), perp.id, OrderSide.SELL, Decimal("0.25")),
        CloseIntent(StrategyId("s2"), perp.id, OrderSide.BUY, Decimal("1.5")),
    )


def test_evaluate_snapshot_uses_strategy_capital_plus_pnl() -> None:
    from sapphire.portfolio import EquitySnapshot, StrategyPnl

    a, b = StrategyId("a"), StrategyId("b")

    def snap(ts: int, equity: int, pnl_a: int, pnl_b: int) -> EquitySnapshot:
        zero = Decimal(0)
        return EquitySnapshot(
            ts_ns=ts,
            currency="USDT",
            equity=Decimal(equity),
            balance=Decimal(equity),
            unrealized_pnl=zero,
            margin_used=zero,
            gross_exposure=zero,
            net_exposure=zero,
            strategies={
                a: StrategyPnl(a, "USDT", Decimal(pnl_a), zero, zero, zero),
                b: StrategyPnl(b, "USDT", Decimal(pnl_b), zero, zero, zero),
            },
        )

    limits = PortfolioLimits(strategy_max_drawdown=Decimal("0.1"), max_drawdown=Decimal("0.5"))
    capital = {a: Decimal(10_000)}  # b has no capital: not checked per strategy
    assert limits.evaluate_snapshot(snap(T0, 20_000, 0, 0), capital) == []
    assert limits.evaluate_snapshot(snap(T0 + 1, 20_500, 1_000, -500), capital) == []
    # a: 11,000 -> 9,900 = -10 %; b loses far more but has no capital
    events = limits.evaluate_snapshot(snap(T0 + 2, 15_000, -100, -4_900), capital)
    (risk,) = risk_events(events)
    assert (risk.kind, risk.strategy_id) == ("strategy_drawdown", a)
    assert "equity 9,900.00 from peak 11,000.00" in risk.reason
    assert limits.state is ACTIVE and limits.state_for(a) is HALTED
    assert limits.state_for(b) is ACTIVE


def test_evaluate_series() -> None:
    limits = PortfolioLimits(max_drawdown=Decimal("0.3"))
    events = limits.evaluate_series([(T0, 100), (T0 + 1, 120), (T0 + 2, 84), (T0 + 3, 130)])
    assert [type(e).__name__ for e in events] == ["RiskEvent", "TradingStateChanged"]
    assert events[0].ts_ns == T0 + 2 and limits.state is HALTED
