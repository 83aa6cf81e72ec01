"""Pre-trade checks: each check's pass and fail case, with its reason string."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    InstrumentId,
    Order,
    OrderSide,
    OrderType,
    StrategyId,
    TradingState,
)
from sapphire.risk import RiskConfig, RiskContext, RiskDecision, RiskEngine, reference_price

BUY, SELL = OrderSide.BUY, OrderSide.SELL
_ids = itertools.count()


def order(
    inst: Instrument,
    side: OrderSide,
    qty: str,
    *,
    price: str | None = None,
    trigger: str | None = None,
    reduce_only: bool = False,
) -> Order:
    """A market order, or limit (price), stop-market (trigger), stop-limit (both)."""
    if price is not None and trigger is not None:
        kind = OrderType.STOP_LIMIT
    elif price is not None:
        kind = OrderType.LIMIT
    elif trigger is not None:
        kind = OrderType.STOP_MARKET
    else:
        kind = OrderType.MARKET
    return Order(
        ClientOrderId(f"o-{next(_ids)}"),
        StrategyId("s1"),
        inst.id,
        side,
        kind,
        Decimal(qty),
        ts_init=0,
        price=None if price is None else Decimal(price),
        trigger_price=None if trigger is None else Decimal(trigger),
        reduce_only=reduce_only,
    )


def ctx(inst: Instrument, **changes: object) -> RiskContext:
    base = RiskContext(
        instrument=inst,
        last_price=Decimal(50_000),
        position_qty=Decimal(0),
        gross_exposure=Decimal(0),
        open_orders=0,
        free_balance=Decimal(1_000_000),
        trading_state=TradingState.ACTIVE,
        ts_ns=1_000_000_000,
    )
    return replace(base, **changes)


def denied(decision: RiskDecision, check: str) -> str:
    assert not decision.ok
    assert not decision
    assert decision.check == check, decision.reason
    assert decision.reason is not None
    return decision.reason


def approved(decision: RiskDecision) -> None:
    assert decision.ok, decision.reason
    assert decision.reason is None and decision.check is None


# -- trading state and reduce-only ------------------------------------------------------


def test_halted_allows_nothing(perp: Instrument) -> None:
    engine = RiskEngine()
    reducing = order(perp, SELL, "0.5")
    reason = denied(
        engine.check(reducing, ctx(perp, position_qty=Decimal(1), trading_state="HALTED")),
        "trading_state",
    )
    assert reason == "trading state is HALTED: no new orders, only cancels"
    approved(engine.check(reducing, ctx(perp, position_qty=Decimal(1))))


def test_reducing_allows_only_position_reducing_orders(perp: Instrument) -> None:
    engine = RiskEngine()
    c = ctx(perp, position_qty=Decimal(1), trading_state=TradingState.REDUCING)
    approved(engine.check(order(perp, SELL, "0.4"), c))
    approved(engine.check(order(perp, SELL, "1"), c))  # to flat
    reason = denied(engine.check(order(perp, BUY, "0.1"), c), "trading_state")
    assert reason == (
        "trading state is REDUCING: only orders that reduce the position are allowed; "
        "BUY 0.1 BTC would take the position from 1 to 1.1"
    )
    reason = denied(engine.check(order(perp, SELL, "1.5"), c), "trading_state")  # a flip
    assert "SELL 1.5 BTC would take the position from 1 to -0.5" in reason
    flat = ctx(perp, trading_state=TradingState.REDUCING)
    denied(engine.check(order(perp, SELL, "0.1"), flat), "trading_state")


def test_reduce_only_cannot_increase_or_flip(perp: Instrument) -> None:
    engine = RiskEngine()
    short = ctx(perp, position_qty=Decimal("-2"))
    approved(engine.check(order(perp, BUY, "2", reduce_only=True), short))
    reason = denied(engine.check(order(perp, BUY, "3", reduce_only=True), short), "reduce_only")
    assert reason == (
        "reduce-only order would increase the position: "
        "BUY 3 BTC would take the position from -2 to 1"
    )
    denied(engine.check(order(perp, SELL, "0.1", reduce_only=True), short), "reduce_only")
    denied(engine.check(order(perp, BUY, "0.1", reduce_only=True), ctx(perp)), "reduce_only")


# -- instrument precision and limits ----------------------------------------------------


def test_precision(perp: Instrument) -> None:
    engine = RiskEngine()
    reason = denied(engine.check(order(perp, BUY, "0.0015"), ctx(perp)), "precision")
    assert reason == ("quantity 0.0015 is not a multiple of lot_size 0.001 of BTC/USDT:USDT@BYBIT")
    reason = denied(
        engine.check(order(perp, BUY, "0.01", price="50000.05"), ctx(perp)), "precision"
    )
    assert reason == "price 50,000.05 is not a multiple of tick_size 0.1 of BTC/USDT:USDT@BYBIT"
    reason = denied(
        engine.check(order(perp, BUY, "0.01", trigger="50000.01"), ctx(perp)), "precision"
    )
    assert reason.startswith("trigger price 50,000.01 is not a multiple of tick_size 0.1")
    approved(engine.check(order(perp, BUY, "0.015", price="50000.1"), ctx(perp)))


def test_instrument_min_max_qty_and_notional(perp: Instrument) -> None:
    engine = RiskEngine()
    c = ctx(perp, last_price=Decimal(1_000))
    small = replace(perp, min_qty=Decimal("0.01"))
    reason = denied(
        engine.check(order(small, BUY, "0.005"), replace(c, instrument=small)), "instrument_limits"
    )
    assert reason == "quantity 0.005 BTC is below min_qty 0.01 of BTC/USDT:USDT@BYBIT"
    reason = denied(engine.check(order(perp, BUY, "101"), c), "instrument_limits")
    assert reason == "quantity 101 BTC exceeds max_qty 100 of BTC/USDT:USDT@BYBIT"
    # 0.004 * 1,000 = 4 USDT < min_notional 5
    reason = denied(engine.check(order(perp, BUY, "0.004"), c), "instrument_limits")
    assert reason == ("order notional 4.00 USDT is below min_notional 5.00 of BTC/USDT:USDT@BYBIT")
    approved(engine.check(order(perp, BUY, "0.005"), c))  # exactly 5 USDT
    # 100 * 60,000 = 6,000,000 > max_notional 5,000,000
    reason = denied(
        engine.check(order(perp, BUY, "100"), ctx(perp, last_price=Decimal(60_000))),
        "instrument_limits",
    )
    assert reason == (
        "order notional 6,000,000.00 USDT exceeds max_notional 5,000,000.00 of BTC/USDT:USDT@BYBIT"
    )


# -- configured limits ------------------------------------------------------------------


def test_max_notional_per_order(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_notional_per_order=Decimal(100_000)))
    reason = denied(engine.check(order(perp, BUY, "2.5"), ctx(perp)), "max_notional_per_order")
    assert reason == "order notional 125,000.00 USDT exceeds max_notional_per_order 100,000.00"
    approved(engine.check(order(perp, BUY, "2"), ctx(perp)))  # exactly at the limit
    # a limit order is valued at its price, not the last price
    denied(
        engine.check(order(perp, BUY, "2", price="50000.1"), ctx(perp)), "max_notional_per_order"
    )
    # a stop-market order at its trigger
    denied(
        engine.check(order(perp, SELL, "2", trigger="50001"), ctx(perp, position_qty=Decimal(5))),
        "max_notional_per_order",
    )


def test_reference_price(perp: Instrument) -> None:
    last = Decimal(50_000)
    assert reference_price(order(perp, BUY, "1"), last) == last
    assert reference_price(order(perp, BUY, "1", price="49000"), last) == Decimal(49_000)
    assert reference_price(order(perp, BUY, "1", trigger="51000"), last) == Decimal(51_000)
    assert reference_price(order(perp, BUY, "1", price="51100", trigger="51000"), last) == Decimal(
        51_100
    )


def test_price_band(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(price_band=Decimal("0.05")))
    reason = denied(engine.check(order(perp, BUY, "0.1", price="55000"), ctx(perp)), "price_band")
    assert reason == (
        "price 55,000 is 10.00% away from the last price 50,000, outside price_band 5.00%"
    )
    approved(engine.check(order(perp, BUY, "0.1", price="52500"), ctx(perp)))  # exactly 5 %
    approved(engine.check(order(perp, SELL, "0.1", price="47500"), ctx(perp)))
    reason = denied(
        engine.check(order(perp, SELL, "0.1", trigger="40000"), ctx(perp)), "price_band"
    )
    assert reason.startswith("trigger price 40,000 is 20.00% away")
    approved(engine.check(order(perp, BUY, "0.1"), ctx(perp)))  # market: no price to check


def test_max_position_qty(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_position_qty={perp.id: Decimal("1.2")}))
    long = ctx(perp, position_qty=Decimal(1))
    reason = denied(engine.check(order(perp, BUY, "0.5"), long), "max_position")
    assert reason == (
        "BUY 0.5 BTC would take the position from 1 to 1.5, exceeding max_position_qty 1.2 BTC "
        "for BTC/USDT:USDT@BYBIT"
    )
    approved(engine.check(order(perp, BUY, "0.2"), long))
    # already above the cap (e.g. the cap was lowered): reducing is still allowed
    approved(engine.check(order(perp, SELL, "0.5"), ctx(perp, position_qty=Decimal(2))))
    # a cap on another instrument does not apply
    other = RiskEngine(
        RiskConfig(max_position_qty={InstrumentId("ETH/USDT:USDT", "BYBIT"): Decimal(1)})
    )
    approved(other.check(order(perp, BUY, "5"), long))


def test_max_position_notional(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_position_notional=Decimal(60_000)))
    c = ctx(perp, position_qty=Decimal(1))
    reason = denied(engine.check(order(perp, BUY, "0.5"), c), "max_position")
    assert reason == (
        "position notional after the order 75,000.00 USDT exceeds max_position_notional "
        "60,000.00 for BTC/USDT:USDT@BYBIT"
    )
    approved(engine.check(order(perp, BUY, "0.2"), c))  # 60,000 exactly


def test_max_gross_exposure(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_gross_exposure=Decimal(100_000)))
    c = ctx(perp, gross_exposure=Decimal(90_000), position_qty=Decimal("0.2"))
    reason = denied(engine.check(order(perp, BUY, "0.4"), c), "max_gross_exposure")
    assert reason == (
        "gross exposure after the order 110,000.00 USDT (now 90,000.00 + 20,000.00) exceeds "
        "max_gross_exposure 100,000.00"
    )
    approved(engine.check(order(perp, BUY, "0.2"), c))
    over = ctx(perp, gross_exposure=Decimal(150_000), position_qty=Decimal(3))
    approved(engine.check(order(perp, SELL, "1"), over))  # reducing
    # a flip counts its whole new leg: 0.2 long -> 2.8 short adds 140,000
    denied(engine.check(order(perp, SELL, "3"), c), "max_gross_exposure")


def test_max_open_orders(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_open_orders=5))
    reason = denied(
        engine.check(order(perp, BUY, "0.1"), ctx(perp, open_orders=5)), "max_open_orders"
    )
    assert reason == "5 open orders already, at max_open_orders 5"
    approved(engine.check(order(perp, BUY, "0.1"), ctx(perp, open_orders=4)))


def test_margin(perp: Instrument) -> None:
    engine = RiskEngine()
    c = ctx(perp, free_balance=Decimal(5_000), leverage=Decimal(10))
    # 1 BTC at 50,000 / 10 = 5,000 margin + 27.50 taker fee > 5,000
    reason = denied(engine.check(order(perp, BUY, "1"), c), "balance")
    assert reason == (
        "required margin 5,027.50 USDT (notional 50,000.00 / leverage 10 + fee 27.50) exceeds "
        "free margin 5,000.00 USDT"
    )
    approved(engine.check(order(perp, BUY, "0.99"), c))
    # a reducing order needs no margin, even with nothing free
    approved(
        engine.check(
            order(perp, SELL, "1"), replace(c, position_qty=Decimal(2), free_balance=Decimal(0))
        )
    )
    # disabled
    approved(RiskEngine(RiskConfig(check_balance=False)).check(order(perp, BUY, "1"), c))


def test_spot_balance(spot: Instrument) -> None:
    engine = RiskEngine()
    c = ctx(spot, free_balance=Decimal(1_000))
    # 0.02 BTC at 50,000 = 1,000 + 1.00 fee
    reason = denied(engine.check(order(spot, BUY, "0.02"), c), "balance")
    assert reason == (
        "order cost 1,001.00 USDT (notional 1,000.00 + fee 1.00) exceeds free balance 1,000.00 USDT"
    )
    approved(engine.check(order(spot, BUY, "0.0199"), c))
    reason = denied(
        engine.check(order(spot, SELL, "0.5"), replace(c, position_qty=Decimal("0.3"))), "balance"
    )
    assert reason == "spot SELL 0.5 BTC exceeds the 0.3 BTC held (spot cannot go short)"
    approved(engine.check(order(spot, SELL, "0.3"), replace(c, position_qty=Decimal("0.3"))))


def test_rate_limit_is_a_sliding_window(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_orders_per_window=3, rate_limit_window_s=1.0))
    s = 1_000_000_000
    for t in (0, s // 4, s // 2):
        approved(engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=10 * s + t)))
    reason = denied(
        engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=10 * s + s - 1)), "rate_limit"
    )
    assert reason == "3 orders in the last 1 s, at max_orders_per_window 3"
    # a denied order is not counted; once the first approval leaves the window, one more fits
    approved(engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=11 * s)))
    denied(engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=11 * s + 1)), "rate_limit")
    # orders denied by another check do not use the budget
    fresh = RiskEngine(RiskConfig(max_orders_per_window=1, max_open_orders=1))
    denied(fresh.check(order(perp, BUY, "0.1"), ctx(perp, open_orders=1)), "max_open_orders")
    approved(fresh.check(order(perp, BUY, "0.1"), ctx(perp)))
    denied(fresh.check(order(perp, BUY, "0.1"), ctx(perp)), "rate_limit")
    fresh.reset_rate_limit()
    approved(fresh.check(order(perp, BUY, "0.1"), ctx(perp)))


def test_rate_limit_refuses_a_clock_going_backwards(perp: Instrument) -> None:
    engine = RiskEngine(RiskConfig(max_orders_per_window=3))
    approved(engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=5_000)))
    with pytest.raises(ValueError, match=r"clock went backwards: ts_ns 4000 is before .* 5000"):
        engine.check(order(perp, BUY, "0.1"), ctx(perp, ts_ns=4_000))


def test_bad_input_is_named(perp: Instrument, spot: Instrument) -> None:
    with pytest.raises(
        ValueError,
        match=r"is for BTC/USDT@BINANCE, but the risk context is for BTC/USDT:USDT@BYBIT",
    ):
        RiskEngine().check(order(spot, BUY, "0.1"), ctx(perp))
    with pytest.raises(ValueError, match=r"RiskContext.last_price must be > 0, got Decimal\('0'\)"):
        ctx(perp, last_price=Decimal(0))
    with pytest.raises(
        ValueError, match=r"RiskContext.trading_state must be a TradingState, got 'PAUSED'"
    ):
        ctx(perp, trading_state="PAUSED")
    with pytest.raises(ValueError, match=r"RiskContext.open_orders must be an int >= 0, got -1"):
        ctx(perp, open_orders=-1)
    with pytest.raises(ValueError, match=r"price_band must be a fraction in \(0, 1\], got 5"):
        RiskConfig(price_band=5)
    with pytest.raises(ValueError, match=r"max_notional_per_order must be positive, got -1"):
        RiskConfig(max_notional_per_order=-1)
    # floats go through str
    assert RiskConfig(max_notional_per_order=0.1).max_notional_per_order == Decimal("0.1")


# -- properties -------------------------------------------------------------------------

_qty = st.integers(min_value=1, max_value=5_000).map(lambda n: Decimal(n) / 1000)
_pos = st.integers(min_value=-5_000, max_value=5_000).map(lambda n: Decimal(n) / 1000)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    side=st.sampled_from([BUY, SELL]),
    qty=_qty,
    pos=_pos,
    state=st.sampled_from(list(TradingState)),
    reduce_only=st.booleans(),
)
def test_approved_orders_respect_state_and_reduce_only(
    perp: Instrument,
    side: OrderSide,
    qty: Decimal,
    pos: Decimal,
    state: TradingState,
    reduce_only: bool,
) -> None:
    engine = RiskEngine(RiskConfig(max_notional_per_order=Decimal(100_000)))
    decision = engine.check(
        order(perp, side, str(qty), reduce_only=reduce_only),
        ctx(perp, position_qty=pos, trading_state=state),
    )
    new = pos + side.sign * qty
    reduces = abs(new) <= abs(pos) and (new == 0 or pos == 0 or (new > 0) == (pos > 0))
    if decision.ok:
        assert state is not TradingState.HALTED
        if state is TradingState.REDUCING or reduce_only:
            assert reduces and pos != 0
        assert qty * Decimal(50_000) <= Decimal(100_000)
    else:
        assert decision.reason
        if state is TradingState.ACTIVE and not reduce_only and qty * 50_000 <= 100_000:
            pytest.fail(f"unexpected denial: {decision.reason}")
