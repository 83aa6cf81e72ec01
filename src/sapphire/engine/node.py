"""`TradingNode`: one event loop for backtest, paper and live.

The node owns the clock, the message bus, the orders (domain `Order`s and their state
machine), the portfolio (`sapphire.portfolio`, positions per strategy) and, when
configured, the pre-trade risk engine (`sapphire.risk`). Strategies talk to it through
`EventStrategy` helpers; the venue (simulated or an exchange adapter) receives orders
with `submit_order(order, sizer)` / `cancel_order` / `amend_order` and answers with
order events passed to `on_venue_event`, which applies them to the order, books fills,
publishes them on the bus and calls the strategy back.

Order management done by the node, so that it works with any venue:

- client order ids are `"{run_id}-{strategy_id}-{seq}"` (`ClientOrderIdGenerator`):
  deterministic, so a resubmission after a crash reuses the id;
- brackets (entry + stop-loss / take-profit / trailing stop) are OTO + OCO: the exit
  legs are placed when the entry fills (levels relative to the fill price, or
  absolute), and the first leg to fill cancels the others;
- OTO (`submit_oto`): child orders held by the node and submitted once the parent is
  completely FILLED (discarded, each with an `OrderDenied`, when the parent ends
  otherwise); brackets are OTO whose children are built from the fill price;
- OCO groups: the first order to fill cancels the others;
- trailing stops on a venue without them (`venue.supports_trailing` false) are stop
  orders whose trigger the node moves after each bar/trade.

Only the clock and the venue differ between modes; `run_bars` is the backtest replay
loop (a market data event per bar, timers fired as the simulated clock passes them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import numpy as np

from sapphire.domain import (
    Bar,
    ClientOrderId,
    ClientOrderIdGenerator,
    ContingencyType,
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
    OrderInitialized,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    RiskEvent,
    TradeTick,
    TradingState,
    TrailingOffsetType,
)
from sapphire.domain.events import trusted_builder
from sapphire.engine.bus import MessageBus
from sapphire.engine.clock import Clock, SimulatedClock
from sapphire.engine.strategy import EventStrategy
from sapphire.gc_tuning import rare_gc_passes
from sapphire.portfolio import Account, Portfolio
from sapphire.risk import RiskContext, RiskEngine, severity

__all__ = ["BarFeed", "FundingPaid", "TradingNode", "Venue"]

Sizer = Callable[[Decimal, Decimal], "Decimal | str"]
_OE = TypeVar("_OE", bound=OrderEvent)
_new_context = trusted_builder(RiskContext)
_TRAILING_STOP = OrderType.TRAILING_STOP


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


@dataclass(frozen=True, eq=False)
class BarFeed:
    """Bars of one instrument for a replay: arrays of open times (ns), OHLCV and the
    bar length; `funding` optional per-bar summed funding rates."""

    instrument_id: InstrumentId
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe_ns: int
    funding: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.close.shape[0])


@dataclass(frozen=True, slots=True)
class FundingPaid:
    """A funding payment booked on the node's portfolio (`amount` < 0 when paid)."""

    instrument_id: InstrumentId
    ts_ns: int
    rate: float
    amount: Decimal


@dataclass
class _Bracket:
    """What to place when an entry fills: exit legs (a bracket) or, for an OTO, the
    held `children` orders (submitted as they are, with their `tags`)."""

    strategy: EventStrategy
    stop_loss: float | None
    take_profit: float | None
    trailing_stop: float | None
    relative: bool
    tick: float
    children: tuple[Order, ...] = ()
    tags: tuple[str | None, ...] = ()
    placed: int = 0  # legs already placed before a restart (a prefix of `kinds()`)

    def kinds(self) -> tuple[str, ...]:
        """The exit legs, in the order they are placed."""
        return tuple(
            kind
            for kind, value in (
                ("stop_loss", self.stop_loss),
                ("trailing_stop", self.trailing_stop),
                ("take_profit", self.take_profit),
            )
            if value
        )


class _Trail:
    """A trailing stop emulated with a stop order whose trigger the node moves."""

    __slots__ = ("cid", "frac", "level", "offset", "sign")

    def __init__(self, cid: str, sign: float, frac: float, offset: float, level: float) -> None:
        self.cid, self.sign, self.frac, self.offset, self.level = cid, sign, frac, offset, level


