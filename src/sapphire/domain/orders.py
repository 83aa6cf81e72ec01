"""`Order`: one order's specification and its strict state machine.

An order is created INITIALIZED (recording an `OrderInitialized` event that carries the
whole specification) and changes only through `Order.apply(event)`. The legal moves:

==========================  =====================================  ============================
event                       allowed from                           to
==========================  =====================================  ============================
OrderDenied                 INITIALIZED                            REJECTED (risk denial)
OrderSubmitted              INITIALIZED                            SUBMITTED
OrderAccepted               SUBMITTED                              ACCEPTED
OrderRejected               SUBMITTED                              REJECTED
OrderCancelRequested        SUBMITTED, ACCEPTED, PARTIALLY_FILLED  PENDING_CANCEL
OrderCancelRejected         PENDING_CANCEL                         the status before the request
OrderCanceled               PENDING_CANCEL, ACCEPTED,              CANCELED
                            PARTIALLY_FILLED
OrderExpired                ACCEPTED, PARTIALLY_FILLED             EXPIRED
OrderUpdated                ACCEPTED, PARTIALLY_FILLED             unchanged (FILLED if the new
                                                                   quantity equals filled_qty)
OrderFilled                 ACCEPTED, PARTIALLY_FILLED             PARTIALLY_FILLED or FILLED
==========================  =====================================  ============================

While PENDING_CANCEL the venue may still answer what was in flight before the cancel
request: `OrderAccepted`/`OrderRejected` (request sent while SUBMITTED), `OrderFilled`
and `OrderExpired` (while ACCEPTED/PARTIALLY_FILLED). They are judged against the status
before the request: a fill that completes the order makes it FILLED, a partial one keeps
it PENDING_CANCEL (and a later `OrderCancelRejected` returns it to PARTIALLY_FILLED); an
acceptance keeps it PENDING_CANCEL with the venue order id recorded. `OrderCanceled`
straight from ACCEPTED/PARTIALLY_FILLED is a cancel the venue made on its own (an IOC
remainder, a post-only order that would take). A fill needs an accepted order: an
adapter whose venue reports the fill first emits `OrderAccepted` before it.

FILLED, CANCELED, REJECTED and EXPIRED are terminal: every event is refused. Anything
else raises `InvalidOrderTransition` (a ValueError) and leaves the order unchanged, as
do an overfill, a repeated trade id, and an amendment that does not fit the order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Context, Decimal
from typing import Any

from sapphire.domain.enums import (
    ContingencyType,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TrailingOffsetType,
)
from sapphire.domain.events import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderInitialized,
    OrderRejected,
    OrderSubmitted,
    OrderUpdated,
    new_event_id,
)
from sapphire.domain.identifiers import (
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)

__all__ = ["InvalidOrderTransition", "Order"]

_S = OrderStatus
# the members as module constants: reading them off the enum class costs more
_INITIALIZED = OrderStatus.INITIALIZED
_SUBMITTED = OrderStatus.SUBMITTED
_ACCEPTED = OrderStatus.ACCEPTED
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_PENDING_CANCEL = OrderStatus.PENDING_CANCEL
_CANCELED = OrderStatus.CANCELED
_REJECTED = OrderStatus.REJECTED
_EXPIRED = OrderStatus.EXPIRED
_LIVE = frozenset({_ACCEPTED, _PARTIALLY_FILLED})
_TERMINAL = frozenset(s for s in _S if s.is_terminal)
_OPEN = frozenset({_SUBMITTED, _ACCEPTED, _PARTIALLY_FILLED, _PENDING_CANCEL})
_INFLIGHT = frozenset({_SUBMITTED, _PENDING_CANCEL})
_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_TRIGGERED = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
# Sums of qty * px are kept exactly: 28-digit operands give at most 56-digit products.
_EXACT_PREC = 120
_EXACT = Context(prec=_EXACT_PREC)
_ZERO = Decimal(0)


class InvalidOrderTransition(ValueError):
    """`event` cannot be applied to the order `client_order_id` in `status`."""

    def __init__(
        self,
        client_order_id: ClientOrderId,
        status: OrderStatus,
        event: OrderEvent,
        reason: str = "",
    ) -> None:
        self.client_order_id = client_order_id
        self.status = status
        self.event = event
        self.reason = reason
        message = f"order {client_order_id} in status {status} cannot apply {type(event).__name__}"
        super().__init__(f"{message}: {reason}" if reason else message)


class Order:
    """An order and its life so far.

    The specification (`side`, `type`, `time_in_force`, ...) is read-only; `quantity`,
    `price` and `trigger_price` change only through `OrderUpdated`; the status, fills
    and venue id only through `apply`. `events` is the full history, starting with the
    `OrderInitialized` event; `Order.from_events(order.events)` rebuilds an equal order.
    """

    __slots__ = (
        "_avg_px",
        "_events",
        "_fill_notional",
        "_filled_qty",
        "_init",
        "_price",
        "_prior_status",
        "_quantity",
        "_status",
        "_trade_ids",
        "_trigger_price",
        "_ts_last",
        "_venue_order_id",
    )

    def __init__(
        self,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        type: OrderType,
        quantity: Decimal,
        *,
        ts_init: int,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        trailing_offset: Decimal | None = None,
        trailing_offset_type: TrailingOffsetType | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        expire_time_ns: int | None = None,
        post_only: bool = False,
        reduce_only: bool = False,
        contingency_type: ContingencyType = ContingencyType.NONE,
        parent_order_id: ClientOrderId | None = None,
        linked_order_ids: Sequence[ClientOrderId] = (),
        event_id: str | None = None,
    ) -> None:
        init = OrderInitialized(
            ts_ns=ts_init,
            event_id=event_id or new_event_id(),
            client_order_id=client_order_id,
            strategy_id=strategy_id,
            instrument_id=instrument_id,
            side=side,
            type=type,
            quantity=quantity,
            price=price,
            trigger_price=trigger_price,
            trailing_offset=trailing_offset,
            trailing_offset_type=trailing_offset_type,
            time_in_force=time_in_force,
            expire_time_ns=expire_time_ns,
            post_only=post_only,
            reduce_only=reduce_only,
            contingency_type=contingency_type,
            parent_order_id=parent_order_id,
            linked_order_ids=tuple(linked_order_ids),
        )
        self._reset(init)

    def _reset(self, init: OrderInitialized) -> None:
        self._init = init
        self._quantity: Decimal = init.quantity
        self._price: Decimal | None = init.price
        self._trigger_price: Decimal | None = init.trigger_price
        self._status = _INITIALIZED
        self._prior_status: OrderStatus | None = None
        self._filled_qty = _ZERO
        self._fill_notional = _ZERO
        self._avg_px: Decimal | None = None
        self._venue_order_id: VenueOrderId | None = None
        self._ts_last = init.ts_ns
        self._trade_ids: set[TradeId] = set()
        self._events: list[OrderEvent] = [init]

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_init(cls, init: OrderInitialized) -> Order:
        """A fresh INITIALIZED order from its `OrderInitialized` event."""
        if not isinstance(init, OrderInitialized):
            raise ValueError(f"an order starts from an OrderInitialized event, got {init!r}")
        order = cls.__new__(cls)
        order._reset(init)
        return order

    @classmethod
    def from_events(cls, events: Iterable[OrderEvent]) -> Order:
        """Rebuild an order by replaying its events (the first is `OrderInitialized`)."""
        iterator = iter(events)
        first = next(iterator, None)
        if first is None:
            raise ValueError("cannot rebuild an order from no events")
        order = cls.from_init(first)  # type: ignore[arg-type]
        for event in iterator:
            order.apply(event)
        return order

    @classmethod
    def market(
        cls,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        quantity: Decimal,
        *,
        ts_init: int,
        **options: Any,
    ) -> Order:
        """A market order (`options`: time_in_force, reduce_only, contingency...)."""
        return cls(
            client_order_id, strategy_id, instrument_id, side, OrderType.MARKET, quantity,
            ts_init=ts_init, **options,
        )  # fmt: skip

    @classmethod
    def limit(
        cls,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        *,
        ts_init: int,
        **options: Any,
    ) -> Order:
        """A limit order at `price` (`options`: post_only, time_in_force, ...)."""
        return cls(
            client_order_id, strategy_id, instrument_id, side, OrderType.LIMIT, quantity,
            ts_init=ts_init, price=price, **options,
        )  # fmt: skip

    @classmethod
    def stop_market(
        cls,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        quantity: Decimal,
        trigger_price: Decimal,
        *,
        ts_init: int,
        **options: Any,
    ) -> Order:
        """A stop order that sends a market order once `trigger_price` trades."""
        return cls(
            client_order_id, strategy_id, instrument_id, side, OrderType.STOP_MARKET, quantity,
            ts_init=ts_init, trigger_price=trigger_price, **options,
        )  # fmt: skip

    @classmethod
    def stop_limit(
        cls,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        trigger_price: Decimal,
        *,
        ts_init: int,
        **options: Any,
    ) -> Order:
        """A stop order that places a limit order at `price` once `trigger_price` trades."""
        return cls(
            client_order_id, strategy_id, instrument_id, side, OrderType.STOP_LIMIT, quantity,
            ts_init=ts_init, price=price, trigger_price=trigger_price, **options,
        )  # fmt: skip

    @classmethod
    def trailing_stop(
        cls,
        client_order_id: ClientOrderId,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        quantity: Decimal,
        trailing_offset: Decimal,
        *,
        ts_init: int,
        trailing_offset_type: TrailingOffsetType = TrailingOffsetType.PRICE,
        **options: Any,
    ) -> Order:
        """A stop that trails the best price by `trailing_offset` (price units or %)."""
        return cls(
            client_order_id, strategy_id, instrument_id, side, OrderType.TRAILING_STOP,
            quantity, ts_init=ts_init, trailing_offset=trailing_offset,
            trailing_offset_type=trailing_offset_type, **options,
        )  # fmt: skip

    # -- the specification (read-only) ------------------------------------------------

    @property
    def init_event(self) -> OrderInitialized:
        return self._init

    @property
    def client_order_id(self) -> ClientOrderId:
        return self._init.client_order_id

    @property
    def strategy_id(self) -> StrategyId:
        return self._init.strategy_id

    @property
    def instrument_id(self) -> InstrumentId:
        return self._init.instrument_id

    @property
    def side(self) -> OrderSide:
        return self._init.side

    @property
    def type(self) -> OrderType:
        return self._init.type

    @property
    def trailing_offset(self) -> Decimal | None:
        return self._init.trailing_offset

    @property
    def trailing_offset_type(self) -> TrailingOffsetType | None:
        return self._init.trailing_offset_type

    @property
    def time_in_force(self) -> TimeInForce:
        return self._init.time_in_force

    @property
    def expire_time_ns(self) -> int | None:
        return self._init.expire_time_ns

    @property
    def post_only(self) -> bool:
        return self._init.post_only

    @property
    def reduce_only(self) -> bool:
        return self._init.reduce_only

    @property
    def contingency_type(self) -> ContingencyType:
        return self._init.contingency_type

    @property
    def parent_order_id(self) -> ClientOrderId | None:
        return self._init.parent_order_id

    @property
    def linked_order_ids(self) -> tuple[ClientOrderId, ...]:
        return self._init.linked_order_ids

    @property
    def ts_init(self) -> int:
        return self._init.ts_ns

    # -- the state --------------------------------------------------------------------

    @property
    def quantity(self) -> Decimal:
        return self._quantity

    @property
    def price(self) -> Decimal | None:
        return self._price

    @property
    def trigger_price(self) -> Decimal | None:
        return self._trigger_price

    @property
    def status(self) -> OrderStatus:
        return self._status

    @property
    def filled_qty(self) -> Decimal:
        return self._filled_qty

    @property
    def avg_px(self) -> Decimal | None:
        """The quantity-weighted mean fill price (None before the first fill)."""
        return self._avg_px

    @property
    def venue_order_id(self) -> VenueOrderId | None:
        return self._venue_order_id

    @property
    def ts_last(self) -> int:
        """The timestamp of the latest applied event."""
        return self._ts_last

    @property
    def events(self) -> list[OrderEvent]:
        """A copy of the history, oldest first."""
        return list(self._events)

    @property
    def leaves_qty(self) -> Decimal:
        """What can still fill: quantity - filled_qty, and 0 once the order is terminal."""
        return Decimal(0) if self._status.is_terminal else self._quantity - self._filled_qty

    @property
    def is_terminal(self) -> bool:
        return self._status in _TERMINAL

    @property
    def is_open(self) -> bool:
        """Sent and not finished: SUBMITTED, ACCEPTED, PARTIALLY_FILLED or PENDING_CANCEL."""
        return self._status in _OPEN

    @property
    def is_inflight(self) -> bool:
        """Waiting for the venue's answer: SUBMITTED or PENDING_CANCEL."""
        return self._status in _INFLIGHT

    @property
    def is_buy(self) -> bool:
        return self._init.side is OrderSide.BUY

    # -- the state machine ------------------------------------------------------------

    def apply(self, event: OrderEvent) -> None:
        """Apply `event`; raises InvalidOrderTransition (order unchanged) if not allowed."""
        if not isinstance(event, OrderEvent):
            raise ValueError(f"Order.apply takes an order event, got {event!r}")
        cid = self._init.client_order_id
        if event.client_order_id != cid:
            raise ValueError(f"event for order {event.client_order_id} applied to order {cid}")
        status = self._status
        if status in _TERMINAL:
            raise InvalidOrderTransition(cid, status, event, "it is terminal")
        # The status a late venue answer is judged against while a cancel is pending.
        effective = self._prior_status if status is _PENDING_CANCEL else status
        assert effective is not None

        # the event classes are disjoint: the most frequent ones are tested first
        if isinstance(event, OrderFilled):
            if effective not in _LIVE:
                raise InvalidOrderTransition(cid, status, event)
            self._fill(event, status)
        elif isinstance(event, OrderSubmitted | OrderDenied):
            if status is not _INITIALIZED:
                raise InvalidOrderTransition(cid, status, event)
            self._status = _REJECTED if isinstance(event, OrderDenied) else _SUBMITTED
        elif isinstance(event, OrderAccepted):
            if effective is not _SUBMITTED:
                raise InvalidOrderTransition(cid, status, event)
            self._venue_order_id = event.venue_order_id
            self._set_live(_ACCEPTED)
        elif isinstance(event, OrderRejected):
            if effective is not _SUBMITTED:
                raise InvalidOrderTransition(cid, status, event)
            self._finish(_REJECTED)
        elif isinstance(event, OrderCancelRequested):
            if status not in (_SUBMITTED, _ACCEPTED, _PARTIALLY_FILLED):
                raise InvalidOrderTransition(cid, status, event)
            self._prior_status = status
            self._status = _PENDING_CANCEL
        elif isinstance(event, OrderCancelRejected):
            if status is not _PENDING_CANCEL:
                raise InvalidOrderTransition(cid, status, event)
            self._status = effective
            self._prior_status = None
        elif isinstance(event, OrderCanceled):
            if status not in (_PENDING_CANCEL, _ACCEPTED, _PARTIALLY_FILLED):
                raise InvalidOrderTransition(cid, status, event)
            self._finish(_CANCELED)
        elif isinstance(event, OrderExpired):
            if effective not in _LIVE:
                raise InvalidOrderTransition(cid, status, event)
            self._finish(_EXPIRED)
        elif isinstance(event, OrderUpdated):
            if status not in _LIVE:
                raise InvalidOrderTransition(cid, status, event)
            self._amend(event, status)
        else:  # OrderInitialized, or an unknown OrderEvent subclass
            raise InvalidOrderTransition(
                cid, status, event, "an order is initialized once, by its constructor"
            )
        self._ts_last = event.ts_ns
        self._events.append(event)

    def _set_live(self, status: OrderStatus) -> None:
        """Move to a non-terminal live status, staying PENDING_CANCEL if a cancel is out."""
        if self._status is _PENDING_CANCEL:
            self._prior_status = status
        else:
            self._status = status

    def _finish(self, status: OrderStatus) -> None:
        self._status = status
        self._prior_status = None

    def _refuse(
        self, status: OrderStatus, event: OrderEvent, reason: str
    ) -> InvalidOrderTransition:
        return InvalidOrderTransition(self._init.client_order_id, status, event, reason)

    def _amend(self, event: OrderUpdated, status: OrderStatus) -> None:
        quantity = self._quantity if event.quantity is None else event.quantity
        if quantity < self._filled_qty:
            raise self._refuse(
                status, event, f"new quantity {quantity} is below filled_qty {self._filled_qty}"
            )
        if event.price is not None and self.type not in _PRICED:
            raise self._refuse(status, event, f"a {self.type} order has no price to amend")
        if event.trigger_price is not None and self.type not in _TRIGGERED:
            raise self._refuse(status, event, f"a {self.type} order has no trigger_price to amend")
        self._quantity = quantity
        if event.price is not None:
            self._price = event.price
        if event.trigger_price is not None:
            self._trigger_price = event.trigger_price
        if quantity == self._filled_qty:
            self._finish(_FILLED)

    def _fill(self, event: OrderFilled, status: OrderStatus) -> None:
        if event.trade_id in self._trade_ids:
            raise self._refuse(status, event, f"trade {event.trade_id} was already applied")
        if (
            event.venue_order_id is not None
            and self._venue_order_id is not None
            and event.venue_order_id != self._venue_order_id
        ):
            raise self._refuse(
                status,
                event,
                f"fill for venue order {event.venue_order_id}, "
                f"but this order is {self._venue_order_id}",
            )
        filled = self._filled_qty + event.last_qty
        if filled > self._quantity:
            raise self._refuse(
                status,
                event,
                f"overfill: filled_qty {self._filled_qty} + last_qty {event.last_qty} "
                f"exceeds quantity {self._quantity}",
            )
        # exact: at this precision the sum of products never rounds (a fixed context
        # saves entering a local one per fill)
        notional = _EXACT.add(self._fill_notional, _EXACT.multiply(event.last_qty, event.last_px))
        self._fill_notional = notional
        self._filled_qty = filled
        self._avg_px = notional / filled
        self._trade_ids.add(event.trade_id)
        if event.venue_order_id is not None:
            self._venue_order_id = event.venue_order_id
        if filled == self._quantity:
            self._finish(_FILLED)
        else:
            self._set_live(_PARTIALLY_FILLED)

    # -- comparison and display -------------------------------------------------------

    def _state(self) -> tuple[object, ...]:
        return (
            self._init,
            self._quantity,
            self._price,
            self._trigger_price,
            self._status,
            self._prior_status,
            self._filled_qty,
            self._fill_notional,
            self._avg_px,
            self._venue_order_id,
            self._ts_last,
            self._events,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Order):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]  # a mutable entity

    def __repr__(self) -> str:
        price = f" @ {self._price}" if self._price is not None else ""
        trigger = f" trigger {self._trigger_price}" if self._trigger_price is not None else ""
        return (
            f"Order({self.client_order_id} {self.side} {self._quantity} {self.instrument_id} "
            f"{self.type}{price}{trigger} {self._status} filled {self._filled_qty}"
            f"{'' if self._avg_px is None else f' avg {self._avg_px}'})"
        )
