"""Order matching against an L2 book and the trade stream, for one instrument.

`BookMatcher` is the matching engine of the simulated venue's tick and book modes. The
venue feeds it market data (`on_book`, `on_trade`) and orders (`submit`, `modify`,
`cancel`) at the times they *arrive* (after the latency model's delay), and forwards
the order events it returns (`OrderAccepted`, `OrderRejected`, `OrderFilled`,
`OrderCanceled`, `OrderExpired`, `OrderUpdated`, `OrderCancelRejected`) to the node
(after the report delay). The matcher never mutates the caller's `Order`: it copies
the specification at submit time and keeps its own record (`WorkingOrder`) of what is
filled, as an exchange would.

Rules (docs/engine.md, "Simulated venue: ticks and order books"):

- Liquidity is the book's opposite side, level by level; with no book data yet (no
  snapshot, no level), the last trade price with unlimited size (tick mode).
  Quantities are rounded down to lots.
- A market order walks the book (one taker fill per level); what the book cannot fill
  is canceled. A limit order that crosses takes liquidity up to its price, the rest
  rests (GTC/GTD) or is canceled (IOC). FOK fills completely at once or is canceled
  without fills. A post-only limit that would take is rejected.
- Taken liquidity is removed from the matcher's book, until the data sets the level
  again (a recorded update carries the market's size, which does not know about us).
- A resting limit order joins the queue *behind* the displayed size at its price
  (`queue_ahead`). A trade at its price first eats `queue_ahead`; only the volume beyond
  it fills the order (maker, at the order's price). A trade strictly through the price
  fills the order completely (the level was swept). Trades whose aggressor is on the
  order's own side are ignored. A book update that shrinks the level shrinks
  `queue_ahead` to at most the displayed size. A book update that crosses the order
  (an ask at or below a resting buy) fills it against those levels, as a maker.
- Stop orders trigger on trade prices: a buy stop when a trade prints at or above the
  trigger, a sell stop at or below (immediately at submit if the last trade already
  did). A triggered stop-market walks the book like a market order; a triggered
  stop-limit becomes a limit order. Trailing stops are emulated by the node (rejected).
- GTD orders expire at the first event at or after `expire_time_ns`.
- Reduce-only and balance checks are the venue's (it knows positions and accounts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderBook,
    OrderBookDelta,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    OrderUpdated,
    TimeInForce,
    TradeId,
    TradeTick,
    VenueOrderId,
    to_decimal,
)
from sapphire.sim.book import BookUpdate, L2Book
from sapphire.sim.models import FeeModel, InstrumentFees, NoSlippage, SlippageModel

__all__ = ["BookMatcher", "WorkingOrder", "vwap"]

_STOPS = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})
_SUPPORTED = frozenset({OrderType.MARKET, OrderType.LIMIT, *_STOPS})


def vwap(fills: Iterable[OrderFilled]) -> Decimal:
    """The volume-weighted average price of `fills` (exact Decimal)."""
    qty = cost = Decimal(0)
    for fill in fills:
        qty += fill.last_qty
        cost += fill.last_qty * fill.last_px
    if qty == 0:
        raise ValueError("vwap of no fills")
    return cost / qty


@dataclass(slots=True)
class WorkingOrder:
    """The matcher's record of one open order (a copy of its specification)."""

    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    time_in_force: TimeInForce
    expire_time_ns: int | None
    post_only: bool
    seq: int
    filled_qty: Decimal = Decimal(0)
    queue_ahead: Decimal = Decimal(0)
    triggered: bool = False
    fills: list[OrderFilled] = field(default_factory=list)

    @property
    def leaves_qty(self) -> Decimal:
        return self.quantity - self.filled_qty

    @property
    def is_resting_limit(self) -> bool:
        """A limit order in the book (a plain limit, or a triggered stop-limit)."""
        return self.type is OrderType.LIMIT or (
            self.type is OrderType.STOP_LIMIT and self.triggered
        )


