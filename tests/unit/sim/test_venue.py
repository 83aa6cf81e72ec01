"""SimulatedVenue: bar matching along the OHLC path, fees, slippage, funding, margin,
and the domain events it emits (hand-worked examples of docs/backtest.md's rules)."""

from __future__ import annotations

from decimal import Decimal
from decimal import Decimal as D

import pytest

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderUpdated,
    StrategyId,
    TimeInForce,
    TrailingOffsetType,
)
from sapphire.sim.bar_path import FillModel
from sapphire.sim.liquidation import LIQUIDATION_CANCEL, Liquidation, LiquidationRule
from sapphire.sim.venue import SimulatedVenue

IID = InstrumentId("BTC/USDT:USDT", "SIM")
S = StrategyId("s")
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MIN = 60_000_000_000


def instrument(maker: str = "0.0002", taker: str = "0.0005") -> Instrument:
    return Instrument(
        IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.5"),
        lot_size=Decimal("0.001"), maker_fee=Decimal(maker), taker_fee=Decimal(taker),
    )  # fmt: skip


class Harness:
    def __init__(self, **kw: object) -> None:
        self.venue = SimulatedVenue([instrument()], cash=10_000, **kw)  # type: ignore[arg-type]
        self.events: list[OrderEvent] = []
        self.orders: dict[str, Order] = {}
        self.venue.on_event = self.on_event
        self.seq = 0
        self.t = 0

    def on_event(self, event: OrderEvent) -> None:
        self.orders[event.client_order_id].apply(event)
        self.events.append(event)

    def send(self, order: Order, sizer: object = None) -> Order:
        order.apply(OrderSubmitted(ts_ns=0, client_order_id=order.client_order_id))
        self.orders[order.client_order_id] = order
        self.venue.submit_order(order, sizer)  # type: ignore[arg-type]
        return order

    def oid(self) -> ClientOrderId:
        self.seq += 1
        return ClientOrderId(f"r-s-{self.seq}")

    def market(self, side: OrderSide, qty: str, **kw: object) -> Order:
        return self.send(Order.market(self.oid(), S, IID, side, Decimal(qty), ts_init=0, **kw))  # type: ignore[arg-type]

    def limit(self, side: OrderSide, qty: str, px: str, **kw: object) -> Order:
        return self.send(
            Order.limit(self.oid(), S, IID, side, Decimal(qty), Decimal(px), ts_init=0, **kw)  # type: ignore[arg-type]
        )

    def stop(self, side: OrderSide, qty: str, px: str, **kw: object) -> Order:
        return self.send(
            Order.stop_market(self.oid(), S, IID, side, Decimal(qty), Decimal(px), ts_init=0, **kw)  # type: ignore[arg-type]
        )

    def bar(self, o: float, h: float, lo: float, c: float) -> None:
        self.venue.process_bar(IID, self.t, o, h, lo, c, self.t + MIN)
        self.t += MIN

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.events if isinstance(e, OrderFilled)]


def test_market_order_fills_at_the_next_open_with_slippage_and_taker_fee() -> None:
    h = Harness(fill_model=FillModel(slippage_bps=10))
    order = h.market(BUY, "0.5")
    assert h.events == []  # nothing happens before the next price
    h.bar(100.0, 101.0, 99.0, 100.5)
    (fill,) = h.fills()
    assert [type(e) for e in h.events] == [OrderAccepted, OrderFilled]
    assert fill.last_px == Decimal("100.1")  # 100 * (1 + 10 bps), against the buyer
    assert fill.liquidity is LiquiditySide.TAKER
    assert fill.fee == Decimal("0.5") * Decimal("100.1") * Decimal("0.0005")
    assert order.status.name == "FILLED"
    assert h.venue.position(IID) == Decimal("0.5")
    # derivative account: the fee leaves the balance; the price move is unrealised
    assert h.venue.balance() == Decimal(10_000) - fill.fee


