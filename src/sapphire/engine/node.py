"""`TradingNode`: one event loop for backtest, paper and live.

The node owns the clock, the message bus, the orders (domain `Order`s and their state
machine), the portfolio (`sapphire.portfolio`, positions per strategy) and, when
configured, the pre-trade risk engine (`sapphire.risk`). Strategies talk to it through
`EventStrategy` helpers; the venue (simulated or an exchange adapter) receives orders
with `submit_order(order, sizer)` / `cancel_order` / `amend_order` and answers with
order events passed to `on_venue_event`, which applies them to the order, books fills,
publishes them on the bus and calls the strategy back. A venue that liquidates
positions reports each `Liquidation` to `on_liquidation` (the node wires itself to the
venue's `on_liquidation` when it has one, and passes on what `process_trade` /
`process_book` return); the node books it on its portfolio and publishes it: the venue
never changes the node's state.

Client order ids are `"{run_id}-{strategy_id}-{seq}"` (`ClientOrderIdGenerator`):
deterministic, so a resubmission after a crash reuses the id. Brackets, OTO, OCO and
trailing stops on venues without them are emulated by the node's `OrderEmulator`
(`sapphire.engine.emulation`); crash recovery (`restore`, `place_bracket`) lives in
`sapphire.engine.recovery`.

Only the clock and the venue differ between modes. Every bar goes through one step
(funding, the venue matches the bar, the clock moves to its close and timers fire, the
last price and emulated trailing stops follow, then subscribers get the bar): `run_bars`
replays feeds through it (a backtest) and `process_bar` feeds it one bar at a time
(paper/live).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from sapphire.correlation import bind_correlation, reset_correlation
from sapphire.domain import (
    Bar,
    ClientOrderId,
    ClientOrderIdGenerator,
    InstrumentId,
    Order,
    OrderBook,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    RiskEvent,
    TradeTick,
    TradingState,
)
from sapphire.domain.events import trusted_builder
from sapphire.domain.instrument import to_decimal
from sapphire.engine import pretrade, recovery
from sapphire.engine.bars import BarFeed, BarLoop, FundingPaid
from sapphire.engine.bus import MessageBus
from sapphire.engine.clock import Clock, SimulatedClock
from sapphire.engine.emulation import OrderEmulator
from sapphire.engine.strategy import EventStrategy
from sapphire.portfolio import Account, Portfolio
from sapphire.risk import RiskEngine

__all__ = [
    "ZERO_EQUITY_TAG", "BarFeed", "FundingPaid", "TradingNode", "Venue", "VenueLiquidation",
]  # fmt: skip

#: the tag of the orders closing the positions when the equity reached zero
ZERO_EQUITY_TAG = "zero_equity"

Sizer = Callable[[Decimal, Decimal], "Decimal | str"]
_OE = TypeVar("_OE", bound=OrderEvent)
_TRAILING_STOP = OrderType.TRAILING_STOP
_ENDED = (OrderCanceled, OrderRejected, OrderExpired)


class Venue(Protocol):
    """What the node needs from a venue (simulated or an exchange adapter)."""

    supports_trailing: bool
    on_event: Callable[[OrderEvent], None]

    def submit_order(self, order: Order, sizer: Sizer | None = None) -> None: ...

    def cancel_order(self, client_order_id: str, ts_ns: int | None = None) -> bool: ...

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool: ...


class VenueLiquidation(Protocol):
    """What the node reads of a venue's liquidation report (`sapphire.sim.liquidation.
    Liquidation`): the account's position in `instrument_id` was closed at `price`."""

    @property
    def instrument_id(self) -> InstrumentId: ...

    @property
    def ts_ns(self) -> int: ...

    @property
    def price(self) -> Decimal: ...

    @property
    def fee(self) -> Decimal: ...

    @property
    def liquidation_fee(self) -> Decimal: ...


class TradingNode:
    """Strategies, orders, portfolio, risk and a venue, driven by one clock.

    `portfolio` defaults to one over a fresh `Account` with `cash` in `currency`
    (by default the venue's currency when it has one). `risk` (a `RiskEngine`) checks
    every new order; a denial is an `OrderDenied` event (and a `RiskEvent` on the bus).
    `bracket_tick` rounds bracket stop-loss/take-profit levels to a tick (0 = none), as
    the backtester does.
    """

    def __init__(
        self,
        venue: Any,
        *,
        clock: Clock | None = None,
        portfolio: Portfolio | None = None,
        risk: RiskEngine | None = None,
        run_id: str = "run",
        cash: Decimal | float | str | None = None,
        currency: str | None = None,
        bracket_tick: float = 0.0,
    ) -> None:
        self.venue = venue
        self.clock = clock or SimulatedClock()
        self.bus = MessageBus()
        self.risk = risk
        self.run_id = run_id
        self.bracket_tick = float(bracket_tick)
        self.trading_state = TradingState.ACTIVE
        #: bind each order's correlation id (its signal's: the parent order's id, else its
        #: own) while it is submitted and while its venue events are handled, so every log
        #: line about it carries the id (paper and live sessions switch it on; backtests
        #: skip the cost)
        self.correlate = False
        # a strategy's own state (e.g. its drawdown limit, set by a `RiskMonitor`): its
        # orders are checked under the more severe of this and `trading_state`
        self.strategy_states: dict[str, TradingState] = {}
        # why trading stopped for good (`EquityGuard`: the equity reached zero): every
        # order but the stop's own closing ones (tag `ZERO_EQUITY_TAG`) is denied
        self.stopped: str | None = None
        if portfolio is None:
            ccy = currency or getattr(venue, "currency", None) or "USDT"
            start = cash if cash is not None else venue.balance(ccy)
            # the node's book mirrors the venue's margin: its leverage when it has one,
            # else 1 (no credit beyond the cash for the pre-trade balance check)
            venue_leverage = getattr(venue, "leverage", None)
            portfolio = Portfolio(
                Account(ccy, {ccy: to_decimal(start)}, to_decimal(venue_leverage or 1))
            )
            for inst in getattr(venue, "instruments", {}).values():
                portfolio.add_instrument(inst)
        self.portfolio = portfolio
        self.orders: dict[str, Order] = {}
        self.tags: dict[str, str] = {}
        self.last: dict[InstrumentId, float] = {}
        self.strategies: list[EventStrategy] = []
        self.emulator = OrderEmulator(self)
        self.bar_loop = BarLoop(self)
        self._by_id: dict[str, EventStrategy] = {}
        self._ids: dict[str, ClientOrderIdGenerator] = {}
        self._open: dict[str, Order] = {}
        self._tick_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self._book_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self.bar_index = -1
        self._events = 0
        self._mark_cache: dict[InstrumentId, tuple[float, Decimal]] = {}
        self._running = False
        venue.on_event = self.on_venue_event
        if hasattr(venue, "on_liquidation"):
            venue.on_liquidation = self.on_liquidation

    # ---------------------------------------------------------------- set-up
    def add_strategy(
        self,
        strategy: EventStrategy,
        *,
        bars: Sequence[InstrumentId] = (),
        trade_ticks: Sequence[InstrumentId] = (),
        order_books: Sequence[InstrumentId] = (),
    ) -> None:
        """Add a strategy and subscribe it to market data of the given instruments."""
        if strategy.strategy_id in self._by_id:
            raise ValueError(f"strategy id {strategy.strategy_id!r} is already in this node")
        strategy._node = self
        self.strategies.append(strategy)
        self._by_id[strategy.strategy_id] = strategy
        self._ids[strategy.strategy_id] = ClientOrderIdGenerator(strategy.strategy_id, self.run_id)
        for iid in bars:
            self.bar_loop.subscribe(strategy, iid)
        for iid in trade_ticks:
            self._tick_subs.setdefault(iid, []).append(strategy)
        for iid in order_books:
            self._book_subs.setdefault(iid, []).append(strategy)

    def next_order_id(self, strategy: EventStrategy) -> Any:
        return self._ids[strategy.strategy_id].next()

    def next_event_id(self) -> str:
        """Deterministic event ids (`{run_id}-N`): a rerun produces the same events."""
        self._events += 1
        return f"{self.run_id}-{self._events}"

    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    # ---------------------------------------------------------------- crash recovery
    def restore(
        self,
        orders: Sequence[Order],
        last_event_seq: int,
        *,
        id_seqs: dict[str, int] | None = None,
        brackets: dict[str, dict[str, Any]] | None = None,
        otos: dict[str, Sequence[Order]] | None = None,
    ) -> list[str]:
        """Adopt the orders of an interrupted run, before `start`; returns the FILLED
        entries whose exit legs are missing (see `sapphire.engine.recovery.restore`)."""
        return recovery.restore(
            self, orders, last_event_seq, id_seqs=id_seqs, brackets=brackets, otos=otos
        )

    def place_bracket(self, client_order_id: str) -> bool:
        """Place the exit legs of a FILLED entry that `restore` reported as missing them
        (at the entry's last fill price); False when there is nothing to place."""
        return recovery.place_bracket(self, client_order_id)

    def bracket_spec(self, client_order_id: str) -> dict[str, Any] | None:
        """The bracket of an entry not yet filled (what `restore(brackets=)` takes)."""
        return recovery.bracket_spec(self, client_order_id)

    def oto_children(self, client_order_id: str) -> tuple[Order, ...] | None:
        """The children an OTO parent not yet filled holds (what `restore(otos=)` takes)."""
        return recovery.oto_children(self, client_order_id)

    def _order_event(self, cls: type[_OE], ts: int, cid: ClientOrderId) -> _OE:
        """An event without fields of its own (`OrderSubmitted`, `OrderCancelRequested`)
        for an order of this node: its id is typed and its event id ours, so only the
        clock's time needs a check before the validation is skipped."""
        if type(ts) is int and ts >= 0:
            return trusted_builder(cls)(
                event_id=self.next_event_id(), ts_ns=ts, client_order_id=cid
            )
        return cls(event_id=self.next_event_id(), ts_ns=ts, client_order_id=cid)

    def _marks(self) -> dict[InstrumentId, Decimal]:
        """The last prices as Decimals (``to_decimal(price)``, converted once per price)."""
        cache = self._mark_cache
        marks: dict[InstrumentId, Decimal] = {}
        for iid, price in self.last.items():
            hit = cache.get(iid)
            if hit is None or hit[0] is not price:  # the very same price object: reuse
                hit = cache[iid] = (price, to_decimal(price))
            marks[iid] = hit[1]
        return marks

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._running:
            return
        self._running = True
        for s in self.strategies:
            s.on_start()

    def stop(self) -> None:
        if not self._running:
            return
        for s in self.strategies:
            s.on_stop()
        self._running = False

    # ---------------------------------------------------------------- orders out
    def submit_order(
        self,
        strategy: EventStrategy,
        order: Order,
        *,
        tag: str | None = None,
        sizer: Sizer | None = None,
    ) -> bool:
        """Risk-check `order` and hand it to the venue; False when denied."""
        if not self.correlate:
            return self._submit(strategy, order, tag, sizer)
        token = bind_correlation(str(order.parent_order_id or order.client_order_id))
        try:
            return self._submit(strategy, order, tag, sizer)
        finally:
            reset_correlation(token)

    def _submit(
        self, strategy: EventStrategy, order: Order, tag: str | None, sizer: Sizer | None
    ) -> bool:
        cid = order.client_order_id
        if cid in self.orders:
            raise ValueError(f"order {cid} was already submitted")
        self.orders[cid] = order
        if tag is not None:
            self.tags[cid] = tag
        ts = self.clock.now_ns()
        if self.stopped is not None or self.risk is not None:
            if self.stopped is not None:
                # the stop's closing orders, and the close at the end of the data, pass
                reason = None if tag in (ZERO_EQUITY_TAG, "end") else self.stopped
            else:
                reason = pretrade.check(self, order, ts, sizer)
            if reason is not None:
                denied = OrderDenied(
                    event_id=self.next_event_id(), ts_ns=ts, client_order_id=cid, reason=reason
                )
                order.apply(denied)
                self.bus.publish(denied)
                self.bus.publish(
                    RiskEvent(
                        event_id=self.next_event_id(),
                        ts_ns=ts,
                        kind="pre_trade",
                        reason=reason,
                        detail={"client_order_id": str(cid)},
                        strategy_id=strategy.strategy_id,
                    )
                )
                strategy.on_order_update(order, denied)
                return False
        submitted = self._order_event(OrderSubmitted, ts, cid)
        order.apply(submitted)
        self._open[cid] = order
        self.bus.publish(submitted)
        trail = order.type is _TRAILING_STOP and not self.venue.supports_trailing
        if trail:
            order = self.emulator.emulate_trailing(order)
        self.venue.submit_order(order, sizer)
        return True

    def cancel_order(self, client_order_id: str) -> bool:
        order = self._open.get(client_order_id)
        if order is None:
            return False
        if order.status is OrderStatus.PENDING_CANCEL:
            return False
        self.emulator.trails.pop(client_order_id, None)
        ts = self.clock.now_ns()
        request = self._order_event(OrderCancelRequested, ts, order.client_order_id)
        order.apply(request)
        self.bus.publish(request)
        if self.venue.cancel_order(client_order_id):
            return True
        if order.status is OrderStatus.PENDING_CANCEL:
            refused = OrderCancelRejected(
                event_id=self.next_event_id(), ts_ns=ts, client_order_id=order.client_order_id,
                reason="the venue has no working order with this id",
            )  # fmt: skip
            order.apply(refused)
            self.bus.publish(refused)
        return False

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool:
        if client_order_id not in self._open:
            return False
        return bool(
            self.venue.amend_order(
                client_order_id, quantity=quantity, price=price, trigger_price=trigger_price
            )
        )

    # ---------------------------------------------------------------- contingent orders
    def submit_bracket(
        self,
        strategy: EventStrategy,
        entry: Order,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        relative: bool = True,
        tag: str | None = None,
        sizer: Sizer | None = None,
    ) -> bool:
        """Submit `entry` with exit legs placed when it fills, one cancelling the others
        (levels relative to the fill price, or absolute); False when denied."""
        return self.emulator.submit_bracket(
            strategy, entry, stop_loss=stop_loss, take_profit=take_profit,
            trailing_stop=trailing_stop, relative=relative, tag=tag, sizer=sizer,
        )  # fmt: skip

    def submit_oto(
        self,
        strategy: EventStrategy,
        parent: Order,
        children: Sequence[Order],
        *,
        tag: str | None = None,
        tags: Sequence[str | None] | None = None,
        sizer: Sizer | None = None,
    ) -> bool:
        """One-triggers-the-others: submit `parent` now and hold `children` until it is
        completely FILLED (see `OrderEmulator.submit_oto`); False when it is denied."""
        return self.emulator.submit_oto(strategy, parent, children, tag=tag, tags=tags, sizer=sizer)

    def submit_oco(
        self,
        strategy: EventStrategy,
        orders: Sequence[Order],
        *,
        tags: Sequence[str] | None = None,
    ) -> bool:
        """Submit `orders` one-cancels-the-others; False when one was denied."""
        return self.emulator.submit_oco(strategy, orders, tags=tags)

    def link_oco(self, ids: Sequence[str]) -> None:
        """Link working orders one-cancels-the-others (a fill of one cancels the rest)."""
        self.emulator.link_oco(ids)

    # ---------------------------------------------------------------- venue events in
    def on_venue_event(self, event: OrderEvent) -> None:
        cid = event.client_order_id
        order = self.orders.get(cid)
        if order is None:
            raise ValueError(f"venue event for an unknown order {cid}: {event!r}")
        if not self.correlate:
            self._on_venue_event(order, event)
            return
        token = bind_correlation(str(order.parent_order_id or cid))
        try:
            self._on_venue_event(order, event)
        finally:
            reset_correlation(token)

    def _on_venue_event(self, order: Order, event: OrderEvent) -> None:
        cid = event.client_order_id
        emulator = self.emulator
        trails = emulator.trails
        if (
            trails
            and cid in trails
            and type(event) is OrderUpdated
            and event.trigger_price is not None
        ):
            self.bus.publish(event)  # the emulated trail moved: the order spec is unchanged
            return
        order.apply(event)
        if order.is_terminal:
            self._open.pop(cid, None)
            if trails:
                trails.pop(cid, None)
        bus = self.bus
        bus.publish(event)
        strategy = self._by_id[order.strategy_id]
        if type(event) is OrderFilled:
            result = self.portfolio.apply_order_fill(order, event)
            if result.event is not None:
                bus.publish(result.event)
            if emulator.oco or emulator.brackets:
                emulator.on_fill(order, event)
            strategy.on_fill(order, event)
        else:
            if isinstance(event, _ENDED):
                emulator.on_ended(order)
            strategy.on_order_update(order, event)

    def on_liquidation(self, liquidation: VenueLiquidation) -> None:
        """The venue closed the account's position in an instrument: close each
        strategy's position there at the liquidation price, the venue's fees (taker +
        liquidation fee) shared in proportion to the sizes closed; then publish the
        liquidation and the position events."""
        portfolio = self.portfolio
        iid = liquidation.instrument_id
        holders = []
        for sid in portfolio.strategies():
            pos = portfolio.position(sid, iid)
            if pos is not None and pos.quantity != 0:
                holders.append((sid, pos.quantity))
        total = sum((abs(q) for _, q in holders), Decimal(0))
        fees = liquidation.fee + liquidation.liquidation_fee
        events = []
        for sid, qty in holders:
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            result = portfolio.apply_fill(
                sid, iid, side, abs(qty), liquidation.price, fees * abs(qty) / total,
                liquidation.ts_ns,
            )  # fmt: skip
            if result.event is not None:
                events.append(result.event)
        self.bus.publish(liquidation)
        for event in events:
            self.bus.publish(event)

    # ---------------------------------------------------------------- market data in
    def run_bars(self, feeds: Sequence[BarFeed]) -> None:
        """Replay bars (a backtest): every feed's bars in time order, each through the
        one per-bar step (`sapphire.engine.bars`). Strategies that take bar indices
        (`VectorAdapter`) are called only on the bars they asked for; a `Bar` object is
        built only when a strategy subscribed to bars."""
        self.start()
        self.bar_loop.run(feeds)

    def process_bar(
        self,
        bar: Bar,
        timeframe_ns: int,
        funding_rate: float = 0.0,
        index: int | None = None,
    ) -> None:
        """One bar of `bar.instrument_id` (paper/live, or a hand-fed backtest), through
        the replay's step. With `index` (the bar's position in the strategies' arrays)
        the node's `bar_index` becomes `index` and, after the bar subscribers, the
        index subscribers get `on_bar_index(index)` where their `bar_mask` is set, as
        in `run_bars`; without it they are not called."""
        self.bar_loop.process_bar(bar, timeframe_ns, funding_rate, index)

    def process_trade_tick(self, tick: TradeTick) -> None:
        iid = tick.instrument_id
        clock = self.clock
        if clock.next_due <= tick.ts_ns:
            clock.advance_to(tick.ts_ns)
        elif isinstance(clock, SimulatedClock):
            clock.set_time(tick.ts_ns)
        self.last[iid] = tick.price
        process_trade = getattr(self.venue, "process_trade", None)
        if process_trade is not None:
            # a venue matching ticks and books (sim.exchange.MarketVenue): it returns the
            # positions it liquidated
            for liquidation in process_trade(tick):
                self.on_liquidation(liquidation)
        elif self.venue.has_work(iid):
            self.venue.process_price(iid, tick.ts_ns, tick.price)
        if self.emulator.trails:
            self.emulator.move_trails(iid, tick.price)
        for s in self._tick_subs.get(iid, ()):
            s.on_trade_tick(tick)

    def process_order_book(self, book: OrderBook) -> None:
        process_book = getattr(self.venue, "process_book", None)
        if process_book is not None:
            # a venue matching against the book (sim.exchange.MarketVenue): book time
            # moves the clock, and the venue returns the positions it liquidated
            clock = self.clock
            if clock.next_due <= book.ts_ns:
                clock.advance_to(book.ts_ns)
            elif isinstance(clock, SimulatedClock):
                clock.set_time(book.ts_ns)
            for liquidation in process_book(book):
                self.on_liquidation(liquidation)
        mid = book.mid
        if mid is not None:
            self.last[book.instrument_id] = mid
        for s in self._book_subs.get(book.instrument_id, ()):
            s.on_order_book(book)
