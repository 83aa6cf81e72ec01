"""`MarketVenue`: a simulated exchange matching against trade ticks and L2 order books.

The bar venue (`sapphire.sim.venue.SimulatedVenue`) matches orders against OHLC bars;
this venue offers the node the same interface (`submit_order`, `cancel_order`,
`amend_order`, `on_event`, `supports_trailing`, `has_work`, `process_price`,
`position`, `balance`, `open_orders`, `equity`, `apply_funding`) on top of one
`BookMatcher` per instrument (docs/engine.md, "Simulated venue: ticks and order
books"), plus `process_trade(tick)` and `process_book(update)`, which the node calls
for every trade tick and book update when the venue has them.

- **Latency** (`sapphire.sim.latency_queue`). Orders, cancels and amendments reach the
  matcher after the submit delay, reports reach the node after the report delay, each
  direction FIFO. Pending messages are released as market data advances the venue's
  clock: at a market-data event of time T, everything due at or before T happens first
  (in time order, an order at its own arrival time, so it sees the book as it was
  then), then the data is matched, then the reports due at T are delivered. With zero
  latency (the default) an order is matched at once against the current book and its
  reports are delivered before `submit_order` returns.
- **Accounting.** Fills are booked when the matcher makes them (as an exchange would)
  in a `sapphire.portfolio.Account`: cash for spot, margin and realised PnL for linear
  derivatives; fees come from the instrument's maker/taker rates (or a `FeeModel`).
  On arrival an order that opens risk needs `Account.check_order`'s margin or balance
  at its price (limit price, stop trigger, or the touch for a market order), and a
  reduce-only order must reduce the position; otherwise it is rejected with the reason
  (also kept in `reasons`).
- **Reservations** (`sapphire.sim.reservations`). An accepted order that opens or
  increases a position reserves, while it works, its initial margin at its price plus
  the larger fee; an order whose reservation exceeds what the other orders' leave of
  the free margin is rejected. `reserved(currency)` and `free_margin(currency)` expose
  them.
- **Funding** (`apply_funding`) is paid on the open position at the given mark.
- **Liquidation** (perpetuals and futures; `sapphire.sim.liquidation`): after every
  market-data event and funding payment, `LiquidationRule` compares the account's
  equity at the marks (the last trade price, or the book's mid) with the maintenance
  margin of its open derivative positions, per settlement currency (cross margin).
  Each close is a `Liquidation` (with its `OrderFilled`, fees and reason), reported
  after the report delay and returned by the `process_trade`/`process_book` call that
  releases it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    InstrumentId,
    Order,
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
    TradeId,
    TradeTick,
    to_decimal,
)
from sapphire.portfolio import Account
from sapphire.sim.book import BookUpdate
from sapphire.sim.latency_queue import AMEND, CANCEL, REPORT, SUBMIT, LatencyQueue
from sapphire.sim.liquidation import DERIVATIVES, LIQUIDATION_CANCEL, Liquidation, LiquidationRule
from sapphire.sim.matching import BookMatcher
from sapphire.sim.models import FeeModel, FixedLatency, LatencyModel, SlippageModel
from sapphire.sim.reservations import Reservations

__all__ = ["MarketVenue"]

_ZERO = Decimal(0)
_DEFAULT_LIQUIDATION = LiquidationRule()
# the volume of a price without a size (`process_price`): enough to fill any order
_UNLIMITED = 1e15


class MarketVenue:
    """A simulated exchange for tick and book data: one `BookMatcher` per instrument,
    a latency model, a cash/margin `Account`, funding and liquidation.

    `cash` in `currency` (default: the first instrument's settlement currency);
    `leverage` sets the initial margin of derivative positions; `latency` (default
    none), `fees` (default the instruments' rates), `slippage` (default none: walking
    the book is the slippage); `liquidation` None disables liquidation.
    """

    supports_trailing = False  # trailing stops are emulated by the node
    supports_contingent = False  # OCO/OTO/bracket are emulated by the node

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        cash: Decimal | float | str = 10_000,
        currency: str | None = None,
        leverage: Decimal | float | str = 1,
        latency: LatencyModel | None = None,
        fees: FeeModel | None = None,
        slippage: SlippageModel | None = None,
        liquidation: LiquidationRule | None = _DEFAULT_LIQUIDATION,
        check_sequence: bool = True,
        name: str = "SIM",
    ) -> None:
        self.instruments = {i.id: i for i in instruments}
        if not self.instruments:
            raise ValueError("a MarketVenue needs at least one instrument")
        first = next(iter(self.instruments.values()))
        self.currency = currency or first.settlement
        self.account = Account(
            self.currency,
            {self.currency: to_decimal(cash, "cash")},
            leverage=to_decimal(leverage, "leverage"),
        )
        self.latency: LatencyModel = latency or FixedLatency()
        self.liquidation = liquidation
        self.name = name
        several = len(self.instruments) > 1
        self.matchers = {
            iid: BookMatcher(
                inst,
                fees=fees,
                slippage=slippage,
                check_sequence=check_sequence,
                id_prefix=f"{name}{k}" if several else name,
            )
            for k, (iid, inst) in enumerate(self.instruments.items(), start=1)
        }
        self.on_event: Callable[[OrderEvent], None] = lambda event: None
        self.reasons: dict[str, str] = {}
        self.liquidations: list[Liquidation] = []
        self.marks: dict[InstrumentId, Decimal] = {}
        self.fees = _ZERO
        self.funding = _ZERO
        self.ts_ns = 0
        self._orders: dict[str, Order] = {}  # every order the venue was sent
        self._in_flight: dict[str, int] = {}  # orders sent, not arrived: count per id
        self._pos: dict[InstrumentId, Decimal] = {}
        self._queue = LatencyQueue(self.latency)
        self._releasing = False
        self._released: list[Liquidation] = []
        self._liq_seq = 0
        self._reserved = Reservations()

    # ------------------------------------------------------------------ state
    def position(self, instrument_id: InstrumentId) -> Decimal:
        """The account's signed position in `instrument_id` (sum of its fills)."""
        return self._pos.get(instrument_id, _ZERO)

    def balance(self, currency: str | None = None) -> Decimal:
        return self.account.balance(currency or self.currency)

    def reserved(self, currency: str | None = None) -> Decimal:
        """What the working orders reserve in `currency` (default the account's)."""
        return self._reserved.total(currency or self.currency)

    def free_margin(self, currency: str | None = None) -> Decimal:
        """What new risk may use in `currency`: the account's free margin at the last
        marks (balance + unrealised PnL - initial margin; a plain balance for a
        currency no derivative settles in) less the working orders' reservations."""
        ccy = currency or self.currency
        return self.account.free_margin(ccy, dict(self.marks)) - self.reserved(ccy)

    def equity(
        self, instrument_id: InstrumentId | None = None, price: float | Decimal | None = None
    ) -> Decimal:
        """Balances plus open positions marked at the last marks (`instrument_id` at
        `price` when given), in the account's currency."""
        marks = dict(self.marks)
        if instrument_id is not None and price is not None:
            inst = self.instruments[instrument_id]
            marks[instrument_id] = inst.make_price(price, quantize=True)
        return self.account.equity(marks)

    def open_orders(self, instrument_id: InstrumentId | None = None) -> list[Order]:
        """Orders working at the venue or on their way to it."""
        ids: list[str] = [
            w.client_order_id for m in self.matchers.values() for w in m.open_orders()
        ]
        ids += [cid for cid in self._in_flight if cid not in ids]
        return [
            self._orders[cid]
            for cid in ids
            if instrument_id is None or self._orders[cid].instrument_id == instrument_id
        ]

    def has_work(self, instrument_id: InstrumentId) -> bool:
        """Whether orders of `instrument_id` are working, or messages are pending."""
        matcher = self.matchers.get(instrument_id)
        return bool(self._queue) or (matcher is not None and bool(matcher.open_orders()))

    # ------------------------------------------------------------------ orders in
    def submit_order(self, order: Order, sizer: Any = None) -> None:
        """Send an order; it reaches the matcher after the submit delay.

        A `sizer` (the bar venue's size-at-fill) cannot work against a book: refused.
        """
        cid = order.client_order_id
        self._orders[cid] = order
        if sizer is not None:
            self._report_now(
                OrderRejected(
                    ts_ns=self.ts_ns,
                    client_order_id=cid,
                    reason="sizing at the fill is not supported by a book venue: give a quantity",
                )
            )
            return
        self._in_flight[cid] = self._in_flight.get(cid, 0) + 1
        self._send(SUBMIT, order)

    def cancel_order(self, client_order_id: str, ts_ns: int | None = None) -> bool:
        """Request a cancel (it arrives after the submit delay); False if the order is
        neither working nor on its way."""
        if not self._is_live(client_order_id):
            return False
        self._send(CANCEL, ClientOrderId(client_order_id))
        return True

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool:
        """Request an amendment (it arrives after the submit delay); False if the order
        is neither working nor on its way. An amendment the matcher refuses on arrival
        is dropped, its reason kept in `reasons`."""
        if not self._is_live(client_order_id):
            return False
        changes = {"quantity": quantity, "price": price, "trigger_price": trigger_price}
        self._send(AMEND, (ClientOrderId(client_order_id), changes))
        return True

    # ------------------------------------------------------------------ market data in
    def process_trade(self, tick: TradeTick) -> list[Liquidation]:
        """Match one trade tick; returns the liquidations reported by now."""
        matcher = self._matcher(tick.instrument_id)
        ts = tick.ts_ns
        self._release(ts)
        self._advance(ts)
        self._booked(matcher.on_trade(tick))
        self.marks[tick.instrument_id] = matcher.instrument.make_price(tick.price, quantize=True)
        self._after_data(ts)
        return self._take_released()

    def process_book(self, update: BookUpdate | OrderBookDelta | OrderBook) -> list[Liquidation]:
        """Apply one book update (snapshot, delta batch or domain snapshot) and match
        the orders it reaches; returns the liquidations reported by now."""
        matcher = self._matcher(update.instrument_id)
        ts = update.ts_ns
        self._release(ts)
        self._advance(ts)
        self._booked(matcher.on_book(update))
        mid = matcher.book.mid
        if mid is not None:
            self.marks[update.instrument_id] = matcher.instrument.make_price(mid, quantize=True)
        self._after_data(ts)
        return self._take_released()

    def process_price(
        self, instrument_id: InstrumentId, ts_ns: int, price: float, size: float | None = None
    ) -> list[Liquidation]:
        """A traded price without an aggressor; without a `size` its volume is unlimited
        (any order at or through the price fills, as on the bar venue)."""
        tick = TradeTick(
            instrument_id, ts_ns, price, _UNLIMITED if size is None else size, None,
            TradeId(f"{self.name}-P{ts_ns}"),
        )  # fmt: skip
        return self.process_trade(tick)

    def apply_funding(
        self, instrument_id: InstrumentId, rate: float | Decimal, mark: float | Decimal, ts: int
    ) -> Decimal:
        """Funding at `rate` on the open position valued at `mark` (long pays rate > 0);
        returns the amount received (negative when paid). A liquidation it causes is
        returned by the next `process_trade`/`process_book`/`flush`."""
        inst = self.instruments[instrument_id]
        self._release(ts)
        self._advance(ts)
        if self.position(instrument_id) == 0:
            return _ZERO
        mark_px = inst.make_price(mark, quantize=True)
        amount = self.account.apply_funding(inst, to_decimal(rate, "funding rate"), mark_px, ts)
        self.funding += amount
        self.marks[instrument_id] = mark_px
        self._after_data(ts)
        return amount

    def flush(self, ts_ns: int | None = None) -> list[Liquidation]:
        """Deliver everything pending up to `ts_ns` (default: all of it) — the end of a
        replay, when no more market data will advance the clock."""
        if ts_ns is None:
            while self._queue:  # a report may queue more (a reaction with latency)
                self._release(self._queue.last_due())
        else:
            self._release(ts_ns)
        return self._take_released()

    # ------------------------------------------------------------------ internals
    def _matcher(self, instrument_id: InstrumentId) -> BookMatcher:
        matcher = self.matchers.get(instrument_id)
        if matcher is None:
            raise ValueError(f"unknown instrument {instrument_id} at venue {self.name}")
        return matcher

    def _advance(self, ts_ns: int) -> None:
        if ts_ns < self.ts_ns:
            raise ValueError(f"venue time runs backwards: {ts_ns} after {self.ts_ns}")
        self.ts_ns = ts_ns

    def _is_live(self, cid: str) -> bool:
        if cid in self._in_flight:
            return True
        order = self._orders.get(cid)
        if order is None:
            return False
        return self._matcher(order.instrument_id).order(ClientOrderId(cid)) is not None

    def _send(self, kind: int, payload: Any) -> None:
        self._queue.send(self.ts_ns, kind, payload)
        self._release(self.ts_ns)

    def _report_now(self, event: OrderEvent) -> None:
        self._schedule([event])
        self._release(self.ts_ns)

    def _schedule(self, events: list[Any]) -> None:
        """Reports of what the venue did now, delivered after one report delay."""
        if events:
            self._queue.report(self.ts_ns, events)

    def _release(self, until: int) -> None:
        """Process the queued messages due at or before `until`, in time order."""
        if self._releasing:
            return  # the outer loop picks up what was queued meanwhile
        self._releasing = True
        try:
            pop = self._queue.pop_due
            while (msg := pop(until)) is not None:
                self.ts_ns = max(self.ts_ns, msg.due_ns)
                if msg.kind != REPORT:
                    self._arrive(msg.kind, msg.payload)
                elif isinstance(msg.payload, Liquidation):
                    self._released.append(msg.payload)
                else:
                    self.on_event(msg.payload)
        finally:
            self._releasing = False

    def _arrive(self, kind: int, payload: Any) -> None:
        ts = self.ts_ns
        if kind == SUBMIT:
            order: Order = payload
            cid = order.client_order_id
            left = self._in_flight.pop(cid, 1) - 1
            if left:
                self._in_flight[cid] = left
            matcher = self.matchers.get(order.instrument_id)
            reason = (
                f"unknown instrument {order.instrument_id}"
                if matcher is None
                else self._refusal(order, matcher)
            )
            if reason is not None or matcher is None:
                reason = reason or f"no matcher for {order.instrument_id}"
                self.reasons[cid] = reason
                self._schedule([OrderRejected(ts_ns=ts, client_order_id=cid, reason=reason)])
                return
            self._booked(matcher.submit(order, ts))
            if matcher.order(cid) is None:
                self._reserved.release(cid)  # done at once (filled, canceled, refused)
        elif kind == CANCEL:
            cid = payload
            matcher = self.matchers[self._orders[cid].instrument_id]
            events = matcher.cancel(cid, ts)
            if matcher.order(cid) is None and any(
                isinstance(e, OrderCancelRejected) for e in events
            ):
                # filled, canceled or expired meanwhile: the node learns that from the
                # report already on its way; a refusal would reach a terminal order
                self.reasons[cid] = f"cancel of {cid} arrived after the order was done"
                events = [e for e in events if not isinstance(e, OrderCancelRejected)]
            self._booked(events)
        else:
            cid, changes = payload
            matcher = self.matchers[self._orders[cid].instrument_id]
            if matcher.order(cid) is None:
                self.reasons[cid] = f"amendment of {cid} arrived after the order was done"
                return
            try:
                events = matcher.modify(cid, ts, **changes)
            except ValueError as exc:
                self.reasons[cid] = str(exc)
                return
            self._booked(events)
            inst = matcher.instrument
            self._reserved.renew(
                cid, inst, matcher.order(cid), self.position(inst.id), self.account.leverage
            )

    def _refusal(self, order: Order, matcher: BookMatcher) -> str | None:
        """The venue's own checks at arrival (the matcher does the rest); an accepted
        order takes its reservation."""
        inst = matcher.instrument
        pos = self.position(inst.id)
        if order.reduce_only:
            if pos == 0 or pos * order.side.sign > 0 or order.quantity > abs(pos):
                return (
                    f"reduce-only {order.side} {order.quantity} would not reduce the "
                    f"position {pos} in {inst.id}"
                )
            return None
        if order.type is OrderType.MARKET:
            touch = matcher.book.best_ask if order.side is OrderSide.BUY else matcher.book.best_bid
            px = (
                inst.make_price(touch[0], quantize=True)
                if touch is not None
                else matcher.last_trade_px
            )
        elif order.type is OrderType.STOP_MARKET:
            px = order.trigger_price
        else:
            px = order.price
        if px is None or px <= 0:
            return None  # no price to value it: the matcher decides (no liquidity)
        marks = dict(self.marks)
        marks.setdefault(inst.id, px)
        try:
            reason = self.account.check_order(inst, order.side, order.quantity, px, marks=marks)
        except ValueError as exc:
            return str(exc)
        if reason is not None:
            return reason
        return self._reserved.admit(
            order.client_order_id, inst, order.side, order.quantity, px, pos, self.account, marks
        )

    def _booked(self, events: list[OrderEvent]) -> None:
        """Book the fills of `events` in the account (releasing in proportion the
        reservations they use), then schedule their reports."""
        for event in events:
            if isinstance(event, OrderFilled):
                self._reserved.release(event.client_order_id, event.last_qty)
                order = self._orders[event.client_order_id]
                inst = self.instruments[order.instrument_id]
                self.account.apply_fill(
                    inst, order.side, event.last_qty, event.last_px, event.fee,
                    event.fee_currency, event.ts_ns,
                )  # fmt: skip
                self._pos[inst.id] = self.position(inst.id) + order.side.sign * event.last_qty
                self.fees += event.fee
            elif isinstance(event, (OrderRejected, OrderCanceled, OrderExpired)):
                self._reserved.release(event.client_order_id)
                reason = getattr(event, "reason", None)
                if reason:
                    self.reasons.setdefault(event.client_order_id, reason)
        self._schedule(list(events))

    def _after_data(self, ts: int) -> None:
        if self.liquidation is not None:
            self._check_liquidation(self.liquidation, ts)
        self._release(ts)

    def _take_released(self) -> list[Liquidation]:
        out, self._released = self._released, []
        return out

    def _check_liquidation(self, rule: LiquidationRule, ts: int) -> None:
        account = self.account
        for ccy, equity, margin in rule.breaches(account, self.marks):
            for pos in list(account.positions.open_positions()):
                inst = self.instruments[pos.instrument_id]
                if inst.settlement == ccy and inst.contract_type in DERIVATIVES:
                    self._liquidate(rule, inst, ts, equity, margin)

    def _liquidate(
        self, rule: LiquidationRule, inst: Instrument, ts: int, equity: Decimal, margin: Decimal
    ) -> None:
        matcher = self.matchers[inst.id]
        canceled = []
        reports: list[Any] = []
        for work in matcher.open_orders():
            reports += matcher.cancel(work.client_order_id, ts)
            self.reasons[work.client_order_id] = LIQUIDATION_CANCEL
            self._reserved.release(work.client_order_id)
            canceled.append(work.client_order_id)
        self._liq_seq += 1
        liquidation = rule.close(
            self.account, inst, self.position(inst.id), self.marks[inst.id], ts,
            venue=self.name, seq=self._liq_seq, equity=equity, margin=margin,
            canceled=canceled,
        )  # fmt: skip
        self._pos[inst.id] = _ZERO
        self.fees += liquidation.fee + liquidation.liquidation_fee
        self.liquidations.append(liquidation)
        self._schedule([*reports, liquidation])
