"""Replay: for random legal event sequences, the order rebuilt from the store equals the
original, and every event payload decodes to an equal event with exact decimals."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import BTC, S1

from sapphire.domain import (
    ClientOrderId,
    InvalidOrderTransition,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderSubmitted,
    OrderUpdated,
    TradeId,
    VenueOrderId,
)
from sapphire.store import Store
from sapphire.store.codec import decode_event, encode_event

decimals = st.decimals(
    min_value=Decimal("1E-12"), max_value=Decimal("1E+12"), places=None, allow_nan=False
).filter(lambda d: d > 0 and len(d.as_tuple().digits) <= 28)


def _candidates(order: Order, data: st.DataObject, ts: int) -> OrderEvent:
    """One random event for `order` (legal or not: illegal ones are skipped by the caller)."""
    coid = order.client_order_id
    kind = data.draw(st.sampled_from(["submit", "accept", "reject", "cancel_req",
        "cancel_rej", "canceled", "expired", "update", "fill"]))  # fmt: skip
    if kind == "submit":
        return OrderSubmitted(ts_ns=ts, client_order_id=coid)
    if kind == "accept":
        return OrderAccepted(ts_ns=ts, client_order_id=coid, venue_order_id=VenueOrderId("v1"))
    if kind == "reject":
        return OrderRejected(ts_ns=ts, client_order_id=coid, reason="no margin")
    if kind == "cancel_req":
        return OrderCancelRequested(ts_ns=ts, client_order_id=coid)
    if kind == "cancel_rej":
        return OrderCancelRejected(ts_ns=ts, client_order_id=coid, reason="too late")
    if kind == "canceled":
        return OrderCanceled(ts_ns=ts, client_order_id=coid)
    if kind == "expired":
        return OrderExpired(ts_ns=ts, client_order_id=coid)
    if kind == "update":
        grow = data.draw(decimals)
        return OrderUpdated(ts_ns=ts, client_order_id=coid, quantity=order.quantity + grow,
                            price=data.draw(decimals))  # fmt: skip
    leaves = order.quantity - order.filled_qty
    qty = leaves if data.draw(st.booleans()) or leaves <= 0 else min(leaves, data.draw(decimals))
    return OrderFilled(
        ts_ns=ts, client_order_id=coid, trade_id=TradeId(f"t{ts}"),
        last_qty=qty if qty > 0 else Decimal(1), last_px=data.draw(decimals),
        liquidity=data.draw(st.sampled_from(list(LiquiditySide))), fee=-data.draw(decimals),
        fee_currency="USDT",
    )  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_replayed_orders_equal_the_originals(tmp_path_factory: object, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("replay") / "r.db"  # type: ignore[attr-defined]
    with Store(f"sqlite:///{path}") as store:
        store.start_run("run", "backtest", 0)
        orders = []
        for n in range(data.draw(st.integers(1, 3))):
            order = Order.limit(ClientOrderId(f"run-{S1}-{n}"), S1, BTC, OrderSide.BUY,
                                data.draw(decimals), data.draw(decimals), ts_init=1)  # fmt: skip
            store.record_order_event(order, order.init_event)
            for step in range(data.draw(st.integers(0, 12))):
                event = _candidates(order, data, ts=10 + step)
                try:
                    order.apply(event)
                except InvalidOrderTransition:
                    continue
                store.record_order_event(order, event)
            orders.append(order)
        for order in orders:
            assert store.order(order.client_order_id) == order
        assert store.open_orders("run") == [o for o in orders if o.is_open]


@settings(max_examples=50, deadline=None)
@given(qty=decimals, px=decimals, fee=st.decimals(places=30, min_value=-1, max_value=1))
def test_event_payloads_decode_exactly(qty: Decimal, px: Decimal, fee: Decimal) -> None:
    fill = OrderFilled(
        ts_ns=5, client_order_id=ClientOrderId("c"), trade_id=TradeId("t"), last_qty=qty,
        last_px=px, liquidity=LiquiditySide.MAKER, fee=fee, fee_currency="USDT",
        venue_order_id=VenueOrderId("v"),
    )  # fmt: skip
    back = decode_event("OrderFilled", encode_event(fill))
    assert back == fill
    assert isinstance(back, OrderFilled)
    for name in ("last_qty", "last_px", "fee"):
        assert getattr(back, name).as_tuple() == getattr(fill, name).as_tuple()