class BookMatcher:
    """Matches one instrument's orders against its L2 book and trades.

    `fees` prices every fill (default: the instrument's maker/taker rates); `slippage`
    moves taker fill prices beyond the book's own (default none: walking the book is
    the slippage); `id_prefix` starts venue order ids (`SIM-1`) and trade ids
    (`SIM-T1`); `check_sequence` is passed to `L2Book.apply_update`.
    """

    def __init__(
        self,
        instrument: Instrument,
        *,
        fees: FeeModel | None = None,
        slippage: SlippageModel | None = None,
        id_prefix: str = "SIM",
        check_sequence: bool = True,
        book: L2Book | None = None,
    ) -> None:
        if not isinstance(instrument, Instrument):
            raise ValueError(f"BookMatcher needs an Instrument, got {instrument!r}")
        self.instrument = instrument
        self.book = L2Book(instrument.id) if book is None else book
        if self.book.instrument_id != instrument.id:
            raise ValueError(f"book of {self.book.instrument_id} given for {instrument.id}")
        self.fees: FeeModel = InstrumentFees() if fees is None else fees
        self.slippage: SlippageModel = NoSlippage() if slippage is None else slippage
        self.id_prefix = id_prefix
        VenueOrderId(f"{id_prefix}-1")  # validates the prefix
        self.check_sequence = check_sequence
        self.last_trade_px: Decimal | None = None
        self.ts_ns = 0
        self._orders: dict[ClientOrderId, WorkingOrder] = {}
        self._known: set[ClientOrderId] = set()
        self._order_seq = 0
        self._trade_seq = 0

    # -- queries ----------------------------------------------------------------------

    def open_orders(self) -> list[WorkingOrder]:
        """The open orders, in arrival order."""
        return sorted(self._orders.values(), key=lambda w: w.seq)

    def order(self, client_order_id: ClientOrderId) -> WorkingOrder | None:
        return self._orders.get(client_order_id)

    # -- orders -----------------------------------------------------------------------

    def submit(self, order: Order, ts_ns: int) -> list[OrderEvent]:
        """Match a newly arrived order; the events the venue reports, in order."""
        events = self._advance(ts_ns)
        cid = order.client_order_id
        reason = self._refusal(order, ts_ns)
        if reason is not None:
            self._known.add(cid)
            events.append(OrderRejected(ts_ns=ts_ns, client_order_id=cid, reason=reason))
            return events
        self._known.add(cid)
        self._order_seq += 1
        work = WorkingOrder(
            client_order_id=cid,
            venue_order_id=VenueOrderId(f"{self.id_prefix}-{self._order_seq}"),
            side=order.side,
            type=order.type,
            quantity=order.quantity,
            price=order.price,
            trigger_price=order.trigger_price,
            time_in_force=order.time_in_force,
            expire_time_ns=order.expire_time_ns,
            post_only=order.post_only,
            seq=self._order_seq,
        )
        events.append(
            OrderAccepted(ts_ns=ts_ns, client_order_id=cid, venue_order_id=work.venue_order_id)
        )
        if work.type in _STOPS and not self._stop_hit(work, self.last_trade_px):
            self._orders[cid] = work
            return events
        events += self._execute(work, ts_ns)
        return events

    def cancel(self, client_order_id: ClientOrderId, ts_ns: int) -> list[OrderEvent]:
        """Cancel an open order: `OrderCanceled`, or `OrderCancelRejected` if not open."""
        events = self._advance(ts_ns)
        if self._orders.pop(client_order_id, None) is None:
            events.append(
                OrderCancelRejected(
                    ts_ns=ts_ns,
                    client_order_id=client_order_id,
                    reason=f"order {client_order_id} is not open at the venue",
                )
            )
        else:
            events.append(OrderCanceled(ts_ns=ts_ns, client_order_id=client_order_id))
        return events

    def modify(
        self,
        client_order_id: ClientOrderId,
        ts_ns: int,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> list[OrderEvent]:
        """Amend an open order; `OrderUpdated` (and any fills a new price causes).

        A new price, or a larger quantity, loses the queue position. Raises ValueError
        naming the problem if the order is not open or the amendment does not fit it
        (the domain has no "amend rejected" event; the venue reports it as it can).
        """
        events = self._advance(ts_ns)
        work = self._orders.get(client_order_id)
        if work is None:
            raise ValueError(f"cannot amend order {client_order_id}: it is not open at the venue")
        inst = self.instrument
        new_qty = work.quantity if quantity is None else to_decimal(quantity, "quantity")
        new_px = None if price is None else to_decimal(price, "price")
        new_trigger = None if trigger_price is None else to_decimal(trigger_price, "trigger_price")
        if new_qty <= work.filled_qty or not inst.is_qty_on_lot(new_qty):
            raise ValueError(
                f"cannot amend order {client_order_id} to quantity {new_qty}: it must exceed "
                f"the filled {work.filled_qty} and be a multiple of the lot size {inst.lot_size}"
            )
        for name, value, allowed in (
            ("price", new_px, work.price is not None),
            ("trigger_price", new_trigger, work.type in _STOPS and not work.triggered),
        ):
            if value is None:
                continue
            if not allowed:
                raise ValueError(f"order {client_order_id} has no {name} to amend")
            if value <= 0 or not inst.is_price_on_tick(value):
                raise ValueError(
                    f"{name} {value} is not a positive multiple of the tick size {inst.tick_size}"
                )
        if work.post_only and new_px is not None:
            touch = self._touch(work.side)
            if touch is not None and (
                new_px >= touch if work.side is OrderSide.BUY else new_px <= touch
            ):
                raise ValueError(
                    f"cannot amend post-only order {client_order_id} to {new_px}: it would take "
                    f"liquidity (best opposite price {touch})"
                )
        requeue = (new_px is not None and new_px != work.price) or new_qty > work.quantity
        work.quantity = new_qty
        if new_px is not None:
            work.price = new_px
        if new_trigger is not None:
            work.trigger_price = new_trigger
        events.append(
            OrderUpdated(
                ts_ns=ts_ns,
                client_order_id=client_order_id,
                quantity=None if quantity is None else new_qty,
                price=new_px,
                trigger_price=new_trigger,
            )
        )
        if work.type in _STOPS and not work.triggered:
            if self._stop_hit(work, self.last_trade_px):
                del self._orders[client_order_id]
                events += self._execute(work, ts_ns)
        elif requeue and work.is_resting_limit:
            del self._orders[client_order_id]
            events += self._execute(work, ts_ns)
        return events

    # -- market data ------------------------------------------------------------------

    def on_book(self, data: BookUpdate | OrderBookDelta | OrderBook) -> list[OrderEvent]:
        """Apply a book update, then fill the resting orders it reaches."""
        events = self._advance(data.ts_ns)
        if isinstance(data, BookUpdate):
            self.book.apply_update(data, check_sequence=self.check_sequence)
        elif isinstance(data, OrderBookDelta):
            self.book.apply_delta(data)
        elif isinstance(data, OrderBook):
            self.book.apply_snapshot(data)
        else:
            raise ValueError(f"on_book takes a BookUpdate, OrderBookDelta or OrderBook: {data!r}")
        for work in self._resting_limits():
            assert work.price is not None
            shown = to_decimal(self.book.size_at(work.side, float(work.price)))
            work.queue_ahead = min(work.queue_ahead, shown)
        for work in self._resting_limits():
            events += self._take(work, work.price, data.ts_ns, LiquiditySide.MAKER)
            self._drop_if_done(work)
        return events

    def on_trade(self, tick: TradeTick) -> list[OrderEvent]:
        """Record the trade price, fill resting limits it reaches, trigger stops."""
        ts = tick.ts_ns
        events = self._advance(ts)
        px = self.instrument.make_price(tick.price, quantize=True)
        self.last_trade_px = px
        volume_left: dict[Decimal, Decimal] = {}
        for work in self._resting_limits():
            assert work.price is not None
            if tick.aggressor_side is work.side:
                continue
            through = px < work.price if work.side is OrderSide.BUY else px > work.price
            if through:
                qty = work.leaves_qty
                work.queue_ahead = Decimal(0)
            elif px == work.price:
                volume = volume_left.setdefault(px, to_decimal(tick.size))
                beyond = max(volume - work.queue_ahead, Decimal(0))
                qty = min(work.leaves_qty, self.instrument.quantize_qty(beyond))
                work.queue_ahead = max(work.queue_ahead - volume, Decimal(0))
                volume_left[px] = volume - qty
            else:
                continue
            if qty > 0:
                events.append(self._fill(work, work.price, qty, ts, LiquiditySide.MAKER))
                self._drop_if_done(work)
        for work in self.open_orders():
            if work.type in _STOPS and not work.triggered and self._stop_hit(work, px):
                del self._orders[work.client_order_id]
                events += self._execute(work, ts)
        return events

    def expire(self, ts_ns: int) -> list[OrderEvent]:
        """Expire GTD orders whose time has come (also done by every other call)."""
        return self._advance(ts_ns)

    # -- internals --------------------------------------------------------------------

    def _advance(self, ts_ns: int) -> list[OrderEvent]:
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or ts_ns < 0:
            raise ValueError(f"ts_ns must be an int >= 0, got {ts_ns!r}")
        if ts_ns < self.ts_ns:
            raise ValueError(f"matcher time runs backwards: {ts_ns} after {self.ts_ns}")
        self.ts_ns = ts_ns
        events: list[OrderEvent] = []
        for work in self.open_orders():
            if work.expire_time_ns is not None and work.expire_time_ns <= ts_ns:
                del self._orders[work.client_order_id]
                events.append(OrderExpired(ts_ns=ts_ns, client_order_id=work.client_order_id))
        return events

    def _refusal(self, order: Order, ts_ns: int) -> str | None:
        """Why the venue rejects `order` outright, or None."""
        inst = self.instrument
        cid = order.client_order_id
        if order.instrument_id != inst.id:
            return f"order for {order.instrument_id} sent to the matcher of {inst.id}"
        if cid in self._known:
            return f"duplicate client_order_id {cid}"
        if order.type not in _SUPPORTED:
            return f"{order.type} orders are emulated by the node, not matched by the venue"
        if not inst.is_qty_on_lot(order.quantity):
            return f"quantity {order.quantity} is not a multiple of the lot size {inst.lot_size}"
        for name in ("price", "trigger_price"):
            value = getattr(order, name)
            if value is not None and not inst.is_price_on_tick(value):
                return f"{name} {value} is not a multiple of the tick size {inst.tick_size}"
        if order.expire_time_ns is not None and order.expire_time_ns <= ts_ns:
            return f"expire_time_ns {order.expire_time_ns} is not after arrival {ts_ns}"
        if order.post_only:
            assert order.price is not None
            touch = self._touch(order.side)
            if touch is not None and (
                order.price >= touch if order.side is OrderSide.BUY else order.price <= touch
            ):
                return (
                    f"post-only {order.side} at {order.price} would take liquidity "
                    f"(best {'ask' if order.side is OrderSide.BUY else 'bid'} {touch})"
                )
        if order.type is OrderType.MARKET and self._touch(order.side) is None:
            return f"no liquidity to fill a market {order.side}"
        return None

    def _touch(self, side: OrderSide) -> Decimal | None:
        """The best opposite price a `side` order would trade at (book, else last trade)."""
        best = next(self._liquidity(side, None), None)
        return None if best is None else best[0]

    def _liquidity(
        self, side: OrderSide, limit: Decimal | None
    ) -> Iterator[tuple[Decimal, Decimal | None]]:
        """(price, size) a `side` taker can reach up to `limit`, best first, converted
        lazily; size None = unlimited (the last trade price when there is no book)."""
        book = self.book
        if book.has_snapshot or book.depth(OrderSide.BUY) or book.depth(OrderSide.SELL):
            for raw_px, raw_size in book.levels(side.opposite):
                price = self.instrument.make_price(raw_px, quantize=True)
                if limit is not None and (
                    price > limit if side is OrderSide.BUY else price < limit
                ):
                    return
                yield price, to_decimal(raw_size)
            return
        last = self.last_trade_px
        if last is not None and (
            limit is None or (last <= limit if side is OrderSide.BUY else last >= limit)
        ):
            yield last, None

    def _stop_hit(self, work: WorkingOrder, px: Decimal | None) -> bool:
        trigger = work.trigger_price
        if px is None or trigger is None:
            return False
        return px >= trigger if work.side is OrderSide.BUY else px <= trigger

    def _execute(self, work: WorkingOrder, ts_ns: int) -> list[OrderEvent]:
        """Run an accepted (or just triggered) order against the book."""
        work.triggered = work.triggered or work.type in _STOPS
        limit = work.price if work.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
        cid = work.client_order_id
        if work.time_in_force is TimeInForce.FOK:
            reachable = list(self._liquidity(work.side, limit))
            if any(size is None for _, size in reachable):
                available = work.leaves_qty
            else:
                available = sum(
                    (self.instrument.quantize_qty(s) for _, s in reachable if s), Decimal(0)
                )
            if available < work.leaves_qty:
                return [OrderCanceled(ts_ns=ts_ns, client_order_id=cid)]
        events: list[OrderEvent] = list(self._take(work, limit, ts_ns, LiquiditySide.TAKER))
        if work.leaves_qty == 0:
            return events
        if limit is None or work.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            events.append(OrderCanceled(ts_ns=ts_ns, client_order_id=cid))
            return events
        work.queue_ahead = to_decimal(self.book.size_at(work.side, float(limit)))
        self._orders[cid] = work
        return events

    def _take(
        self, work: WorkingOrder, limit: Decimal | None, ts_ns: int, liquidity: LiquiditySide
    ) -> list[OrderFilled]:
        """Fill `work` from the opposite side up to `limit`, consuming the book.

        A taker fills at each level's price (then slippage); a resting maker order that
        the book crossed fills at its own price.
        """
        fills = []
        opposite = work.side.opposite
        for price, size in self._liquidity(work.side, limit):
            if work.leaves_qty == 0:
                break
            available = work.leaves_qty if size is None else self.instrument.quantize_qty(size)
            qty = min(work.leaves_qty, available)
            if qty <= 0:
                continue
            if liquidity is LiquiditySide.TAKER:
                fill_px = self.slippage.fill_price(self.instrument, work.side, price, qty)
            else:
                assert work.price is not None
                fill_px = work.price
            fills.append(self._fill(work, fill_px, qty, ts_ns, liquidity))
            if size is not None:
                self.book.set_level(opposite, float(price), float(size - qty))
        return fills

    def _fill(
        self,
        work: WorkingOrder,
        price: Decimal,
        qty: Decimal,
        ts_ns: int,
        liquidity: LiquiditySide,
    ) -> OrderFilled:
        self._trade_seq += 1
        work.filled_qty += qty
        fill = OrderFilled(
            ts_ns=ts_ns,
            client_order_id=work.client_order_id,
            trade_id=TradeId(f"{self.id_prefix}-T{self._trade_seq}"),
            last_qty=qty,
            last_px=price,
            liquidity=liquidity,
            fee=self.fees.fee(self.instrument, qty, price, liquidity),
            fee_currency=self.fees.fee_currency(self.instrument),
            venue_order_id=work.venue_order_id,
        )
        work.fills.append(fill)
        return fill

    def _drop_if_done(self, work: WorkingOrder) -> None:
        if work.leaves_qty == 0:
            self._orders.pop(work.client_order_id, None)

    def _resting_limits(self) -> list[WorkingOrder]:
        """Resting limit orders by price priority (best first), then arrival."""
        rest = [w for w in self._orders.values() if w.is_resting_limit]
        return sorted(
            rest,
            key=lambda w: (
                w.side,
                -(w.price or 0) if w.side is OrderSide.BUY else (w.price or 0),
                w.seq,
            ),
        )
