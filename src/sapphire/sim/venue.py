"""`SimulatedVenue`: an exchange simulated from bars, for event-driven backtests and paper.

The venue receives orders from the node, matches them against market data and answers
with domain events (`OrderAccepted`, `OrderRejected`, `OrderFilled`, `OrderCanceled`,
`OrderExpired`, `OrderUpdated`), delivered synchronously to `on_event`. Its matching
rules are those of docs/backtest.md, the rules of the compiled kernel
(`sapphire.sim.bar_path`: market orders at the next price, resting orders along the
bar's OHLC path); GTD orders expire at the end of the bar that contains their expiry
time.

Prices of market data are floats; each fill price crosses into `Decimal` once, at the
fill. Cash, quantities and fees are `Decimal` and live in a `sapphire.portfolio.Account`
(cash account with optional leverage: an order that opens risk beyond `equity *
leverage`, or whose margin plus fee exceeds equity, is refused with "insufficient
margin"). The events and ids are built by `sapphire.sim.bar_reports.BarReports`.

A `sizer` may come with an order: `sizer(fill_price, equity) -> quantity` is called at
the fill, so a size given as notional or as a fraction of equity uses the fill price
and the cash after earlier fills at the same point (the backtester's sizing modes; a
real exchange cannot do this, so live adapters size at submission).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Literal

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    InstrumentId,
    Order,
    OrderEvent,
    OrderSide,
    OrderType,
)
from sapphire.domain.instrument import to_decimal
from sapphire.portfolio import Account
from sapphire.sim.bar_path import (
    LIMIT,
    STOP,
    TRAIL,
    BarBook,
    FillModel,
    RestingOrder,
    Sizer,
    first_hit,
    reachable,
)
from sapphire.sim.bar_reports import BarReports
from sapphire.sim.liquidation import DERIVATIVES, LIQUIDATION_CANCEL, Liquidation, LiquidationRule

__all__ = ["SimulatedVenue"]

_ZERO = Decimal(0)
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL


class SimulatedVenue:
    """Matches orders against bars; books fills in a cash `Account`.

    `instruments`: what it lists; `cash` in `currency` (default: the first instrument's
    settlement currency); `leverage` None = no margin limit (as the backtester);
    `intrabar` "path" or "worst"; `native_trailing=False` makes the venue refuse
    trailing stops (the node then emulates them). `liquidation` (a `LiquidationRule`,
    default None: no liquidation, the kernel's behaviour) checks the account at every
    path point of every bar (open, first extreme, second extreme, close, after the
    orders reached on the segment to it) and liquidates the derivative positions at that
    price when equity falls below the maintenance margin; each `Liquidation` is kept in
    `liquidations` and reported to `on_liquidation`, an event: a `TradingNode` wires
    itself there and books it on its portfolio (the venue never changes it).
    """

    supports_trailing: bool
    supports_contingent = False  # OCO/OTO/bracket are emulated by the node

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        cash: float | Decimal | str = 10_000,
        currency: str | None = None,
        leverage: float | None = None,
        fill_model: FillModel | None = None,
        intrabar: Literal["path", "worst"] = "path",
        native_trailing: bool = True,
        liquidation: LiquidationRule | None = None,
        name: str = "SIM",
    ) -> None:
        self.instruments = {i.id: i for i in instruments}
        if not self.instruments:
            raise ValueError("a SimulatedVenue needs at least one instrument")
        if intrabar not in ("path", "worst"):
            raise ValueError(f"intrabar={intrabar!r} is invalid: expected 'path' or 'worst'")
        if leverage is not None and not leverage >= 1:
            raise ValueError(f"leverage={leverage!r} is invalid: expected >= 1 or None")
        first = next(iter(self.instruments.values()))
        self.currency = currency or first.settlement
        self.account = Account(
            self.currency,
            {self.currency: to_decimal(cash)},
            leverage=to_decimal(leverage) if leverage else Decimal(1),
        )
        self.leverage = to_decimal(leverage) if leverage else None
        self.fill_model = fill_model or FillModel()
        self.worst = intrabar == "worst"
        self.supports_trailing = native_trailing
        self.name = name
        self.on_event: Callable[[OrderEvent], None] = lambda event: None
        self.liquidation = liquidation
        self.liquidations: list[Liquidation] = []
        self.on_liquidation: Callable[[Liquidation], object] = lambda liquidation: None
        self._liq_seq = 0
        self.reasons: dict[str, str] = {}  # why the venue rejected/canceled an order
        self._books = {iid: BarBook(inst) for iid, inst in self.instruments.items()}
        self._orders: dict[str, RestingOrder] = {}
        self._ts = 0
        self._maker = {iid: i.maker_fee for iid, i in self.instruments.items()}
        self._taker = {iid: i.taker_fee for iid, i in self.instruments.items()}
        self.fees = _ZERO
        self.funding = _ZERO
        self._pos: dict[InstrumentId, Decimal] = {}
        self._reports = BarReports(name, self.instruments.values())

    # ------------------------------------------------------------------ state
    def position(self, instrument_id: InstrumentId) -> Decimal:
        """The account's signed position in `instrument_id`."""
        return self._pos.get(instrument_id, _ZERO)

    def balance(self, currency: str | None = None) -> Decimal:
        return self.account.balance(currency or self.currency)

    def book_of(self, instrument_id: InstrumentId) -> BarBook | None:
        """The working-order lists of one instrument (`queued` market orders, `resting`
        orders); the node's replay loop reads them to skip bars with nothing to match.
        None with a liquidation rule: every bar must reach the venue, which watches the
        margin of open positions even when no order works."""
        if self.liquidation is not None:
            return None
        return self._books[instrument_id]

    def has_work(self, instrument_id: InstrumentId) -> bool:
        book = self._books[instrument_id]
        return bool(book.queued or book.resting)

    def open_orders(self, instrument_id: InstrumentId | None = None) -> list[Order]:
        return [
            r.order
            for r in self._orders.values()
            if instrument_id is None or r.instrument_id == instrument_id
        ]

    def equity(self, instrument_id: InstrumentId, price: float) -> Decimal:
        """Cash plus positions marked at `price` (the other instruments at their last)."""
        if not any(self._pos.values()):
            return self.account.balance(self.currency)
        marks = {iid: to_decimal(b.last) for iid, b in self._books.items() if b.last == b.last}
        marks[instrument_id] = to_decimal(price)
        return self.account.equity(marks)

    # ------------------------------------------------------------------ orders in
    def submit_order(self, order: Order, sizer: Sizer | None = None) -> None:
        """Take a SUBMITTED order: market orders wait for the next price, others rest."""
        book = self._books.get(order.instrument_id)
        vid = self._reports.venue_order_id()
        ts = self._ts
        if book is None:
            self._reject(order.client_order_id, ts, f"unknown instrument {order.instrument_id}")
            return
        t = order.type
        if t is OrderType.TRAILING_STOP and not self.supports_trailing:
            self._reject(order.client_order_id, ts, "trailing stops are not supported here")
            return
        r = RestingOrder(order, sizer, vid)
        self._orders[r.cid] = r
        if t is OrderType.MARKET:
            book.queued.append(r)  # accepted at its fill
            return
        self.on_event(self._reports.accepted(ts, r.cid, r.venue_id))
        if r.kind == TRAIL and r.level != r.level and book.last == book.last:
            r.trail_to(book.last)
        book.resting.append(r)

    def cancel_order(self, client_order_id: str, ts_ns: int | None = None) -> bool:
        """Cancel a working order; False (and nothing emitted) when it is not working."""
        r = self._orders.pop(client_order_id, None)
        if r is None:
            return False
        self._remove(r)
        self.on_event(self._reports.canceled(self._ts if ts_ns is None else ts_ns, r.cid))
        return True

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool:
        r = self._orders.get(client_order_id)
        if r is None or r.order.type is OrderType.MARKET:
            return False
        if quantity is not None:
            r.qty = quantity
        if price is not None:
            if r.kind == LIMIT:
                r.level = float(price)
            else:
                r.limit_px = float(price)
        if trigger_price is not None and r.kind != LIMIT:
            r.level = float(trigger_price)
        self.on_event(self._reports.updated(self._ts, r.cid, quantity, price, trigger_price))
        return True

    # ------------------------------------------------------------------ market data in
    def apply_funding(self, instrument_id: InstrumentId, rate: float, mark: float, ts: int) -> None:
        """Funding at `rate` on the open position, valued at `mark` (long pays rate > 0)."""
        if self.position(instrument_id) == 0:
            return
        self.funding += self.account.apply_funding(
            self.instruments[instrument_id], to_decimal(rate), to_decimal(mark), ts
        )

    def process_bar(
        self,
        instrument_id: InstrumentId,
        ts_ns: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        end_ns: int,
    ) -> None:
        """Match the working orders of `instrument_id` against one bar."""
        book = self._books[instrument_id]
        self._ts = ts_ns
        if self.liquidation is not None:
            self._bar_with_liquidation(book, ts_ns, o, h, lo, c, end_ns)
            return
        if book.queued:
            self._fill_queued(book, o)
        if book.resting and reachable(book.resting, lo, h):
            if self.worst:
                pos = self.position(instrument_id)
                d = float(pos) if pos else book.resting[0].sign
                low_first = d > 0.0
            else:
                low_first = o - lo < h - o
            first, second = (lo, h) if low_first else (h, lo)
            self._walk(book, o, o)
            if book.resting:
                self._walk(book, o, first)
            if book.resting:
                self._walk(book, first, second)
            if book.resting:
                self._walk(book, second, c)
        self._expire(book, ts_ns, end_ns)
        book.last = c

    def _expire(self, book: BarBook, ts_ns: int, end_ns: int) -> None:
        for r in [r for r in book.resting if r.expire_ns is not None and r.expire_ns <= end_ns]:
            self._orders.pop(r.cid, None)
            book.resting.remove(r)
            self.on_event(self._reports.expired(ts_ns, r.cid))

    # ------------------------------------------------------------------ liquidation
    def _bar_with_liquidation(
        self, book: BarBook, ts_ns: int, o: float, h: float, lo: float, c: float, end_ns: int
    ) -> None:
        """`process_bar` with a liquidation rule: the same walk, and the margin check at
        each path point (after the orders reached on the segment leading to it)."""
        iid = book.instrument.id
        if book.queued:
            self._fill_queued(book, o)
        if self.worst:
            pos = self.position(iid)
            d = float(pos) if pos else (book.resting[0].sign if book.resting else 1.0)
            low_first = d > 0.0
        else:
            low_first = o - lo < h - o
        first, second = (lo, h) if low_first else (h, lo)
        if book.resting:
            self._walk(book, o, o)
        self._check_liquidation(book, o)
        for a, b in ((o, first), (first, second), (second, c)):
            if book.resting:
                self._walk(book, a, b)
            self._check_liquidation(book, b)
        self._expire(book, ts_ns, end_ns)
        book.last = c

    def _check_liquidation(self, book: BarBook, price: float) -> None:
        rule = self.liquidation
        if rule is None or not any(self._pos.values()):
            return
        iid = book.instrument.id
        marks = {i: to_decimal(b.last) for i, b in self._books.items() if b.last == b.last}
        marks[iid] = to_decimal(price)
        for ccy, equity, margin in rule.breaches(self.account, marks):
            for i, qty in list(self._pos.items()):
                inst = self.instruments[i]
                if qty != 0 and inst.settlement == ccy and inst.contract_type in DERIVATIVES:
                    self._liquidate(rule, self._books[i], marks[i], equity, margin)

    def _liquidate(
        self, rule: LiquidationRule, book: BarBook, mark: Decimal, equity: Decimal, margin: Decimal
    ) -> None:
        """Cancel the instrument's working orders, close its position at `mark` (taker
        fee + liquidation fee) and report a `Liquidation`."""
        inst = book.instrument
        ts = self._ts
        canceled = []
        for r in [*book.queued, *book.resting]:
            self._remove(r)
            self._orders.pop(r.cid, None)
            self._cancel_venue(r, ts, LIQUIDATION_CANCEL)
            canceled.append(r.cid)
        self._liq_seq += 1
        liquidation = rule.close(
            self.account, inst, self._pos[inst.id], mark, ts,
            venue=self.name, seq=self._liq_seq, equity=equity, margin=margin,
            canceled=canceled, event_id=self._reports.event_id(),
        )  # fmt: skip
        self._pos[inst.id] = _ZERO
        self.fees += liquidation.fee + liquidation.liquidation_fee
        self.liquidations.append(liquidation)
        self.on_liquidation(liquidation)

    def process_price(self, instrument_id: InstrumentId, ts_ns: int, price: float) -> None:
        """Match against one traded price (a trade tick): the segment last -> price."""
        book = self._books[instrument_id]
        self._ts = ts_ns
        if book.queued:
            self._fill_queued(book, price)
        if book.resting:
            start = book.last if book.last == book.last else price
            self._walk(book, start, start)
            if book.resting:
                self._walk(book, start, price)
        book.last = price

    def close_queued_at(self, instrument_id: InstrumentId, price: float, ts_ns: int) -> None:
        """Fill the queued market orders at `price` (the last close at the end of data)."""
        book = self._books[instrument_id]
        self._ts = ts_ns
        if book.queued:
            self._fill_queued(book, price)

    # ------------------------------------------------------------------ matching
    def _fill_queued(self, book: BarBook, price: float) -> None:
        queued, book.queued = book.queued, []
        for r in queued:
            if r.cid not in self._orders:
                continue
            self._fill(book, r, self.fill_model.slip(price, r.sign), False)

    def _walk(self, book: BarBook, s: float, b: float) -> None:
        """Walk the segment s -> b: fill the first order hit, again from its point."""
        while (hit := first_hit(book.resting, s, b)) is not None:
            best, at, gap = hit
            if best.kind == STOP and best.limit_px == best.limit_px:
                best.trigger()  # a triggered stop-limit rests as a limit order
                s = at
                continue
            maker = best.kind == LIMIT
            if maker and best.post_only and gap and s == b:
                # a post-only order marketable when the market reaches it would take
                self._remove(best)
                self._orders.pop(best.cid, None)
                self._cancel_venue(best, self._ts, "post-only order would take liquidity")
                continue
            px = at if maker else self.fill_model.slip(at, best.sign)
            self._remove(best)
            self._orders.pop(best.cid, None)
            self._fill(book, best, px, maker)
            s = at
            if not book.resting:
                return
        # trailing stops follow the price reached at the end of the segment
        for r in book.resting:
            if r.kind == TRAIL:
                r.trail_to(b)

    def _fill(self, book: BarBook, r: RestingOrder, price: float, maker: bool) -> None:
        self._orders.pop(r.cid, None)
        inst = book.instrument
        iid = inst.id
        ts = self._ts
        px = to_decimal(price)
        qty = r.qty
        pos = self._pos.get(iid, _ZERO)
        if r.reduce_only:
            if pos == 0 or (pos > 0) == (r.sign > 0):
                self._cancel_venue(r, ts, "reduce-only order would not reduce the position")
                return
            qty = min(qty, abs(pos))
        if r.sizer is not None:
            sized = r.sizer(px, self.equity(inst.id, price))
            if isinstance(sized, str):
                self._refuse(r, ts, sized)
                return
            qty = sized
        rate = self._maker[iid] if maker else self._taker[iid]
        notional = qty * px * inst.multiplier
        fee = notional * rate
        grows = pos == 0 or (pos > 0) == (r.sign > 0) or qty > abs(pos)
        if self.leverage is not None and grows:
            equity = self.equity(inst.id, price)
            if notional > equity * self.leverage or notional / self.leverage + fee > equity:
                self._refuse(r, ts, "insufficient margin")
                return
        order = r.order
        if r.market:
            # a market order is accepted when it can be filled (else rejected)
            self.on_event(self._reports.accepted(ts, r.cid, r.venue_id))
        if qty != order.quantity:
            self.on_event(self._reports.updated(ts, r.cid, quantity=qty))
        buy = r.sign > 0
        side = _BUY if buy else _SELL
        # what the venue computed itself is checked already: a positive finite price
        # (from a finite float > 0), a positive Decimal quantity (the order's, or a
        # sizer's result checked here), an int time >= 0; then the books and the event
        # skip re-validating it
        checked = (
            self._reports.fast
            and 0.0 < price < math.inf
            and type(ts) is int
            and ts >= 0
            and type(qty) is Decimal
            and qty.is_finite()
            and qty > 0
        )
        if checked:
            account = self.account
            account._book_fill(account._register(inst), side, qty, px, fee, inst.settlement, ts)
        else:
            self.account.apply_fill(inst, side, qty, px, fee, inst.settlement, ts)
        self._pos[iid] = pos + qty if buy else pos - qty
        self.fees += fee
        self.on_event(
            self._reports.filled(
                ts, r.cid, qty, px, maker, fee, inst.settlement, r.venue_id, checked=checked
            )
        )

    def _refuse(self, r: RestingOrder, ts: int, reason: str) -> None:
        """A working order the venue cannot fill (size or margin): rejected if it was
        never accepted (a market order), else canceled by the venue."""
        if r.order.type is OrderType.MARKET:
            self.reasons[r.cid] = reason
            self.on_event(self._reports.rejected(ts, r.cid, reason))
        else:
            self._cancel_venue(r, ts, reason)

    def _cancel_venue(self, r: RestingOrder, ts: int, reason: str) -> None:
        self.reasons[r.cid] = reason
        if r.order.type is OrderType.MARKET:
            self.on_event(self._reports.accepted(ts, r.cid, r.venue_id))
        self.on_event(self._reports.canceled(ts, r.cid))

    def _reject(self, cid: ClientOrderId, ts: int, reason: str) -> None:
        self.reasons[cid] = reason
        self.on_event(self._reports.rejected(ts, cid, reason))

    def _remove(self, r: RestingOrder) -> None:
        book = self._books[r.instrument_id]
        if r in book.resting:
            book.resting.remove(r)
        elif r in book.queued:
            book.queued.remove(r)
