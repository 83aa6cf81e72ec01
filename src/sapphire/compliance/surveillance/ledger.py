"""What the rules look at: our own orders and fills, by instrument, over the recent past.

The ledger takes order events one moment at a time (`apply`) and reports what that
moment brought (`Moment`: new submissions, order messages, fills, cancels). It keeps its
own light record of each order rather than a domain `Order`: surveillance must read any
history the store or a node hands it without re-judging the state machine, and must
forget old orders (`prune`) so that a node can run it for months.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderInitialized,
    OrderRejected,
    OrderSide,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    StrategyId,
    TimeInForce,
    TradeId,
)

__all__ = ["Ledger", "Moment", "OwnFill", "OwnOrder", "bps"]

_ZERO = Decimal(0)
_RESTING_TIF = frozenset({TimeInForce.GTC, TimeInForce.GTD})


def bps(a: Decimal, b: Decimal) -> float:
    """|a - b| relative to `b`, in basis points."""
    return abs(float(a - b)) / float(b) * 1e4


@dataclass(slots=True, eq=False)
class OwnOrder:
    """One of our orders as the rules see it (terms as amended, and how it ended)."""

    run_id: str
    client_order_id: ClientOrderId
    strategy_id: StrategyId
    instrument_id: InstrumentId
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    price: Decimal | None
    ts_init: int
    ts_submitted: int | None = None
    ts_accepted: int | None = None
    ts_done: int | None = None
    canceled: bool = False
    filled_qty: Decimal = _ZERO
    fills: list[OwnFill] = field(default_factory=list)

    @property
    def owner(self) -> tuple[str, StrategyId]:
        """The (run, strategy) that placed it."""
        return (self.run_id, self.strategy_id)

    @property
    def rests(self) -> bool:
        """A limit order that can rest in the book (not IOC/FOK) and was accepted."""
        return (
            self.type is OrderType.LIMIT
            and self.time_in_force in _RESTING_TIF
            and self.ts_accepted is not None
            and self.price is not None
        )

    def rested_at(self, ts_ns: int) -> bool:
        """Accepted at or before `ts_ns` and not finished before it."""
        return (
            self.ts_accepted is not None
            and self.ts_accepted <= ts_ns
            and (self.ts_done is None or ts_ns <= self.ts_done)
        )

    def mostly_unfilled(self, max_fill_fraction: float) -> bool:
        return float(self.filled_qty) <= max_fill_fraction * float(self.quantity)

    def label(self) -> str:
        """e.g. "BUY LIMIT 5 @ 99.5"."""
        price = "" if self.price is None else f" @ {self.price}"
        return f"{self.side.value} {self.type.value} {self.quantity}{price}"


@dataclass(slots=True, eq=False)
class OwnFill:
    """One execution of one of our orders."""

    order: OwnOrder
    ts_ns: int
    qty: Decimal
    px: Decimal
    liquidity: LiquiditySide
    trade_id: TradeId


@dataclass(slots=True)
class Moment:
    """What the events of one moment (`ts_ns`) brought."""

    ts_ns: int
    submitted: list[OwnOrder] = field(default_factory=list)
    #: (order, kind) for each order message: "new", "amend" or "cancel"
    messages: list[tuple[OwnOrder, str]] = field(default_factory=list)
    fills: list[OwnFill] = field(default_factory=list)
    canceled: list[OwnOrder] = field(default_factory=list)


class Ledger:
    """Our orders and fills of the recent past, by instrument."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, ClientOrderId], OwnOrder] = {}
        #: fills by instrument, oldest first
        self.fills: dict[InstrumentId, deque[OwnFill]] = {}
        #: submissions by instrument: (ts, order), oldest first
        self.submissions: dict[InstrumentId, deque[tuple[int, OwnOrder]]] = {}
        self.events = 0

    def apply(self, moment: Moment, run_id: str, event: OrderEvent) -> None:
        """Apply one event of `moment` (the events of one order in their order)."""
        self.events += 1
        ts = moment.ts_ns
        key = (run_id, event.client_order_id)
        if isinstance(event, OrderInitialized):
            self.orders.setdefault(key, _new_order(run_id, event))
            return
        order = self.orders.get(key)
        if order is None:  # its history was pruned, or never given (the caller checks)
            return
        if isinstance(event, OrderFilled):
            fill = OwnFill(
                order, ts, event.last_qty, event.last_px, event.liquidity, event.trade_id
            )
            order.fills.append(fill)
            order.filled_qty += event.last_qty
            if order.filled_qty >= order.quantity:
                order.ts_done = ts
            self.fills.setdefault(order.instrument_id, deque()).append(fill)
            moment.fills.append(fill)
        elif isinstance(event, OrderSubmitted):
            order.ts_submitted = ts
            self.submissions.setdefault(order.instrument_id, deque()).append((ts, order))
            moment.submitted.append(order)
            moment.messages.append((order, "new"))
        elif isinstance(event, OrderAccepted):
            order.ts_accepted = ts
        elif isinstance(event, OrderUpdated):
            if event.quantity is not None:
                order.quantity = event.quantity
            if event.price is not None:
                order.price = event.price
            moment.messages.append((order, "amend"))
        elif isinstance(event, OrderCancelRequested):
            moment.messages.append((order, "cancel"))
        elif isinstance(event, OrderCanceled):
            order.ts_done = ts
            order.canceled = True
            moment.canceled.append(order)
        elif isinstance(event, OrderExpired | OrderRejected | OrderDenied):
            order.ts_done = ts

    def fills_between(
        self, instrument_id: InstrumentId, start_ns: int, end_ns: int
    ) -> list[OwnFill]:
        """Our fills on `instrument_id` with start_ns <= ts <= end_ns, oldest first."""
        out = []
        for fill in reversed(self.fills.get(instrument_id, ())):
            if fill.ts_ns < start_ns:
                break
            if fill.ts_ns <= end_ns:
                out.append(fill)
        out.reverse()
        return out

    def prune(self, before_ns: int) -> None:
        """Forget orders finished, fills made and submissions sent before `before_ns`."""
        for fills in self.fills.values():
            while fills and fills[0].ts_ns < before_ns:
                fills.popleft()
        for sent in self.submissions.values():
            while sent and sent[0][0] < before_ns:
                sent.popleft()
        done = [
            k for k, o in self.orders.items() if o.ts_done is not None and o.ts_done < before_ns
        ]
        for key in done:
            del self.orders[key]


def _new_order(run_id: str, init: OrderInitialized) -> OwnOrder:
    return OwnOrder(
        run_id=run_id,
        client_order_id=init.client_order_id,
        strategy_id=init.strategy_id,
        instrument_id=init.instrument_id,
        side=init.side,
        type=init.type,
        time_in_force=init.time_in_force,
        quantity=init.quantity,
        price=init.price,
        ts_init=init.ts_ns,
    )
