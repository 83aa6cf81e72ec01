"""`OrdersRepo`: `Store`'s orders, their event histories and their fills.

An order is stored as its events (appended, never rewritten) plus a row of its latest
state; reading it back replays the events (`Order.from_events`) and checks the replay
against the row, so damage to either is caught rather than traded on.

Every order's submission, denial, rejection, amendment, cancel, expiry and fill is also
appended to the audit log (`AUDITED_EVENTS`), in the transaction that stores the event:
actor `<run_id>/<strategy_id>`, target the client order id.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sapphire.domain.enums import LiquiditySide, OrderSide
from sapphire.domain.events import (
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
)
from sapphire.domain.identifiers import (
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.orders import Order
from sapphire.store.audit_repo import AuditRepo, append_audit
from sapphire.store.base import StoreIntegrityError, id_text, upsert
from sapphire.store.codec import decode_event, encode_event
from sapphire.store.models import FillRow, OrderEventRow, OrderRow
from sapphire.store.records import FillRecord

__all__ = ["AUDITED_EVENTS", "OrdersRepo"]

#: the order events that go to the audit log, and their audit actions (an acceptance or a
#: cancel request is the venue's or the node's bookkeeping; what it led to is audited)
AUDITED_EVENTS: dict[type[OrderEvent], str] = {
    OrderSubmitted: "order.submitted",
    OrderDenied: "order.denied",
    OrderRejected: "order.rejected",
    OrderUpdated: "order.amended",
    OrderCanceled: "order.canceled",
    OrderExpired: "order.expired",
    OrderFilled: "order.filled",
}


class OrdersRepo(AuditRepo):
    """The orders, order_events and fills tables (and the audit records of the orders)."""

    def record_order_event(
        self, order: Order, event: OrderEvent, *, run_id: str | None = None
    ) -> None:
        """Record `event` (already applied: `order.apply(event)`) and the order's new state.

        One transaction: the order row is upserted and every event of `order.events` that is
        not stored yet is appended, with a fill row for each `OrderFilled`, so that the
        store then holds exactly the order's history and state (never a gap). Recording an
        event that is already stored adds nothing for it (safe to retry after a crash). A
        stored history that differs from `order.events` raises StoreIntegrityError.
        """
        run = self._run_of(run_id)
        if not isinstance(order, Order):
            raise ValueError(f"record_order_event takes an Order, got {order!r}")
        if not isinstance(event, OrderEvent):
            raise ValueError(f"record_order_event takes an order event, got {event!r}")
        history = order.events
        if not any(item.event_id == event.event_id and item == event for item in history):
            raise ValueError(
                f"{type(event).__name__} {event.event_id} is not in the history of order "
                f"{order.client_order_id}: apply it to the order before recording it"
            )
        coid = id_text(order.client_order_id, "client_order_id", 200)
        with self._tx() as conn:
            stored = conn.execute(
                sa.select(OrderEventRow.seq, OrderEventRow.event_id, OrderRow.run_id)
                .join(OrderRow, OrderRow.client_order_id == OrderEventRow.client_order_id)
                .where(OrderEventRow.client_order_id == coid)
                .order_by(OrderEventRow.seq)
            ).all()
            if stored and stored[0].run_id != run:
                raise StoreIntegrityError(
                    f"order {coid} belongs to run {stored[0].run_id!r}, not {run!r}"
                )
            if len(stored) > len(history):
                raise StoreIntegrityError(
                    f"order {coid} has {len(stored)} stored events but only {len(history)} "
                    "in memory: rebuild it from the store (Store.order) before going on"
                )
            for row in stored:
                if row.event_id != history[row.seq].event_id:
                    raise StoreIntegrityError(
                        f"order {coid}: stored event {row.seq} is {row.event_id}, "
                        f"in memory it is {history[row.seq].event_id}"
                    )
            upsert(conn, OrderRow.__table__, _order_values(run, order), ["client_order_id"])  # type: ignore[arg-type]
            for seq in range(len(stored), len(history)):
                self._insert_event(conn, run, order, seq, history[seq])

    def record_fill(self, order: Order, fill: OrderFilled, *, run_id: str | None = None) -> None:
        """`record_order_event` for a fill: the fill row, its event and the order's state in
        one transaction."""
        if not isinstance(fill, OrderFilled):
            raise ValueError(f"record_fill takes an OrderFilled event, got {fill!r}")
        self.record_order_event(order, fill, run_id=run_id)

    def _insert_event(
        self, conn: Connection, run: str, order: Order, seq: int, event: OrderEvent
    ) -> None:
        action = AUDITED_EVENTS.get(type(event))
        if action is not None:
            append_audit(
                conn, f"{run}/{order.strategy_id}", action, str(order.client_order_id),
                _audit_detail(run, order, event),
            )  # fmt: skip
        conn.execute(
            sa.insert(OrderEventRow).values(
                client_order_id=str(order.client_order_id),
                run_id=run,
                seq=seq,
                event_type=type(event).__name__,
                event_id=id_text(event.event_id, "event_id", 100),
                ts_ns=event.ts_ns,
                payload=encode_event(event),
            )
        )
        if isinstance(event, OrderFilled):
            conn.execute(
                sa.insert(FillRow).values(
                    run_id=run,
                    client_order_id=str(order.client_order_id),
                    venue_order_id=(
                        None if event.venue_order_id is None else str(event.venue_order_id)
                    )
                    or (None if order.venue_order_id is None else str(order.venue_order_id)),
                    trade_id=id_text(event.trade_id, "trade_id", 200),
                    strategy_id=str(order.strategy_id),
                    instrument_id=str(order.instrument_id),
                    side=order.side.value,
                    last_qty=event.last_qty,
                    last_px=event.last_px,
                    fee=event.fee,
                    fee_currency=id_text(event.fee_currency, "fee_currency", 30),
                    liquidity=event.liquidity.value,
                    ts_ns=event.ts_ns,
                )
            )

    def order_events(self, client_order_id: ClientOrderId | str) -> list[OrderEvent]:
        """The stored events of an order, oldest first (empty if unknown)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(OrderEventRow.event_type, OrderEventRow.payload)
                .where(OrderEventRow.client_order_id == str(client_order_id))
                .order_by(OrderEventRow.seq)
            ).all()
        events = []
        for row in rows:
            event = decode_event(row.event_type, row.payload)
            assert isinstance(event, OrderEvent)
            events.append(event)
        return events

    def order(self, client_order_id: ClientOrderId | str) -> Order:
        """The order rebuilt by replaying its stored events (ValueError if unknown)."""
        query = sa.select(OrderRow).where(OrderRow.client_order_id == str(client_order_id))
        orders = self._rebuild(query)
        if not orders:
            raise ValueError(f"no order {str(client_order_id)!r} in the store")
        return orders[0]

    def orders(
        self,
        run_id: str,
        *,
        strategy_id: StrategyId | str | None = None,
        open_only: bool = False,
    ) -> list[Order]:
        """The run's orders (of one strategy, only open ones...), rebuilt from their events,
        oldest first."""
        query = sa.select(OrderRow).where(OrderRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(OrderRow.strategy_id == str(strategy_id))
        if open_only:
            query = query.where(OrderRow.is_open.is_(True))
        return self._rebuild(query.order_by(OrderRow.ts_init, OrderRow.client_order_id))

    def open_orders(self, run_id: str, strategy_id: StrategyId | str | None = None) -> list[Order]:
        """The run's open orders (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL),
        rebuilt from their events: what a restarted node reconciles with the venue."""
        return self.orders(run_id, strategy_id=strategy_id, open_only=True)

    def _rebuild(self, query: sa.Select[Any]) -> list[Order]:
        # an order's row and its events are read in two statements: a node committing
        # between them (another process) leaves them a step apart, so a disagreement is
        # read again before it is called damage
        for attempt in range(3):
            try:
                return self._rebuild_once(query)
            except StoreIntegrityError:
                if attempt == 2 or getattr(self._local, "conn", None) is not None:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _rebuild_once(self, query: sa.Select[Any]) -> list[Order]:
        with self._read() as conn:
            rows = conn.execute(query).all()
            ids = [row.client_order_id for row in rows]
            events: dict[str, list[OrderEvent]] = {i: [] for i in ids}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for ev in conn.execute(
                    sa.select(
                        OrderEventRow.client_order_id,
                        OrderEventRow.event_type,
                        OrderEventRow.payload,
                    )
                    .where(OrderEventRow.client_order_id.in_(chunk))
                    .order_by(OrderEventRow.client_order_id, OrderEventRow.seq)
                ):
                    decoded = decode_event(ev.event_type, ev.payload)
                    assert isinstance(decoded, OrderEvent)
                    events[ev.client_order_id].append(decoded)
        orders = []
        for row in rows:
            try:
                order = Order.from_events(events[row.client_order_id])
            except ValueError as exc:
                raise StoreIntegrityError(
                    f"order {row.client_order_id} cannot be rebuilt from its events: {exc}"
                ) from exc
            _check_row(row, order)
            orders.append(order)
        return orders

    def client_order_ids(
        self, run_id: str, strategy_id: StrategyId | str | None = None
    ) -> list[ClientOrderId]:
        """Every client order id of the run (of one strategy), oldest first: a restarted node
        restores its id generators from these (`ClientOrderIdGenerator.restore`)."""
        query = sa.select(OrderRow.client_order_id).where(OrderRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(OrderRow.strategy_id == str(strategy_id))
        with self._read() as conn:
            rows = conn.execute(query.order_by(OrderRow.ts_init, OrderRow.client_order_id))
            return [ClientOrderId(row[0]) for row in rows]

    def fills(
        self,
        run_id: str,
        *,
        strategy_id: StrategyId | str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[FillRecord]:
        """The run's fills by time (of one strategy, in [start_ns, end_ns) if given)."""
        query = sa.select(FillRow).where(FillRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(FillRow.strategy_id == str(strategy_id))
        if start_ns is not None:
            query = query.where(FillRow.ts_ns >= start_ns)
        if end_ns is not None:
            query = query.where(FillRow.ts_ns < end_ns)
        with self._read() as conn:
            rows = conn.execute(query.order_by(FillRow.ts_ns, FillRow.id)).all()
        return [
            FillRecord(
                run_id=row.run_id,
                client_order_id=ClientOrderId(row.client_order_id),
                venue_order_id=None
                if row.venue_order_id is None
                else VenueOrderId(row.venue_order_id),
                trade_id=TradeId(row.trade_id),
                strategy_id=StrategyId(row.strategy_id),
                instrument_id=InstrumentId.parse(row.instrument_id),
                side=OrderSide(row.side),
                last_qty=row.last_qty,
                last_px=row.last_px,
                fee=row.fee,
                fee_currency=row.fee_currency,
                liquidity=LiquiditySide(row.liquidity),
                ts_ns=row.ts_ns,
            )
            for row in rows
        ]


def _order_values(run: str, order: Order) -> dict[str, Any]:
    def opt(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "client_order_id": str(order.client_order_id),
        "run_id": run,
        "strategy_id": id_text(order.strategy_id, "strategy_id", 100),
        "instrument_id": id_text(order.instrument_id, "instrument_id", 200),
        "side": order.side.value,
        "type": order.type.value,
        "quantity": order.quantity,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "trailing_offset": order.trailing_offset,
        "trailing_offset_type": opt(
            None if order.trailing_offset_type is None else order.trailing_offset_type.value
        ),
        "time_in_force": order.time_in_force.value,
        "expire_time_ns": order.expire_time_ns,
        "post_only": order.post_only,
        "reduce_only": order.reduce_only,
        "contingency_type": order.contingency_type.value,
        "parent_order_id": opt(order.parent_order_id),
        "linked_order_ids": [str(i) for i in order.linked_order_ids],
        "status": order.status.value,
        "is_open": order.is_open,
        "filled_qty": order.filled_qty,
        "avg_px": order.avg_px,
        "venue_order_id": opt(order.venue_order_id),
        "ts_init": order.ts_init,
        "ts_last": order.ts_last,
    }


def _audit_detail(run: str, order: Order, event: OrderEvent) -> dict[str, Any]:
    """What the audit record of `event` says: the order's terms on submission, the
    execution on a fill, the reason of a denial or rejection, the amended fields."""

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    detail: dict[str, Any] = {
        "run_id": run,
        "event_id": event.event_id,
        "event_ts_ns": event.ts_ns,
        "instrument_id": str(order.instrument_id),
        "side": order.side.value,
    }
    if isinstance(event, OrderSubmitted | OrderDenied):
        detail.update(
            type=order.type.value, quantity=str(order.quantity), price=text(order.price),
            trigger_price=text(order.trigger_price), time_in_force=order.time_in_force.value,
            reduce_only=order.reduce_only, parent_order_id=text(order.parent_order_id),
        )  # fmt: skip
    if isinstance(event, OrderDenied | OrderRejected):
        detail["reason"] = event.reason
    elif isinstance(event, OrderUpdated):
        detail.update(
            quantity=text(event.quantity), price=text(event.price),
            trigger_price=text(event.trigger_price),
        )  # fmt: skip
    elif isinstance(event, OrderFilled):
        detail.update(
            trade_id=str(event.trade_id), last_qty=str(event.last_qty),
            last_px=str(event.last_px), fee=str(event.fee), fee_currency=event.fee_currency,
            liquidity=event.liquidity.value, venue_order_id=text(event.venue_order_id),
        )  # fmt: skip
    return detail


def _check_row(row: Any, order: Order) -> None:
    """The replayed order must agree with its stored row (else the history is damaged)."""
    expected = _order_values(row.run_id, order)
    for name in ("status", "filled_qty", "avg_px", "quantity", "price", "venue_order_id"):
        stored = getattr(row, name)
        if stored != expected[name]:
            raise StoreIntegrityError(
                f"order {row.client_order_id}: stored {name} is {stored}, "
                f"replaying its events gives {expected[name]}"
            )