def test_limit_fills_at_its_level_as_maker_and_at_the_open_on_a_gap() -> None:
    h = Harness(fill_model=FillModel(slippage_bps=10))
    h.limit(BUY, "1", "98")
    h.bar(100.0, 100.5, 97.0, 99.0)  # crosses 98 on the way down
    h.limit(BUY, "1", "98")
    h.bar(96.0, 97.0, 95.0, 96.5)  # opens below 98: the better open price
    a, b = h.fills()
    assert (a.last_px, b.last_px) == (Decimal("98.0"), Decimal("96.0"))
    assert a.liquidity is b.liquidity is LiquiditySide.MAKER
    assert a.fee == Decimal("98.0") * Decimal("0.0002")


def test_stop_gap_fills_at_the_open_slipped_and_touch_counts() -> None:
    h = Harness(fill_model=FillModel(slippage_bps=10))
    h.market(BUY, "1")
    h.bar(100.0, 100.0, 100.0, 100.0)
    h.stop(SELL, "1", "95", reduce_only=True)
    h.bar(94.0, 94.5, 93.0, 94.0)
    assert h.fills()[-1].last_px == Decimal(repr(94.0 * (1 - 10 / 10_000)))
    h.market(BUY, "1")
    h.bar(100.0, 100.0, 100.0, 100.0)
    h.stop(SELL, "1", "99", reduce_only=True)
    h.bar(100.0, 100.5, 99.0, 100.0)  # the low touches 99 exactly
    assert h.fills()[-1].last_px == Decimal(repr(99.0 * (1 - 10 / 10_000)))


def test_priority_at_a_point_is_stop_then_trailing_then_limit() -> None:
    h = Harness()
    h.market(BUY, "1")
    h.bar(100.0, 100.0, 100.0, 100.0)
    tp = h.limit(SELL, "1", "90", reduce_only=True)  # below the market: marketable
    sl = h.stop(SELL, "1", "95", reduce_only=True)
    h.bar(94.0, 94.0, 93.0, 93.5)  # gaps through both: the stop wins at the open
    assert h.fills()[-1].client_order_id == sl.client_order_id
    assert h.fills()[-1].last_px == Decimal("94.0")
    # the limit is reduce-only and the position is flat now: cancelled at its turn
    h.bar(94.0, 94.0, 89.0, 89.0)
    assert tp.status.name == "CANCELED"
    assert "reduce" in h.venue.reasons[tp.client_order_id]


def test_first_level_crossed_along_the_path_wins() -> None:
    h = Harness()
    h.market(BUY, "1")
    h.bar(100.0, 100.0, 100.0, 100.0)
    tp = h.limit(SELL, "1", "102", reduce_only=True)
    h.stop(SELL, "1", "98", reduce_only=True)
    # open 100, low 99.5 is nearer: path 100 -> 99.5 -> 103 -> 97: the TP is hit first
    h.bar(100.0, 103.0, 97.0, 97.0)
    fill = h.fills()[-1]
    assert fill.client_order_id == tp.client_order_id and fill.last_px == Decimal("102.0")


def test_trailing_stop_follows_the_path_and_fills_on_the_way_back() -> None:
    h = Harness()
    h.market(BUY, "1")
    h.bar(100.0, 100.0, 100.0, 100.0)
    trail = Order.trailing_stop(
        h.oid(), S, IID, SELL, Decimal(1), Decimal("2"), ts_init=0,
        trailing_offset_type=TrailingOffsetType.PERCENT, reduce_only=True,
    )  # fmt: skip
    h.send(trail)
    h.bar(100.0, 110.0, 99.5, 109.0)  # low first (0.5 away): 100 -> 99.5 -> 110 -> 109
    assert h.fills()[-1].client_order_id != trail.client_order_id
    h.bar(105.0, 105.5, 100.0, 101.0)  # trail at 110 * 0.98 = 107.8: gap below, fill at open
    assert h.fills()[-1].client_order_id == trail.client_order_id
    assert h.fills()[-1].last_px == Decimal("105.0")


