"""Every order in the audit log: `Store.record_order_event` appends the submission,
denial, rejection, amendment, cancel, expiry and fills of an order, in the transaction
that stores the event (rolled back with it, once per event however often it is retried)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from sapphire.compliance.audit import AuditLog
from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    OrderUpdated,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.events import OrderDenied, OrderExpired, OrderRejected
from sapphire.store import Store

BTC = InstrumentId("BTCUSDT", "BYBIT")
S1 = StrategyId("sma-1")
RUN = "run-a"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'orders.db'}") as s:
        s.start_run(RUN, "paper", 1, strategy_ids=[S1])
        yield s


class Node:
    """Applies events to orders and records them, as a session journal does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ts = 1_000

    def order(self, n: int, price: str | None = "100.10") -> Order:
        self.ts += 1
        coid = ClientOrderId(f"{RUN}-{S1}-{n}")
        if price is None:
            order = Order.market(coid, S1, BTC, OrderSide.BUY, Decimal("0.010"), ts_init=self.ts)
        else:
            order = Order.limit(
                coid, S1, BTC, OrderSide.SELL, Decimal("0.010"), Decimal(price), ts_init=self.ts
            )
        self.store.record_order_event(order, order.init_event, run_id=RUN)
        return order

    def apply(self, order: Order, cls: type[OrderEvent], **fields: object) -> OrderEvent:
        self.ts += 1
        event = cls(ts_ns=self.ts, client_order_id=order.client_order_id, **fields)
        order.apply(event)
        self.store.record_order_event(order, event, run_id=RUN)
        return event

    def accept(self, order: Order) -> None:
        self.apply(order, OrderSubmitted)
        self.apply(order, OrderAccepted, venue_order_id=VenueOrderId(f"v{order.client_order_id}"))

    def fill(self, order: Order, qty: str, px: str, trade: str) -> OrderEvent:
        return self.apply(
            order, OrderFilled, trade_id=TradeId(trade), last_qty=Decimal(qty),
            last_px=Decimal(px), liquidity=LiquiditySide.MAKER, fee=Decimal("-0.00001"),
            fee_currency="USDT",
        )  # fmt: skip


def test_each_order_event_that_matters_is_audited(store: Store) -> None:
    node = Node(store)
    filled = node.order(1)
    node.accept(filled)
    node.apply(filled, OrderUpdated, price=Decimal("100.20"))
    node.fill(filled, "0.004", "100.20", "t1")
    node.fill(filled, "0.006", "100.20", "t2")
    canceled = node.order(2)
    node.accept(canceled)
    node.apply(canceled, OrderCancelRequested)
    node.apply(canceled, OrderCanceled)
    rejected = node.order(3)
    node.apply(rejected, OrderSubmitted)
    node.apply(rejected, OrderRejected, reason="insufficient margin")
    denied = node.order(4, price=None)
    node.apply(denied, OrderDenied, reason="max_notional_per_order")
    expired = node.order(5)
    node.accept(expired)
    node.apply(expired, OrderExpired)

    records = AuditLog(store).records(100)
    assert [(r.target[-1], r.action) for r in records] == [
        ("1", "order.submitted"), ("1", "order.amended"), ("1", "order.filled"),
        ("1", "order.filled"), ("2", "order.submitted"), ("2", "order.canceled"),
        ("3", "order.submitted"), ("3", "order.rejected"), ("4", "order.denied"),
        ("5", "order.submitted"), ("5", "order.expired"),
    ]  # fmt: skip
    assert {r.actor for r in records} == {f"{RUN}/{S1}"}
    assert records[0].target == f"{RUN}-{S1}-1" and records[0].ip is None
    submitted = records[0].detail
    assert submitted["quantity"] == "0.010" and submitted["price"] == "100.10"
    assert submitted["side"] == "SELL" and submitted["type"] == "LIMIT"
    assert submitted["run_id"] == RUN and submitted["instrument_id"] == str(BTC)
    assert records[1].detail["price"] == "100.20"
    fill = records[2].detail
    assert (fill["trade_id"], fill["last_qty"], fill["last_px"]) == ("t1", "0.004", "100.20")
    assert fill["fee"] == "-0.00001" and fill["liquidity"] == "MAKER"
    assert records[7].detail["reason"] == "insufficient margin"
    assert records[8].detail["reason"] == "max_notional_per_order"
    assert records[8].detail["type"] == "MARKET" and records[8].detail["price"] is None
    assert AuditLog(store).verify().ok


def test_the_audit_record_rolls_back_with_the_order_event(store: Store) -> None:
    node = Node(store)
    order = node.order(1)
    with pytest.raises(RuntimeError), store.atomic():
        node.apply(order, OrderSubmitted)
        raise RuntimeError("crash before commit")
    assert store.order_events(order.client_order_id)[-1].__class__.__name__ == "OrderInitialized"
    assert AuditLog(store).records() == []


def test_a_retried_event_is_audited_once(store: Store) -> None:
    node = Node(store)
    order = node.order(1)
    node.apply(order, OrderSubmitted)
    store.record_order_event(order, order.events[-1], run_id=RUN)  # after a crash, again
    assert [r.action for r in AuditLog(store).records()] == ["order.submitted"]


def test_events_recorded_together_are_audited_in_order(store: Store) -> None:
    node = Node(store)
    order = node.order(1, price=None)
    node.ts += 1
    for event in (
        OrderSubmitted(ts_ns=node.ts, client_order_id=order.client_order_id),
        OrderAccepted(ts_ns=node.ts, client_order_id=order.client_order_id,
                      venue_order_id=VenueOrderId("v1")),
        OrderFilled(ts_ns=node.ts, client_order_id=order.client_order_id,
                    trade_id=TradeId("t"), last_qty=Decimal("0.010"), last_px=Decimal("1"),
                    liquidity=LiquiditySide.TAKER, fee=Decimal(0), fee_currency="USDT"),
    ):  # fmt: skip
        order.apply(event)
    store.record_order_event(order, order.events[-1], run_id=RUN)  # one call stores all three
    assert [r.action for r in AuditLog(store).records()] == ["order.submitted", "order.filled"]


def test_the_longest_run_and_strategy_ids_still_audit(store: Store) -> None:
    run, strategy = "r" * 100, StrategyId("s" * 100)  # the store's longest ids
    store.start_run(run, "paper", 1, strategy_ids=[strategy])
    order = Order.market(ClientOrderId("c-1"), strategy, BTC, OrderSide.BUY, Decimal(1), ts_init=5)
    store.record_order_event(order, order.init_event, run_id=run)
    event = OrderSubmitted(ts_ns=6, client_order_id=order.client_order_id)
    order.apply(event)
    store.record_order_event(order, event, run_id=run)
    (record,) = AuditLog(store).records()
    assert record.actor == f"{run}/{strategy}" and len(record.actor) == 201
