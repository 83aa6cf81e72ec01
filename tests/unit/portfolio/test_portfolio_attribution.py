"""Portfolio: per-strategy attribution, position events, exposures, snapshots."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderFilled,
    OrderSide,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    PositionSide,
    StrategyId,
    TradeId,
)
from sapphire.portfolio import Account, Portfolio

BUY, SELL = OrderSide.BUY, OrderSide.SELL
A, B = StrategyId("trend"), StrategyId("revert")


def instrument(symbol, base, quote, kind):
    return Instrument(
        InstrumentId(symbol, "TEST"),
        base,
        quote,
        quote,
        kind,
        D("0.01"),
        D("0.001"),
        maker_fee=D(0),
        taker_fee=D("0.001"),
    )


PERP = instrument("BTC/USDT:USDT", "BTC", "USDT", ContractType.PERPETUAL)
SPOT = instrument("ETH/USDT", "ETH", "USDT", ContractType.SPOT)
EUR_PERP = instrument("ETH/EUR:EUR", "ETH", "EUR", ContractType.PERPETUAL)


def make(hedge=False, balances=None):
    account = Account("USDT", balances or {"USDT": D(10000)}, leverage=D(10), hedge=hedge)
    return Portfolio(account, [PERP, SPOT, EUR_PERP])


def test_strategies_that_offset_each_other_keep_their_own_pnl():
    pf = make()
    pf.apply_fill(A, PERP.id, BUY, D(1), D(100), D("0.1"), 1)
    res = pf.apply_fill(B, PERP.id, SELL, D(1), D(110), D("0.1"), 2)
    # the account nets them: B's sell closed A's long and realised 10 there ...
    assert res.account_realized_pnl == 10 and res.realized_pnl == 0
    assert pf.account.positions.net_quantity(PERP.id) == 0
    assert pf.net_quantity(PERP.id) == 0
    # ... while each strategy still holds its own position
    marks = {PERP.id: D(120)}
    a, b = pf.strategy_pnl(A, marks), pf.strategy_pnl(B, marks)
    assert (a.realized, a.unrealized, a.fees, a.funding, a.total) == (
        0, 20, D("0.1"), 0, D("19.9"),
    )  # fmt: skip
    assert (b.unrealized, b.total) == (-10, D("-10.1"))
    # both views agree on equity
    assert pf.equity(marks) == D(10000) + a.total + b.total
    assert pf.gross_exposure(marks) == 240 and pf.net_exposure(marks) == 0
    assert pf.gross_exposure(marks, strategy_id=A) == 120
    # funding: the account's net position pays nothing, the strategies net to zero
    assert pf.apply_funding(PERP.id, D("0.001"), D(120), 3) == 0
    assert pf.strategy_pnl(A, marks).funding == D("-0.12")
    assert pf.strategy_pnl(B, marks).funding == D("0.12")
    assert pf.equity(marks) - 10000 == sum(p.total for p in pf.pnl_by_strategy(marks).values())


def test_position_events_follow_the_shape_of_the_position():
    pf = make()
    opened = pf.apply_fill(A, PERP.id, BUY, D(2), D(100), ts_ns=10).event
    assert isinstance(opened, PositionOpened)
    assert (opened.strategy_id, opened.quantity, opened.avg_px, opened.currency) == (
        A, 2, 100, "USDT",
    )  # fmt: skip
    changed = pf.apply_fill(A, PERP.id, SELL, D(3), D(90), ts_ns=11).event
    assert isinstance(changed, PositionChanged)
    assert changed.side is PositionSide.SHORT and changed.quantity == -1
    assert changed.realized_pnl == -20 and changed.ts_ns == 11
    closed = pf.apply_fill(A, PERP.id, BUY, D(1), D(80), ts_ns=12).event
    assert isinstance(closed, PositionClosed) and closed.avg_px is None
    assert closed.realized_pnl == -10
    assert pf.open_positions() == [] and len(pf.positions(A)) == 1


def test_spot_and_multi_currency_snapshot():
    pf = make(balances={"USDT": D(10000), "EUR": D(1000)})
    pf.apply_fill(A, SPOT.id, BUY, D(2), D(2000), D(4), 1)
    pf.apply_fill(B, EUR_PERP.id, SELL, D(1), D(1800), D("1.8"), 2)
    marks = {SPOT.id: D(2100), EUR_PERP.id: D(1700)}
    fx = {"EUR": D("1.1")}
    snap = pf.snapshot(99, marks, fx)
    assert snap.ts_ns == 99 and snap.currency == "USDT"
    # balances: USDT 10000 - 4000 - 4; ETH 2 at 2100; EUR 1000 - 1.8 at 1.1
    assert snap.balance == D(5996) + D(4200) + D("998.2") * D("1.1")
    assert snap.unrealized_pnl == D(100) * D("1.1")
    assert snap.equity == snap.balance + snap.unrealized_pnl
    assert snap.margin_used == D(170) * D("1.1")
    assert snap.gross_exposure == D(4200) + D(1870)
    assert snap.net_exposure == D(4200) - D(1870)
    a, b = snap.strategies[A], snap.strategies[B]
    assert a.total == D(200) - D(4)
    assert b.total == (D(100) - D("1.8")) * D("1.1")
    assert snap.equity - (D(10000) + D(1100)) == a.total + b.total
    with pytest.raises(ValueError, match="no FX rate for EUR"):
        pf.snapshot(99, marks)
    with pytest.raises(ValueError, match="no mark price"):
        pf.snapshot(99, {SPOT.id: D(1)}, fx)
    with pytest.raises(ValueError, match="ts_ns"):
        pf.snapshot(-1, marks, fx)


def test_apply_order_fill_uses_the_orders_strategy_instrument_and_side():
    pf = make()
    order = Order.market(
        client_order_id=ClientOrderId("r1-trend-1"),
        strategy_id=A,
        instrument_id=PERP.id,
        side=SELL,
        quantity=D(2),
        ts_init=1,
    )
    fill = OrderFilled(
        ts_ns=5,
        client_order_id=order.client_order_id,
        trade_id=TradeId("t1"),
        last_qty=D("0.5"),
        last_px=D(100),
        liquidity=LiquiditySide.TAKER,
        fee=D("0.05"),
        fee_currency="USDT",
    )
    res = pf.apply_order_fill(order, fill)
    assert res.position.quantity == D("-0.5") and res.position.last_ts_ns == 5
    assert pf.account.balance("USDT") == D("9999.95")
    foreign = OrderFilled(
        ts_ns=6,
        client_order_id=ClientOrderId("other"),
        trade_id=TradeId("t2"),
        last_qty=D(1),
        last_px=D(1),
        liquidity=LiquiditySide.MAKER,
        fee=D(0),
        fee_currency="USDT",
    )
    with pytest.raises(ValueError, match="belongs to order other"):
        pf.apply_order_fill(order, foreign)
    bnb_fee = OrderFilled(
        ts_ns=7,
        client_order_id=order.client_order_id,
        trade_id=TradeId("t3"),
        last_qty=D(1),
        last_px=D(1),
        liquidity=LiquiditySide.MAKER,
        fee=D("0.01"),
        fee_currency="BNB",
    )
    with pytest.raises(ValueError, match="fee currency 'BNB'"):
        pf.apply_order_fill(order, bnb_fee)
    assert pf.account.balance("USDT") == D("9999.95")


def test_hedge_portfolio_checks_the_strategy_leg_before_booking():
    pf = make(hedge=True)
    assert pf.position(A, PERP.id, PositionSide.LONG) is None
    pf.apply_fill(A, PERP.id, BUY, D(1), D(100), position_side=PositionSide.LONG)
    pf.apply_fill(B, PERP.id, BUY, D(1), D(100), position_side=PositionSide.LONG)
    with pytest.raises(ValueError, match="LONG leg"):
        pf.apply_fill(A, PERP.id, SELL, D(2), D(100), position_side=PositionSide.LONG)
    # nothing was booked in the account either
    assert pf.account.positions.net_quantity(PERP.id) == 2
    res = pf.apply_fill(A, PERP.id, SELL, D(1), D(130), position_side=PositionSide.SHORT)
    assert isinstance(res.event, PositionOpened) and res.event.quantity == -1
    assert pf.net_quantity(PERP.id, A) == 0 and len(pf.open_positions(A)) == 2


def test_bad_portfolio_inputs():
    pf = make()
    with pytest.raises(ValueError, match="unknown instrument"):
        pf.apply_fill(A, InstrumentId("X", "Y"), BUY, D(1), D(1))
    with pytest.raises(ValueError, match="strategy_id"):
        pf.apply_fill("trend", PERP.id, BUY, D(1), D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        pf.add_instrument(instrument("BTC/USDT:USDT", "BTC", "USDT", ContractType.FUTURE))
    with pytest.raises(ValueError, match="account"):
        Portfolio("acc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ts_ns must be >= 0"):
        pf.apply_fill(A, PERP.id, BUY, D(1), D(1), ts_ns=-5)
    assert pf.position(A, PERP.id) is None and pf.strategies() == []