def test_gtd_orders_expire_at_the_end_of_their_bar_and_cancel_emits() -> None:
    h = Harness()
    late = h.limit(BUY, "1", "50", time_in_force=TimeInForce.GTD, expire_time_ns=MIN)
    keep = h.limit(BUY, "1", "50")
    h.bar(100.0, 101.0, 99.0, 100.0)
    assert late.status.name == "EXPIRED"
    assert isinstance(h.events[-1], OrderExpired)
    assert keep.status.name == "ACCEPTED"
    assert h.venue.cancel_order(keep.client_order_id)
    assert isinstance(h.events[-1], OrderCanceled) and keep.status.name == "CANCELED"
    assert not h.venue.cancel_order(keep.client_order_id)


def test_sizer_sizes_at_the_fill_and_leverage_refuses_beyond_margin() -> None:
    h = Harness(leverage=2.0)
    ok = h.market(BUY, "1", reduce_only=False)
    order = Order.market(h.oid(), S, IID, BUY, Decimal(1), ts_init=0)
    sized = h.send(order, lambda px, equity: equity * Decimal("1.5") / px)
    h.bar(100.0, 100.0, 100.0, 100.0)
    assert ok.status.name == "FILLED"
    # 1.5x equity after the first fill's fee, at 100: OrderUpdated(quantity) then filled
    assert any(isinstance(e, OrderUpdated) for e in h.events)
    assert sized.status.name == "FILLED" and sized.quantity > Decimal(140)
    too_big = h.send(
        Order.market(h.oid(), S, IID, BUY, Decimal(1), ts_init=0),
        lambda px, equity: equity * 3 / px,
    )
    h.bar(100.0, 100.0, 100.0, 100.0)
    assert too_big.status.name == "REJECTED"
    assert isinstance(h.events[-1], OrderRejected) and h.events[-1].reason == "insufficient margin"


def test_funding_is_paid_by_longs_at_the_mark() -> None:
    h = Harness()
    h.market(BUY, "2")
    h.bar(100.0, 100.0, 100.0, 100.0)
    before = h.venue.balance()
    h.venue.apply_funding(IID, 0.001, 105.0, h.t)
    assert h.venue.balance() - before == Decimal("-0.21")  # 2 * 105 * 0.001
    assert h.venue.funding == Decimal("-0.21")


def test_stop_limit_becomes_a_limit_once_triggered_and_post_only_never_takes() -> None:
    h = Harness()
    sl = Order.stop_limit(
        h.oid(), S, IID, BUY, Decimal(1), Decimal("103"), Decimal("102"), ts_init=0
    )
    h.send(sl)
    h.bar(100.0, 104.0, 99.5, 101.0)  # triggers at 102, then limit 103: fills at 102 level
    assert sl.status.name == "FILLED" and h.fills()[-1].last_px == Decimal("102.0")
    po = h.limit(SELL, "1", "90", post_only=True)  # marketable at the next open
    h.bar(100.0, 100.0, 100.0, 100.0)
    assert po.status.name == "CANCELED"
    assert h.venue.reasons[po.client_order_id] == "post-only order would take liquidity"


def test_trade_prices_match_like_a_path() -> None:
    h = Harness()
    h.limit(BUY, "1", "99")
    h.venue.process_price(IID, 1, 100.0)
    assert h.fills() == []
    h.venue.process_price(IID, 2, 98.5)  # crosses 99 from 100
    assert h.fills()[-1].last_px == Decimal("99.0")
    h.market(SELL, "1")
    h.venue.process_price(IID, 3, 98.0)
    assert h.fills()[-1].last_px == Decimal("98.0")


def test_unknown_instrument_and_unsupported_trailing_are_rejected() -> None:
    h = Harness(native_trailing=False)
    trail = Order.trailing_stop(h.oid(), S, IID, SELL, Decimal(1), Decimal(5), ts_init=0)
    h.send(trail)
    assert trail.status.name == "REJECTED"
    other = Order.market(h.oid(), S, InstrumentId("ETH", "SIM"), BUY, Decimal(1), ts_init=0)
    h.send(other)
    assert other.status.name == "REJECTED"
    with pytest.raises(ValueError, match="intrabar"):
        SimulatedVenue([instrument()], intrabar="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slippage_bps"):
        FillModel(slippage_bps=-1)