def _link(
    order: Order,
    kind: ContingencyType,
    parent: ClientOrderId | None,
    linked: Sequence[ClientOrderId],
) -> None:
    """Set the contingency fields of an INITIALIZED order in place (its only event is
    `OrderInitialized`, replaced); fields already set must agree."""
    init = order.events[0]
    assert isinstance(init, OrderInitialized)
    want = (kind, parent, tuple(linked))
    have = (init.contingency_type, init.parent_order_id, init.linked_order_ids)
    if have == want:
        return
    blank = (ContingencyType.NONE, None, ())
    for k, (h, w) in enumerate(zip(have, want, strict=True)):
        if h != w and h != blank[k]:
            raise ValueError(
                f"order {order.client_order_id}: contingency field "
                f"{('contingency_type', 'parent_order_id', 'linked_order_ids')[k]}={h!r} "
                f"conflicts with the OTO ({w!r})"
            )
    order._reset(
        replace(init, contingency_type=kind, parent_order_id=parent, linked_order_ids=tuple(linked))
    )


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
        # a strategy's own state (e.g. its drawdown limit, set by a `RiskMonitor`): its
        # orders are checked under the more severe of this and `trading_state`
        self.strategy_states: dict[str, TradingState] = {}
        if portfolio is None:
            ccy = currency or getattr(venue, "currency", None) or "USDT"
            start = cash if cash is not None else venue.balance(ccy)
            # the node's book mirrors the venue's margin: its leverage when it has one,
            # else 1 (no credit beyond the cash for the pre-trade balance check)
            venue_leverage = getattr(venue, "leverage", None)
            portfolio = Portfolio(
                Account(ccy, {ccy: Decimal(str(start))}, Decimal(str(venue_leverage or 1)))
            )
            for inst in getattr(venue, "instruments", {}).values():
                portfolio.add_instrument(inst)
        self.portfolio = portfolio
        self.orders: dict[str, Order] = {}
        self.tags: dict[str, str] = {}
        self.last: dict[InstrumentId, float] = {}
        self.strategies: list[EventStrategy] = []
        self._by_id: dict[str, EventStrategy] = {}
        self._ids: dict[str, ClientOrderIdGenerator] = {}
        self._open: dict[str, Order] = {}
        self._brackets: dict[str, _Bracket] = {}
        self._oco: dict[str, tuple[str, ...]] = {}
        self._trails: dict[str, _Trail] = {}
        self._bar_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self._index_subs: dict[InstrumentId, list[Any]] = {}
        self._tick_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self._book_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self.bar_index = -1
        self._events = 0
        self._mark_cache: dict[InstrumentId, tuple[float, Decimal]] = {}
        self._running = False
        venue.on_event = self.on_venue_event

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
        index_bars = getattr(strategy, "wants_bar_index", False)
        for iid in bars:
            target = self._index_subs if index_bars else self._bar_subs
            target.setdefault(iid, []).append(strategy)
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
        """Adopt the orders of an interrupted run (rebuilt from a store), before `start`.

        `orders` become the node's orders (the open ones its working orders);
        `last_event_seq` moves the event-id counter past the stored ids (`{run_id}-N`);
        `id_seqs` restores each strategy's client-order-id generator to its last used
        sequence (a new order never reuses an id); `brackets` maps an entry's client id
        to its bracket spec (`bracket_spec`): an open entry gets its exit legs when it
        fills, as before the restart. Returns the ids of the FILLED entries whose legs
        are missing (the node died between the fill and the legs):
        `place_bracket(cid)` places them once a price is known. Sibling exit legs
        (one parent) are relinked one-cancels-the-others. `otos` maps an OTO parent's
        client id to its held children (`oto_children`, INITIALIZED orders): held again
        while the parent is open, reported missing like a bracket when it FILLED
        without them, discarded when it ended otherwise.
        """
        if not (isinstance(last_event_seq, int) and last_event_seq >= 0):
            raise ValueError(f"last_event_seq={last_event_seq!r} is invalid: expected an int >= 0")
        for order in orders:
            cid = str(order.client_order_id)
            if cid in self.orders:
                raise ValueError(f"order {cid} is already in this node")
            if str(order.strategy_id) not in self._by_id:
                raise ValueError(f"order {cid}: strategy {order.strategy_id!r} is not in this node")
            self.orders[cid] = order
            if order.is_open:
                self._open[cid] = order
        self._events = max(self._events, last_event_seq)
        for sid, seq in (id_seqs or {}).items():
            if sid not in self._ids:
                raise ValueError(f"id_seqs: strategy {sid!r} is not in this node")
            self._ids[sid].restore(seq)
        groups: dict[str, list[str]] = {}
        for cid, order in self._open.items():
            parent = self.orders.get(str(order.parent_order_id))
            if parent is not None and parent.contingency_type is ContingencyType.OTO:
                continue  # OTO children are independent orders
            if order.parent_order_id is not None:
                groups.setdefault(str(order.parent_order_id), []).append(cid)
        for group in groups.values():
            if len(group) > 1:
                self.link_oco(group)
        missing: list[str] = []
        for cid, spec in (brackets or {}).items():
            entry = self.orders.get(cid)
            if entry is None:
                raise ValueError(f"brackets: order {cid} is not in this node")
            unknown = sorted(set(spec) - {"stop_loss", "take_profit", "trailing_stop", "relative"})
            if unknown:
                raise ValueError(f"brackets[{cid}]: unknown keys {', '.join(unknown)}")
            bracket = _Bracket(
                self._by_id[str(entry.strategy_id)], spec.get("stop_loss"),
                spec.get("take_profit"), spec.get("trailing_stop"),
                bool(spec.get("relative", True)), self.bracket_tick,
            )  # fmt: skip
            if entry.is_open:
                self._brackets[cid] = bracket
            elif entry.status is OrderStatus.FILLED:
                # legs are placed one after another in a fixed order (stop-loss, trailing
                # stop, take-profit): a node that died between two of them left a prefix
                placed = sum(1 for o in self.orders.values() if o.parent_order_id == cid)
                if placed < len(bracket.kinds()):
                    bracket.placed = placed
                    self._brackets[cid] = bracket
                    missing.append(cid)
        for cid, held in (otos or {}).items():
            parent = self.orders.get(cid)
            if parent is None:
                raise ValueError(f"otos: order {cid} is not in this node")
            kids = tuple(held)
            for child in kids:
                ccid = child.client_order_id
                if child.status is not OrderStatus.INITIALIZED or ccid in self.orders:
                    raise ValueError(f"otos[{cid}]: order {ccid} was already submitted")
                if child.parent_order_id != cid:
                    raise ValueError(
                        f"otos[{cid}]: order {ccid} has parent {child.parent_order_id}"
                    )
            strat = self._by_id[str(parent.strategy_id)]
            tags = tuple(self.tags.get(c.client_order_id) for c in kids)
            self._brackets[cid] = _Bracket(
                strat, None, None, None, True, self.bracket_tick, kids, tags
            )
            if parent.status is OrderStatus.FILLED:
                missing.append(cid)
            elif not parent.is_open:
                self._discard_children(cid, parent.status.name.lower())
        return missing

    def link_oco(self, ids: Sequence[str]) -> None:
        """Link working orders one-cancels-the-others (a fill of one cancels the rest)."""
        group = tuple(ids)
        if len(group) < 2:
            raise ValueError(f"an OCO group needs at least 2 orders, got {len(group)}")
        for cid in group:
            if cid not in self.orders:
                raise ValueError(f"link_oco: order {cid} is not in this node")
        for cid in group:
            self._oco[cid] = group

    def bracket_spec(self, client_order_id: str) -> dict[str, Any] | None:
        """The bracket of an entry not yet filled (what `restore(brackets=)` takes)."""
        spec = self._brackets.get(client_order_id)
        if spec is None:
            return None
        return {
            "stop_loss": spec.stop_loss, "take_profit": spec.take_profit,
            "trailing_stop": spec.trailing_stop, "relative": spec.relative,
        }  # fmt: skip

    def place_bracket(self, client_order_id: str) -> bool:
        """Place the exit legs of a FILLED entry that `restore` reported as missing them
        (at the entry's last fill price); False when there is nothing to place."""
        spec = self._brackets.get(client_order_id)
        entry = self.orders.get(client_order_id)
        if spec is None or entry is None or entry.status is not OrderStatus.FILLED:
            return False
        fill = next(e for e in reversed(entry.events) if isinstance(e, OrderFilled))
        del self._brackets[client_order_id]
        self._place_bracket(entry, fill, spec)
        return True

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
        """The last prices as Decimals (``Decimal(repr(price))``, converted once per price)."""
        cache = self._mark_cache
        marks: dict[InstrumentId, Decimal] = {}
        for iid, price in self.last.items():
            hit = cache.get(iid)
            if hit is None or hit[0] is not price:  # the very same price object: reuse
                hit = cache[iid] = (price, Decimal(repr(price)))
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
        cid = order.client_order_id
        if cid in self.orders:
            raise ValueError(f"order {cid} was already submitted")
        self.orders[cid] = order
        if tag is not None:
            self.tags[cid] = tag
        ts = self.clock.now_ns()
        if self.risk is not None:
            reason = self._risk_check(order, ts, sizer)
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
            order = self._emulated_trailing(order)
        self.venue.submit_order(order, sizer)
        return True

    def _risk_check(self, order: Order, ts: int, sizer: Sizer | None = None) -> str | None:
        """The pre-trade check of `order`. With a `sizer` (the quantity is worked out at
        the fill), the check sees the quantity the sizer gives at the latest price
        (the last close; a bar venue fills at the next open) and the portfolio's equity
        now, not the order's placeholder quantity; the order sent keeps the sizer."""
        assert self.risk is not None
        iid = order.instrument_id
        inst = self.portfolio.instrument(iid)
        last = self.last.get(iid)
        if last is None:
            return f"no price seen yet for {iid}: cannot check the order"
        marks = self._marks()
        portfolio = self.portfolio
        account = portfolio.account
        mark = marks[iid]
        state = self.trading_state
        own = self.strategy_states.get(order.strategy_id) if self.strategy_states else None
        if own is not None and severity(own) > severity(state):
            state = own
        # the rest comes from the node's own books (finite Decimals, gross >= 0,
        # leverage > 0): with a valid time, state and mark, skip RiskContext's checks
        trusted = (
            type(ts) is int
            and type(state) is TradingState
            and type(mark) is Decimal
            and mark.is_finite()
            and mark > 0
        )
        ctx = (_new_context if trusted else RiskContext)(
            instrument=inst,
            last_price=mark,
            position_qty=portfolio.net_quantity(iid),
            gross_exposure=portfolio.gross_exposure(marks),
            open_orders=len(self._open),
            free_balance=account.free_margin(inst.settlement, marks),
            trading_state=state,
            ts_ns=ts,
            leverage=account.leverage,
        )
        checked = order
        if sizer is not None:
            est = sizer(mark, portfolio.equity(marks))
            if isinstance(est, Decimal) and est.is_finite() and est > 0:
                init = order.events[0]
                assert isinstance(init, OrderInitialized)
                checked = Order.from_init(replace(init, quantity=inst.quantize_qty(est)))
        decision = self.risk.check(checked, ctx)
        if decision.ok:
            return None
        if checked is not order:
            return (
                f"{decision.reason} (quantity {checked.quantity.normalize():f} estimated by the "
                f"sizer at the "
                f"last price {mark})"
            )
        return decision.reason

    def cancel_order(self, client_order_id: str) -> bool:
        order = self._open.get(client_order_id)
        if order is None:
            return False
        if order.status is OrderStatus.PENDING_CANCEL:
            return False
        self._trails.pop(client_order_id, None)
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
        for name, value in (
            ("stop_loss", stop_loss),
            ("take_profit", take_profit),
            ("trailing_stop", trailing_stop),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} is invalid: expected a number > 0 or None")
        if stop_loss or take_profit or trailing_stop:
            self._brackets[entry.client_order_id] = _Bracket(
                strategy, stop_loss, take_profit, trailing_stop, relative, self.bracket_tick
            )
        ok = self.submit_order(strategy, entry, tag=tag, sizer=sizer)
        if not ok:
            self._brackets.pop(entry.client_order_id, None)
        return ok

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
        """One-triggers-the-others: submit `parent` now and hold `children` (emulated by
        the node) until the parent is completely FILLED, then submit them as they are
        (their own quantities, `tags[k]`). A parent that ends otherwise (denied,
        rejected, canceled, expired, even after a partial fill) discards the children:
        each gets an `OrderDenied` naming the parent. Orders built with the strategy
        helpers (ids from the node's generator) are linked here, in place: the parent
        gets `contingency_type` OTO and `linked_order_ids` = the children, each child
        `parent_order_id` = the parent (orders already carrying these must match).
        False when the parent is denied.
        """
        kids = tuple(children)
        if not kids:
            raise ValueError("an OTO needs at least 1 child order, got 0")
        if tags is not None and len(tags) != len(kids):
            raise ValueError(f"tags: {len(tags)} given for {len(kids)} children")
        pid = parent.client_order_id
        ids = tuple(o.client_order_id for o in kids)
        if len(set(ids) | {pid}) != len(ids) + 1:
            raise ValueError(f"an OTO's orders need distinct client ids, got {pid}, {ids}")
        for o in (parent, *kids):
            if o.status is not OrderStatus.INITIALIZED or o.client_order_id in self.orders:
                raise ValueError(f"order {o.client_order_id} was already submitted")
            if o.strategy_id != strategy.strategy_id:
                raise ValueError(
                    f"order {o.client_order_id}: strategy {o.strategy_id!r} is not "
                    f"{strategy.strategy_id!r}"
                )
        _link(parent, ContingencyType.OTO, None, ids)
        for child in kids:
            _link(child, child.contingency_type, pid, child.linked_order_ids)
        self._brackets[pid] = _Bracket(
            strategy, None, None, None, True, self.bracket_tick, kids,
            tuple(tags) if tags is not None else (None,) * len(kids),
        )  # fmt: skip
        ok = self.submit_order(strategy, parent, tag=tag, sizer=sizer)
        if not ok:
            self._discard_children(pid, "denied")
        return ok

    def oto_children(self, client_order_id: str) -> tuple[Order, ...] | None:
        """The children an OTO parent not yet filled holds (what `restore(otos=)` takes)."""
        spec = self._brackets.get(client_order_id)
        return spec.children if spec is not None and spec.children else None

    def _discard_children(self, cid: str, why: str) -> None:
        """The parent `cid` ended without filling: its held OTO children are denied."""
        spec = self._brackets.pop(cid, None)
        if spec is None or not spec.children:
            return
        ts = self.clock.now_ns()
        for child in spec.children:
            ccid = child.client_order_id
            self.orders[ccid] = child
            denied = OrderDenied(
                event_id=self.next_event_id(), ts_ns=ts, client_order_id=ccid,
                reason=f"OTO parent {cid} {why}: child discarded",
            )  # fmt: skip
            child.apply(denied)
            self.bus.publish(denied)
            spec.strategy.on_order_update(child, denied)

    def submit_oco(
        self,
        strategy: EventStrategy,
        orders: Sequence[Order],
        *,
        tags: Sequence[str] | None = None,
    ) -> bool:
        ids = tuple(o.client_order_id for o in orders)
        if len(ids) < 2:
            raise ValueError(f"an OCO group needs at least 2 orders, got {len(ids)}")
        for cid in ids:
            self._oco[cid] = ids
        ok = True
        for k, order in enumerate(orders):
            ok = self.submit_order(strategy, order, tag=tags[k] if tags else None) and ok
        return ok

    def _place_bracket(self, entry: Order, fill: OrderFilled, spec: _Bracket) -> None:
        """The entry filled: place its exit legs, linked one-cancels-the-others (an
        OTO: submit its held children)."""
        strat = spec.strategy
        if spec.children:
            for child, child_tag in zip(spec.children, spec.tags, strict=True):
                self.submit_order(strat, child, tag=child_tag)
            return
        iid = entry.instrument_id
        qty = entry.filled_qty
        side = entry.side.opposite
        e = float(fill.last_px)
        d = float(entry.side.sign)
        tick = spec.tick
        ts = self.clock.now_ns()

        def to_tick(x: float) -> float:
            return round(x / tick) * tick if tick > 0.0 else x

        legs: list[tuple[Order, str]] = []
        common: dict[str, Any] = {"reduce_only": True, "parent_order_id": entry.client_order_id}
        ids = self._ids[strat.strategy_id]
        todo = set(spec.kinds()[spec.placed :])  # after a restart: only the missing legs
        if spec.stop_loss and "stop_loss" in todo:
            lvl = to_tick(e * (1.0 - d * spec.stop_loss)) if spec.relative else spec.stop_loss
            legs.append(
                (
                    Order.stop_market(
                        ids.next(),
                        strat.strategy_id,
                        iid,
                        side,
                        qty,
                        Decimal(repr(lvl)),
                        ts_init=ts,
                        event_id=self.next_event_id(),
                        **common,
                    ),
                    "stop_loss",
                )
            )
        if spec.trailing_stop and "trailing_stop" in todo:
            if spec.relative:
                frac = spec.trailing_stop
                init = e * (1.0 - d * frac)
                offset = Decimal(repr(frac)) * 100
                kind = TrailingOffsetType.PERCENT
            else:
                init = e - d * spec.trailing_stop
                offset = Decimal(repr(spec.trailing_stop))
                kind = TrailingOffsetType.PRICE
            legs.append(
                (
                    Order(
                        ids.next(),
                        strat.strategy_id,
                        iid,
                        side,
                        OrderType.TRAILING_STOP,
                        qty,
                        ts_init=ts,
                        trailing_offset=offset,
                        trailing_offset_type=kind,
                        event_id=self.next_event_id(),
                        trigger_price=Decimal(repr(init)),
                        **common,
                    ),
                    "trailing_stop",
                )
            )
        if spec.take_profit and "take_profit" in todo:
            lvl = to_tick(e * (1.0 + d * spec.take_profit)) if spec.relative else spec.take_profit
            legs.append(
                (
                    Order.limit(
                        ids.next(),
                        strat.strategy_id,
                        iid,
                        side,
                        qty,
                        Decimal(repr(lvl)),
                        ts_init=ts,
                        event_id=self.next_event_id(),
                        **common,
                    ),
                    "take_profit",
                )
            )
        siblings = tuple(  # legs placed before a restart that are still working
            o.client_order_id
            for o in self._open.values()
            if o.parent_order_id == entry.client_order_id
        )
        group = siblings + tuple(o.client_order_id for o, _ in legs)
        if len(group) > 1:
            for cid in group:
                self._oco[cid] = group
        for order, tag in legs:
            self.submit_order(strat, order, tag=tag)

    def _emulated_trailing(self, order: Order) -> Order:
        """Replace a trailing stop by a stop order the node trails (venue lacks them)."""
        sign = float(order.side.sign)
        off = order.trailing_offset or Decimal(0)
        pct = order.trailing_offset_type is TrailingOffsetType.PERCENT
        frac = float(off / 100) if pct else 0.0
        offset = 0.0 if pct else float(off)
        last = self.last.get(order.instrument_id, math.nan)
        if order.trigger_price is not None:
            level = float(order.trigger_price)
        else:
            level = last * (1.0 + sign * frac) if pct else last + sign * offset
        if not math.isfinite(level) or level <= 0:
            raise ValueError(f"trailing stop {order.client_order_id}: no price to trail from")
        cid = order.client_order_id
        self._trails[cid] = _Trail(cid, sign, frac, offset, level)
        # the venue sees a stop order with the same id and the current level
        stand_in = Order.stop_market(
            cid, order.strategy_id, order.instrument_id, order.side, order.quantity,
            Decimal(repr(level)), ts_init=order.ts_init, reduce_only=order.reduce_only,
        )  # fmt: skip
        stand_in.apply(OrderSubmitted(ts_ns=order.ts_init, client_order_id=cid))
        return stand_in

    def _move_trails(self, iid: InstrumentId, price: float) -> None:
        for t in list(self._trails.values()):
            order = self._open.get(t.cid)
            if order is None or order.instrument_id != iid:
                continue
            cand = price * (1.0 + t.sign * t.frac) if t.frac else price + t.sign * t.offset
            if (t.sign < 0 and cand > t.level) or (t.sign > 0 and cand < t.level):
                t.level = cand
                self.venue.amend_order(t.cid, trigger_price=Decimal(repr(cand)))

    # ---------------------------------------------------------------- venue events in
    def on_venue_event(self, event: OrderEvent) -> None:
        cid = event.client_order_id
        order = self.orders.get(cid)
        if order is None:
            raise ValueError(f"venue event for an unknown order {cid}: {event!r}")
        if (
            self._trails
            and cid in self._trails
            and type(event) is OrderUpdated
            and event.trigger_price is not None
        ):
            self.bus.publish(event)  # the emulated trail moved: the order spec is unchanged
            return
        order.apply(event)
        if order.is_terminal:
            self._open.pop(cid, None)
            self._trails.pop(cid, None)
        bus = self.bus
        bus.publish(event)
        strategy = self._by_id[order.strategy_id]
        if type(event) is OrderFilled:
            result = self.portfolio.apply_order_fill(order, event)
            if result.event is not None:
                bus.publish(result.event)
            group = self._oco.pop(cid, None) if self._oco else None
            if group is not None and order.is_terminal:
                for other in group:
                    self._oco.pop(other, None)
                    if other != cid:
                        self.cancel_order(other)
            spec = self._brackets.get(cid) if self._brackets else None
            if spec is not None and order.is_terminal:
                del self._brackets[cid]
                self._place_bracket(order, event, spec)
            strategy.on_fill(order, event)
        else:
            if isinstance(event, (OrderCanceled, OrderRejected, OrderExpired)):
                if cid in self._brackets:
                    self._discard_children(cid, order.status.name.lower())
                group = self._oco.pop(cid, None)
                if group is not None:
                    self._oco.update(
                        {o: tuple(x for x in group if x != cid) for o in group if o != cid}
                    )
            strategy.on_order_update(order, event)

    # ---------------------------------------------------------------- market data in
    def process_bar(self, bar: Bar, timeframe_ns: int, funding_rate: float = 0.0) -> None:
        """One bar of `bar.instrument_id` (paper/live, or a hand-fed backtest)."""
        iid = bar.instrument_id
        venue = self.venue
        if funding_rate:
            self._funding(iid, funding_rate, bar.open, bar.ts_ns)
        end = bar.ts_ns + timeframe_ns
        venue.process_bar(iid, bar.ts_ns, bar.open, bar.high, bar.low, bar.close, end)
        self._after_bar(iid, end, bar.close)
        for s in self._bar_subs.get(iid, ()):
            s.on_bar(bar)

    def _after_bar(self, iid: InstrumentId, end: int, close: float) -> None:
        clock = self.clock
        if clock.next_due <= end:
            clock.advance_to(end)
        elif isinstance(clock, SimulatedClock):
            clock.ts_ns = end
        self.last[iid] = close
        if self._trails:
            self._move_trails(iid, close)

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
            # a venue matching ticks and books (sim.exchange.MarketVenue): it reports the
            # positions it liquidated, booked here on the strategies holding them
            for liquidation in process_trade(tick):
                liquidation.book(self.portfolio, self.bus)
        elif self.venue.has_work(iid):
            self.venue.process_price(iid, tick.ts_ns, tick.price)
        if self._trails:
            self._move_trails(iid, tick.price)
        for s in self._tick_subs.get(iid, ()):
            s.on_trade_tick(tick)

    def process_order_book(self, book: OrderBook) -> None:
        process_book = getattr(self.venue, "process_book", None)
        if process_book is not None:
            # a venue matching against the book (sim.exchange.MarketVenue): book time
            # moves the clock, and the venue reports the positions it liquidated
            clock = self.clock
            if clock.next_due <= book.ts_ns:
                clock.advance_to(book.ts_ns)
            elif isinstance(clock, SimulatedClock):
                clock.set_time(book.ts_ns)
            for liquidation in process_book(book):
                liquidation.book(self.portfolio, self.bus)
        mid = book.mid
        if mid is not None:
            self.last[book.instrument_id] = mid
        for s in self._book_subs.get(book.instrument_id, ()):
            s.on_order_book(book)

    def run_bars(self, feeds: Sequence[BarFeed]) -> None:
        """Replay bars (a backtest): every feed's bars in time order, then stop.

        Per bar: funding, the venue matches (market orders at the open, resting orders
        along the OHLC path), the clock moves to the bar's close (timers fire), then
        subscribers get the bar. Strategies that take bar indices (`VectorAdapter`) are
        called only on the bars they asked for; a `Bar` object is built only when a
        strategy subscribed to bars.
        """
        self.start()
        with rare_gc_passes():  # the replay keeps every order and its events
            if len(feeds) == 1:
                f = feeds[0]
                self._run_one(f)
            else:
                times = np.concatenate([f.time for f in feeds])
                which = np.concatenate([np.full(len(f), k) for k, f in enumerate(feeds)])
                idx = np.concatenate([np.arange(len(f)) for f in feeds])
                perm = np.lexsort((which, times))
                order = list(zip(which[perm].tolist(), idx[perm].tolist(), strict=True))
                self._run_merged(feeds, order)

    def _run_one(self, f: BarFeed) -> None:
        iid = f.instrument_id
        venue = self.venue
        book_of = getattr(venue, "book_of", None)
        book = book_of(iid) if book_of is not None else None
        times = f.time.tolist()
        o_, h_, l_, c_ = f.open.tolist(), f.high.tolist(), f.low.tolist(), f.close.tolist()
        vol = f.volume.tolist()
        tf = f.timeframe_ns
        fund = f.funding
        fund_l = fund.tolist() if fund is not None and np.any(fund) else None
        bar_subs = self._bar_subs.get(iid, [])
        index_subs = self._index_subs.get(iid, [])
        masks = [s.bar_mask for s in index_subs]
        single = index_subs[0] if len(index_subs) == 1 and not bar_subs else None
        mask0: list[bool] = masks[0] if single is not None else []
        clock = self.clock
        sim = isinstance(clock, SimulatedClock)
        sim_clock = clock if isinstance(clock, SimulatedClock) else SimulatedClock()
        last = self.last
        for i in range(len(times)):
            ts = times[i]
            if fund_l is not None and fund_l[i] != 0.0:
                self._funding(iid, fund_l[i], o_[i], ts)
            if book is None or book.queued or book.resting:
                self.bar_index = i
                venue.process_bar(iid, ts, o_[i], h_[i], l_[i], c_[i], ts + tf)
            end = ts + tf
            if single is not None and not self._trails and sim and clock.next_due > end:
                # the hot path: one index-driven strategy, nothing else to do
                if mask0[i]:
                    sim_clock.ts_ns = end
                    last[iid] = c_[i]
                    self.bar_index = i
                    single.on_bar_index(i)
                continue
            self.bar_index = i
            self._after_bar(iid, end, c_[i])
            if bar_subs:
                bar = Bar(
                    instrument_id=iid, ts_ns=ts, open=o_[i], high=h_[i], low=l_[i],
                    close=c_[i], volume=vol[i],
                )  # fmt: skip
                for s in bar_subs:
                    s.on_bar(bar)
            for k, s in enumerate(index_subs):
                if masks[k][i]:
                    s.on_bar_index(i)
        if times:
            last[iid] = c_[-1]
            if sim:
                sim_clock.ts_ns = max(sim_clock.ts_ns, times[-1] + tf)

    def _run_merged(self, feeds: Sequence[BarFeed], order: list[tuple[int, int]]) -> None:
        for k, i in order:
            f = feeds[k]
            iid = f.instrument_id
            ts = int(f.time[i])
            o, c = float(f.open[i]), float(f.close[i])
            if f.funding is not None and f.funding[i] != 0.0:
                self._funding(iid, float(f.funding[i]), o, ts)
            self.bar_index = i
            end = ts + f.timeframe_ns
            self.venue.process_bar(iid, ts, o, float(f.high[i]), float(f.low[i]), c, end)
            self._after_bar(iid, end, c)
            subs = self._bar_subs.get(iid)
            if subs:
                bar = Bar(
                    instrument_id=iid, ts_ns=ts, open=o, high=float(f.high[i]),
                    low=float(f.low[i]), close=c, volume=float(f.volume[i]),
                )  # fmt: skip
                for s in subs:
                    s.on_bar(bar)
            for s in self._index_subs.get(iid, ()):
                if s.bar_mask[i]:
                    s.on_bar_index(i)

    def _funding(self, iid: InstrumentId, rate: float, mark: float, ts: int) -> None:
        venue = self.venue
        if hasattr(venue, "apply_funding"):
            venue.apply_funding(iid, rate, mark, ts)
        if self.portfolio.net_quantity(iid) == 0:
            return
        amount = self.portfolio.apply_funding(iid, Decimal(repr(rate)), Decimal(repr(mark)), ts)
        self.bus.publish(FundingPaid(instrument_id=iid, ts_ns=ts, rate=rate, amount=amount))
