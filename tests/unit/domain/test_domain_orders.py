"""Order construction rules and hand-worked state-machine examples."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest
from order_helpers import COID, IID, SID, drive, event, limit_order

from sapphire.domain import (
    ClientOrderId,
    ContingencyType,
    InvalidOrderTransition,
    Order,
    OrderInitialized,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TrailingOffsetType,
    VenueOrderId,
)

D = Decimal
S = OrderStatus


# -- construction ------------------------------------------------------------------------


def test_constructors_per_type() -> None:
    m = Order.market(COID, SID, IID, OrderSide.SELL, D("1"), ts_init=5, reduce_only=True)
    assert (m.type, m.price, m.trigger_price, m.reduce_only) == (OrderType.MARKET, None, None, True)
    lim = Order.limit(COID, SID, IID, OrderSide.BUY, D("1"), D("99.5"), ts_init=5, post_only=True)
    assert (lim.type, lim.price, lim.post_only) == (OrderType.LIMIT, D("99.5"), True)
    sm = Order.stop_market(COID, SID, IID, OrderSide.SELL, D("1"), D("90"), ts_init=5)
    assert (sm.type, sm.trigger_price, sm.price) == (OrderType.STOP_MARKET, D("90"), None)
    sl = Order.stop_limit(COID, SID, IID, OrderSide.SELL, D("1"), D("89"), D("90"), ts_init=5)
    assert (sl.type, sl.price, sl.trigger_price) == (OrderType.STOP_LIMIT, D("89"), D("90"))
    ts = Order.trailing_stop(
        COID, SID, IID, OrderSide.SELL, D("1"), D("1.5"), ts_init=5,
        trailing_offset_type=TrailingOffsetType.PERCENT,
    )  # fmt: skip
    assert (ts.type, ts.trailing_offset, ts.trailing_offset_type) == (
        OrderType.TRAILING_STOP,
        D("1.5"),
        TrailingOffsetType.PERCENT,
    )
    for order in (m, lim, sm, sl, ts):
        assert order.status is S.INITIALIZED
        assert order.filled_qty == 0 and order.avg_px is None and order.venue_order_id is None
        assert order.leaves_qty == order.quantity
        assert order.ts_init == order.ts_last == 5
        assert len(order.events) == 1 and isinstance(order.events[0], OrderInitialized)
        assert not order.is_open and not order.is_terminal


def test_trailing_offset_type_defaults_to_price() -> None:
    order = Order(COID, SID, IID, OrderSide.SELL, OrderType.TRAILING_STOP, D(1), ts_init=0,
                  trailing_offset=D(50))  # fmt: skip
    assert order.trailing_offset_type is TrailingOffsetType.PRICE


def test_float_and_str_inputs_become_decimals() -> None:
    order = Order(COID, SID, IID, OrderSide.BUY, OrderType.LIMIT, 0.1, price="100.5", ts_init=0)  # type: ignore[arg-type]
    assert order.quantity == D("0.1") and isinstance(order.quantity, Decimal)
    assert order.price == D("100.5")


@pytest.mark.parametrize(
    ("type_", "kw", "match"),
    [
        (OrderType.LIMIT, {}, "LIMIT order needs a price"),
        (OrderType.STOP_LIMIT, {"trigger_price": D(1)}, "STOP_LIMIT order needs a price"),
        (OrderType.STOP_LIMIT, {"price": D(1)}, "STOP_LIMIT order needs a trigger_price"),
        (OrderType.STOP_MARKET, {}, "STOP_MARKET order needs a trigger_price"),
        (OrderType.TRAILING_STOP, {}, "TRAILING_STOP order needs a trailing_offset"),
        (OrderType.MARKET, {"price": D(1)}, "MARKET order takes no price"),
        (OrderType.STOP_MARKET, {"trigger_price": D(1), "price": D(1)}, "takes no price"),
        (OrderType.MARKET, {"trigger_price": D(1)}, "MARKET order takes no trigger_price"),
        (OrderType.LIMIT, {"price": D(1), "trigger_price": D(1)}, "takes no trigger_price"),
        (OrderType.LIMIT, {"price": D(1), "trailing_offset": D(1)}, "only TRAILING_STOP"),
        (
            OrderType.TRAILING_STOP,
            {"trailing_offset": D(100), "trailing_offset_type": TrailingOffsetType.PERCENT},
            "PERCENT trailing_offset must be < 100",
        ),
        (OrderType.MARKET, {"post_only": True}, "post_only is only for LIMIT"),
        (
            OrderType.LIMIT,
            {"price": D(1), "post_only": True, "time_in_force": TimeInForce.IOC},
            "post_only cannot be IOC",
        ),
        (OrderType.MARKET, {"time_in_force": TimeInForce.GTD}, "GTD order needs expire_time_ns"),
        (OrderType.MARKET, {"expire_time_ns": 5}, "expire_time_ns is only for GTD"),
        (OrderType.LIMIT, {"price": D(0)}, "price must be > 0"),
        (OrderType.LIMIT, {"price": D("NaN")}, "price must be finite"),
        (OrderType.MARKET, {"reduce_only": 1}, "reduce_only must be a bool"),
        (
            OrderType.MARKET,
            {"linked_order_ids": (ClientOrderId("b"),)},
            "need a contingency_type",
        ),
        (OrderType.MARKET, {"contingency_type": ContingencyType.OCO}, "needs linked_order_ids"),
        (
            OrderType.MARKET,
            {"contingency_type": ContingencyType.OCO, "linked_order_ids": (COID,)},
            "linked to itself",
        ),
        (
            OrderType.MARKET,
            {
                "contingency_type": ContingencyType.OCO,
                "linked_order_ids": (ClientOrderId("b"), ClientOrderId("b")),
            },
            "duplicate linked_order_ids",
        ),
        (
            OrderType.MARKET,
            {"linked_order_ids": ("b",), "contingency_type": "OCO"},
            "ClientOrderId",
        ),
    ],
)
def test_invalid_specifications_are_refused(
    type_: OrderType, kw: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Order(COID, SID, IID, OrderSide.BUY, type_, D(1), ts_init=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("qty", [D(0), D(-1), "x", None])
def test_bad_quantities_are_refused(qty: object) -> None:
    with pytest.raises(ValueError, match="quantity"):
        Order(COID, SID, IID, OrderSide.BUY, OrderType.MARKET, qty, ts_init=0)  # type: ignore[arg-type]


def test_bad_ids_and_times_are_refused() -> None:
    with pytest.raises(ValueError, match="client_order_id"):
        Order("x", SID, IID, OrderSide.BUY, OrderType.MARKET, D(1), ts_init=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy_id"):
        Order(COID, "s", IID, OrderSide.BUY, OrderType.MARKET, D(1), ts_init=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="side"):
        Order(COID, SID, IID, "LONG", OrderType.MARKET, D(1), ts_init=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ts_ns"):
        Order(COID, SID, IID, OrderSide.BUY, OrderType.MARKET, D(1), ts_init=-1)
    with pytest.raises(ValueError, match="ts_ns"):
        Order(COID, SID, IID, OrderSide.BUY, OrderType.MARKET, D(1), ts_init=1.5)  # type: ignore[arg-type]


def test_gtd_and_bracket_children() -> None:
    gtd = limit_order(time_in_force=TimeInForce.GTD, expire_time_ns=99)
    assert gtd.expire_time_ns == 99
    child = Order.stop_market(
        ClientOrderId("sl"), SID, IID, OrderSide.SELL, D(1), D(90), ts_init=0,
        contingency_type=ContingencyType.OCO, parent_order_id=COID,
        linked_order_ids=[ClientOrderId("tp")], reduce_only=True,
    )  # fmt: skip
    assert child.parent_order_id == COID
    assert child.linked_order_ids == (ClientOrderId("tp"),)


# -- hand-worked lifecycles ------------------------------------------------------------------


def test_happy_path_with_partial_fills() -> None:
    order = drive(limit_order(qty="3"), "submit")
    assert order.status is S.SUBMITTED and order.is_open and order.is_inflight
    order.apply(event("accept", ts=20, venue="abc"))
    assert order.status is S.ACCEPTED and order.venue_order_id == VenueOrderId("abc")
    assert not order.is_inflight
    order.apply(event("fill", ts=30, qty="1", px="100"))
    assert order.status is S.PARTIALLY_FILLED
    assert (order.filled_qty, order.leaves_qty, order.avg_px) == (D(1), D(2), D(100))
    order.apply(event("fill", ts=40, qty="2", px="101.5"))
    assert order.status is S.FILLED and order.is_terminal and not order.is_open
    assert order.filled_qty == D(3) and order.leaves_qty == 0
    assert order.avg_px == D("101")  # (100 + 203) / 3
    assert order.ts_last == 40
    assert [type(e).__name__ for e in order.events] == [
        "OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled",
    ]  # fmt: skip


def test_avg_px_is_the_exact_weighted_mean() -> None:
    order = drive(limit_order(qty="3"), "submit", "accept")
    order.apply(event("fill", qty="1", px="1"))
    order.apply(event("fill", qty="1", px="1"))
    order.apply(event("fill", qty="1", px="2"))
    assert order.avg_px == D(4) / D(3)
    assert order.avg_px == D("1.333333333333333333333333333")


def test_avg_px_keeps_tiny_and_huge_fills_exact() -> None:
    order = drive(limit_order(qty="1000000000.000000001"), "submit", "accept")
    order.apply(event("fill", qty="1000000000", px="0.000000000000000001"))
    order.apply(event("fill", qty="0.000000001", px="999999999999999999"))
    # sum(q*p) = 1e-9 + 999999999.999999999 = 1000000000 exactly
    assert order.status is S.FILLED
    assert order.avg_px == D(1000000000) / D("1000000000.000000001")


def test_denial_and_rejection() -> None:
    denied = drive(limit_order(), "deny")
    assert denied.status is S.REJECTED and denied.is_terminal and denied.leaves_qty == 0
    rejected = drive(limit_order(), "submit", "reject")
    assert rejected.status is S.REJECTED


def test_cancel_flow_and_cancel_rejected_returns_to_prior() -> None:
    order = drive(limit_order(qty="5"), "submit", "accept", "cancel_request")
    assert order.status is S.PENDING_CANCEL and order.is_open and order.is_inflight
    order.apply(event("cancel_rejected"))
    assert order.status is S.ACCEPTED
    order.apply(event("fill", qty="2"))
    order.apply(event("cancel_request"))
    order.apply(event("fill", qty="1"))  # a fill racing the cancel
    assert order.status is S.PENDING_CANCEL and order.filled_qty == D(3)
    assert order.leaves_qty == D(2)
    order.apply(event("cancel_rejected"))
    assert order.status is S.PARTIALLY_FILLED
    order.apply(event("cancel_request"))
    order.apply(event("canceled"))
    assert order.status is S.CANCELED and order.leaves_qty == 0 and order.filled_qty == D(3)


def test_fill_completing_a_pending_cancel_makes_it_filled() -> None:
    order = drive(limit_order(qty="2"), "submit", "accept", "cancel_request")
    order.apply(event("fill", qty="2"))
    assert order.status is S.FILLED
    with pytest.raises(InvalidOrderTransition, match="terminal"):
        order.apply(event("canceled"))


def test_cancel_requested_before_acceptance() -> None:
    order = drive(limit_order(), "submit", "cancel_request")
    with pytest.raises(InvalidOrderTransition):
        order.apply(event("fill"))  # not accepted yet
    order.apply(event("accept", venue="late"))
    assert order.status is S.PENDING_CANCEL and order.venue_order_id == "late"
    order.apply(event("cancel_rejected"))
    assert order.status is S.ACCEPTED
    other = drive(limit_order(), "submit", "cancel_request", "reject")
    assert other.status is S.REJECTED
    third = drive(limit_order(), "submit", "cancel_request", "canceled")
    assert third.status is S.CANCELED


def test_unsolicited_cancel_and_expiry() -> None:
    assert drive(limit_order(), "submit", "accept", "canceled").status is S.CANCELED
    assert drive(limit_order(), "submit", "accept", "expire").status is S.EXPIRED
    order = drive(limit_order(qty="2"), "submit", "accept")
    order.apply(event("fill", qty="1"))
    order.apply(event("expire"))
    assert order.status is S.EXPIRED and order.filled_qty == 1 and order.leaves_qty == 0


def test_amendments() -> None:
    order = drive(limit_order(qty="5", price="100"), "submit", "accept")
    order.apply(event("update", quantity=D(4), price=D("99.5")))
    assert (order.quantity, order.price, order.status) == (D(4), D("99.5"), S.ACCEPTED)
    order.apply(event("fill", qty="3"))
    with pytest.raises(InvalidOrderTransition, match="below filled_qty 3"):
        order.apply(event("update", quantity=D(2)))
    with pytest.raises(InvalidOrderTransition, match="no trigger_price"):
        order.apply(event("update", trigger_price=D(1)))
    order.apply(event("update", quantity=D(3)))
    assert order.status is S.FILLED and order.quantity == D(3)
    stop = Order.stop_market(COID, SID, IID, OrderSide.SELL, D(1), D(90), ts_init=0)
    drive(stop, "submit", "accept")
    with pytest.raises(InvalidOrderTransition, match="no price"):
        stop.apply(event("update", price=D(1)))
    stop.apply(event("update", trigger_price=D(91)))
    assert stop.trigger_price == D(91)
    with pytest.raises(ValueError, match="changes nothing"):
        event("update")


def test_overfill_duplicates_and_mismatches_are_refused_without_change() -> None:
    order = drive(limit_order(qty="2"), "submit", "accept")
    order.apply(event("fill", qty="1.5", trade_id="T-a", venue="V1"))
    before = Order.from_events(order.events)
    with pytest.raises(InvalidOrderTransition, match="overfill"):
        order.apply(event("fill", qty="0.6"))
    with pytest.raises(InvalidOrderTransition, match="already applied"):
        order.apply(event("fill", qty="0.1", trade_id="T-a"))
    with pytest.raises(InvalidOrderTransition, match="venue order"):
        order.apply(event("fill", qty="0.1", venue=VenueOrderId("V2")))
    with pytest.raises(ValueError, match="applied to order"):
        order.apply(event("fill", qty="0.1", coid=ClientOrderId("other")))
    with pytest.raises(ValueError, match="order event"):
        order.apply("fill")  # type: ignore[arg-type]
    assert order == before


def test_invalid_transition_carries_its_context() -> None:
    order = limit_order()
    bad = event("fill")
    with pytest.raises(InvalidOrderTransition) as info:
        order.apply(bad)
    err = info.value
    assert (err.client_order_id, err.status, err.event) == (COID, S.INITIALIZED, bad)
    assert str(err) == f"order {COID} in status INITIALIZED cannot apply OrderFilled"
    assert isinstance(err, ValueError)


def test_initialized_cannot_be_applied() -> None:
    order = limit_order()
    with pytest.raises(InvalidOrderTransition, match="initialized once"):
        order.apply(order.init_event)


def test_replay_rebuilds_an_equal_order() -> None:
    order = drive(limit_order(qty="4"), "submit", "accept")
    order.apply(event("fill", qty="1", px="100"))
    order.apply(event("update", price=D("101")))
    order.apply(event("cancel_request"))
    order.apply(event("fill", qty="2", px="102"))
    order.apply(event("canceled"))
    rebuilt = Order.from_events(order.events)
    assert rebuilt == order
    assert rebuilt.avg_px == order.avg_px and rebuilt.status is S.CANCELED
    assert rebuilt.price == D("101")
    assert rebuilt != limit_order(qty="4")
    with pytest.raises(ValueError, match="no events"):
        Order.from_events([])
    with pytest.raises(ValueError, match="OrderInitialized"):
        Order.from_events(order.events[1:])


def test_events_list_is_a_copy() -> None:
    order = limit_order()
    order.events.append(event("submit"))
    assert len(order.events) == 1
    assert "LIMIT @ 100" in repr(order)


def test_orders_pickle_and_refuse_direct_mutation() -> None:
    order = drive(limit_order(qty="2"), "submit", "accept", "fill")
    restored = pickle.loads(pickle.dumps(order))
    assert restored == order and restored.status is S.PARTIALLY_FILLED
    restored.apply(event("fill", ts=50))
    assert restored.status is S.FILLED and order.status is S.PARTIALLY_FILLED
    with pytest.raises(AttributeError):
        order.status = S.FILLED  # type: ignore[misc]
    with pytest.raises(AttributeError):
        order.filled_qty = D(0)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        order.extra = 1  # type: ignore[attr-defined]