# -- liquidation (opt-in LiquidationRule) ----------------------------------------------

RULE = LiquidationRule(D("0.005"), D("0.001"))


def _long_5_at_20000(rule: LiquidationRule | None) -> tuple[Harness, list[Liquidation]]:
    h = Harness(leverage=20, liquidation=rule)
    got: list[Liquidation] = []
    h.venue.on_liquidation = got.append
    h.market(BUY, "5")  # 100,000 notional on 10,000 cash (10x); taker fee 50
    h.bar(20000.0, 20100.0, 19900.0, 20000.0)
    return h, got


def test_a_10x_long_is_liquidated_at_the_path_point_beyond_its_price() -> None:
    h, got = _long_5_at_20000(RULE)
    venue = h.venue
    assert venue.balance() == D("9950")
    take_profit = h.limit(SELL, "5", "25000", reduce_only=True)
    # P = (q*E - cash) / (q*(1 - r)) = (100000 - 9950) / (5 * 0.995) = 18100.5025...
    price = RULE.liquidation_price(D("5"), D("20000"), D("9950"))
    assert D("18100.5") < price < D("18101")
    # the low 18101 is above it (equity 455 vs maintenance margin 452.525): still open
    h.bar(19000.0, 19500.0, 18101.0, 18500.0)
    assert got == [] and take_profit.status is OrderStatus.ACCEPTED
    # high first (19500 is nearer the open), then the low 18100.5: liquidated there
    h.bar(19000.0, 19500.0, 18100.5, 18500.0)
    (liq,) = got
    assert venue.liquidations == [liq]
    assert (liq.side, liq.quantity, liq.price) == (SELL, D("5"), D("18100.5"))
    assert liq.ts_ns == 2 * MIN
    assert liq.equity == D("452.5") and liq.maintenance_margin == D("452.5125")
    assert liq.fee == D("45.25125")  # taker 0.05 % of 90,502.5
    assert liq.liquidation_fee == D("90.5025")  # 0.1 %
    assert liq.fill.fee == D("135.75375") and liq.fill.last_px == D("18100.5")
    assert liq.realized_pnl == D("-9497.5")
    assert "below the maintenance margin 452.5125" in liq.reason
    assert liq.canceled == (take_profit.client_order_id,)
    assert take_profit.status is OrderStatus.CANCELED
    assert venue.reasons[take_profit.client_order_id] == LIQUIDATION_CANCEL
    assert venue.position(liq.instrument_id) == 0
    assert venue.balance() == D("9950") - D("9497.5") - D("135.75375") == D("316.74625")
    assert venue.fees == D("50") + D("135.75375")
    h.bar(15000.0, 15000.0, 14000.0, 14500.0)  # flat: nothing more
    assert len(got) == 1 and venue.balance() == D("316.74625")


def test_the_close_is_checked_too_and_a_short_mirrors() -> None:
    h = Harness(leverage=20, liquidation=RULE)
    got: list[Liquidation] = []
    h.venue.on_liquidation = got.append
    h.market(SELL, "5")
    h.bar(20000.0, 20000.0, 20000.0, 20000.0)
    # short: liquidated above (100000 + 9950) / (5 * 1.005) = 21880.59...; the bar's
    # extremes stay below it, the close is beyond it
    h.bar(20000.0, 21800.0, 19900.0, 21881.0)
    (liq,) = got
    assert (liq.side, liq.quantity, liq.price) == (BUY, D("5"), D("21881"))


def test_without_a_rule_nothing_is_liquidated() -> None:
    h, got = _long_5_at_20000(None)
    h.bar(19000.0, 19500.0, 18100.5, 18500.0)
    h.bar(15000.0, 15000.0, 14000.0, 14500.0)
    assert got == [] and h.venue.liquidations == []
    assert h.venue.position(next(iter(h.venue.instruments))) == D("5")
    assert h.venue.balance() == D("9950")
