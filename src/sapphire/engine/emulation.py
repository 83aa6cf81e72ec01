"""`OrderEmulator`: contingent orders and trailing stops, emulated by the node so that
they work with any venue.

- brackets (entry + stop-loss / take-profit / trailing stop) are OTO + OCO: the exit
  legs are placed when the entry fills (levels relative to the fill price, or
  absolute), and the first leg to fill cancels the others;
- OTO (`submit_oto`): child orders held here and submitted once the parent is
  completely FILLED (discarded, each with an `OrderDenied`, when the parent ends
  otherwise); brackets are OTO whose children are built from the fill price;
- OCO groups: the first order to fill cancels the others;
- trailing stops on a venue without them (`venue.supports_trailing` false) are stop
  orders whose trigger is moved after each bar/trade (`move_trails`).

The node owns one (`TradingNode.emulator`): it submits and cancels through the node,
and the node tells it about fills (`on_fill`), orders that ended otherwise
(`on_ended`) and prices (`move_trails`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sapphire.domain import (
    ClientOrderId,
    ContingencyType,
    InstrumentId,
    Order,
    OrderDenied,
    OrderFilled,
    OrderInitialized,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    TrailingOffsetType,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine.strategy import EventStrategy

if TYPE_CHECKING:
    from sapphire.engine.node import Sizer, TradingNode

__all__ = ["Bracket", "OrderEmulator", "Trail"]


@dataclass
class Bracket:
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


class Trail:
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


class OrderEmulator:
    """The node's brackets, OTO children, OCO groups and emulated trailing stops.

    `brackets` maps a parent's client id to what its fill places; `oco` a client id to
    its group; `trails` an emulated trailing stop's client id to its level.
    """

    def __init__(self, node: TradingNode) -> None:
        self.node = node
        self.brackets: dict[str, Bracket] = {}
        self.oco: dict[str, tuple[str, ...]] = {}
        self.trails: dict[str, Trail] = {}

    # ---------------------------------------------------------------- orders out
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
        """Submit `entry`; its exit legs are placed when it fills (False when denied)."""
        for name, value in (
            ("stop_loss", stop_loss),
            ("take_profit", take_profit),
            ("trailing_stop", trailing_stop),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} is invalid: expected a number > 0 or None")
        if stop_loss or take_profit or trailing_stop:
            self.brackets[entry.client_order_id] = Bracket(
                strategy, stop_loss, take_profit, trailing_stop, relative, self.node.bracket_tick
            )
        ok = self.node.submit_order(strategy, entry, tag=tag, sizer=sizer)
        if not ok:
            self.brackets.pop(entry.client_order_id, None)
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
        """One-triggers-the-others: submit `parent` now and hold `children` until the
        parent is completely FILLED (see `TradingNode.submit_oto`)."""
        node = self.node
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
            if o.status is not OrderStatus.INITIALIZED or o.client_order_id in node.orders:
                raise ValueError(f"order {o.client_order_id} was already submitted")
            if o.strategy_id != strategy.strategy_id:
                raise ValueError(
                    f"order {o.client_order_id}: strategy {o.strategy_id!r} is not "
                    f"{strategy.strategy_id!r}"
                )
        _link(parent, ContingencyType.OTO, None, ids)
        for child in kids:
            _link(child, child.contingency_type, pid, child.linked_order_ids)
        self.brackets[pid] = Bracket(
            strategy, None, None, None, True, node.bracket_tick, kids,
            tuple(tags) if tags is not None else (None,) * len(kids),
        )  # fmt: skip
        ok = node.submit_order(strategy, parent, tag=tag, sizer=sizer)
        if not ok:
            self.discard_children(pid, "denied")
        return ok

    def submit_oco(
        self,
        strategy: EventStrategy,
        orders: Sequence[Order],
        *,
        tags: Sequence[str] | None = None,
    ) -> bool:
        """Submit `orders` linked one-cancels-the-others; False when one was denied."""
        ids = tuple(o.client_order_id for o in orders)
        if len(ids) < 2:
            raise ValueError(f"an OCO group needs at least 2 orders, got {len(ids)}")
        for cid in ids:
            self.oco[cid] = ids
        ok = True
        for k, order in enumerate(orders):
            ok = self.node.submit_order(strategy, order, tag=tags[k] if tags else None) and ok
        return ok

    def link_oco(self, ids: Sequence[str]) -> None:
        """Link working orders one-cancels-the-others (a fill of one cancels the rest)."""
        group = tuple(ids)
        if len(group) < 2:
            raise ValueError(f"an OCO group needs at least 2 orders, got {len(group)}")
        for cid in group:
            if cid not in self.node.orders:
                raise ValueError(f"link_oco: order {cid} is not in this node")
        for cid in group:
            self.oco[cid] = group

    # ---------------------------------------------------------------- what orders did
    def on_fill(self, order: Order, fill: OrderFilled) -> None:
        """`order` filled (booked already): a complete fill cancels its OCO group and
        places what it held."""
        cid = order.client_order_id
        group = self.oco.pop(cid, None) if self.oco else None
        if group is not None and order.is_terminal:
            for other in group:
                self.oco.pop(other, None)
                if other != cid:
                    self.node.cancel_order(other)
        spec = self.brackets.get(cid) if self.brackets else None
        if spec is not None and order.is_terminal:
            del self.brackets[cid]
            self.place(order, fill, spec)

    def on_ended(self, order: Order) -> None:
        """`order` was canceled, rejected or expired: its held children are discarded,
        and it leaves its OCO group."""
        cid = order.client_order_id
        if cid in self.brackets:
            self.discard_children(cid, order.status.name.lower())
        group = self.oco.pop(cid, None)
        if group is not None:
            self.oco.update({o: tuple(x for x in group if x != cid) for o in group if o != cid})

    def discard_children(self, cid: str, why: str) -> None:
        """The parent `cid` ended without filling: its held OTO children are denied."""
        spec = self.brackets.pop(cid, None)
        if spec is None or not spec.children:
            return
        node = self.node
        ts = node.clock.now_ns()
        for child in spec.children:
            ccid = child.client_order_id
            node.orders[ccid] = child
            denied = OrderDenied(
                event_id=node.next_event_id(), ts_ns=ts, client_order_id=ccid,
                reason=f"OTO parent {cid} {why}: child discarded",
            )  # fmt: skip
            child.apply(denied)
            node.bus.publish(denied)
            spec.strategy.on_order_update(child, denied)

    def place(self, entry: Order, fill: OrderFilled, spec: Bracket) -> None:
        """The entry filled: place its exit legs, linked one-cancels-the-others (an
        OTO: submit its held children)."""
        node = self.node
        strat = spec.strategy
        if spec.children:
            for child, child_tag in zip(spec.children, spec.tags, strict=True):
                node.submit_order(strat, child, tag=child_tag)
            return
        iid = entry.instrument_id
        qty = entry.filled_qty
        side = entry.side.opposite
        e = float(fill.last_px)
        d = float(entry.side.sign)
        tick = spec.tick
        ts = node.clock.now_ns()

        def to_tick(x: float) -> float:
            return round(x / tick) * tick if tick > 0.0 else x

        legs: list[tuple[Order, str]] = []
        common: dict[str, Any] = {"reduce_only": True, "parent_order_id": entry.client_order_id}
        todo = set(spec.kinds()[spec.placed :])  # after a restart: only the missing legs
        if spec.stop_loss and "stop_loss" in todo:
            lvl = to_tick(e * (1.0 - d * spec.stop_loss)) if spec.relative else spec.stop_loss
            stop = Order.stop_market(
                node.next_order_id(strat), strat.strategy_id, iid, side, qty,
                to_decimal(lvl), ts_init=ts, event_id=node.next_event_id(), **common,
            )  # fmt: skip
            legs.append((stop, "stop_loss"))
        if spec.trailing_stop and "trailing_stop" in todo:
            if spec.relative:
                frac = spec.trailing_stop
                init = e * (1.0 - d * frac)
                offset = to_decimal(frac) * 100
                kind = TrailingOffsetType.PERCENT
            else:
                init = e - d * spec.trailing_stop
                offset = to_decimal(spec.trailing_stop)
                kind = TrailingOffsetType.PRICE
            trail = Order(
                node.next_order_id(strat), strat.strategy_id, iid, side,
                OrderType.TRAILING_STOP, qty, ts_init=ts, trailing_offset=offset,
                trailing_offset_type=kind, event_id=node.next_event_id(),
                trigger_price=to_decimal(init), **common,
            )  # fmt: skip
            legs.append((trail, "trailing_stop"))
        if spec.take_profit and "take_profit" in todo:
            lvl = to_tick(e * (1.0 + d * spec.take_profit)) if spec.relative else spec.take_profit
            limit = Order.limit(
                node.next_order_id(strat), strat.strategy_id, iid, side, qty,
                to_decimal(lvl), ts_init=ts, event_id=node.next_event_id(), **common,
            )  # fmt: skip
            legs.append((limit, "take_profit"))
        siblings = tuple(  # legs placed before a restart that are still working
            o.client_order_id
            for o in node.open_orders()
            if o.parent_order_id == entry.client_order_id
        )
        group = siblings + tuple(o.client_order_id for o, _ in legs)
        if len(group) > 1:
            for cid in group:
                self.oco[cid] = group
        for order, tag in legs:
            node.submit_order(strat, order, tag=tag)

    # ---------------------------------------------------------------- trailing stops
    def emulate_trailing(self, order: Order) -> Order:
        """A stop order standing in for the trailing stop `order` (same id, the current
        level), whose trigger `move_trails` moves (the venue lacks trailing stops)."""
        sign = float(order.side.sign)
        off = order.trailing_offset or Decimal(0)
        pct = order.trailing_offset_type is TrailingOffsetType.PERCENT
        frac = float(off / 100) if pct else 0.0
        offset = 0.0 if pct else float(off)
        last = self.node.last.get(order.instrument_id, math.nan)
        if order.trigger_price is not None:
            level = float(order.trigger_price)
        else:
            level = last * (1.0 + sign * frac) if pct else last + sign * offset
        if not math.isfinite(level) or level <= 0:
            raise ValueError(f"trailing stop {order.client_order_id}: no price to trail from")
        cid = order.client_order_id
        self.trails[cid] = Trail(cid, sign, frac, offset, level)
        stand_in = Order.stop_market(
            cid, order.strategy_id, order.instrument_id, order.side, order.quantity,
            to_decimal(level), ts_init=order.ts_init, reduce_only=order.reduce_only,
        )  # fmt: skip
        stand_in.apply(OrderSubmitted(ts_ns=order.ts_init, client_order_id=cid))
        return stand_in

    def move_trails(self, iid: InstrumentId, price: float) -> None:
        """Move the emulated trailing stops of `iid` after `price` (they only tighten)."""
        orders = self.node.orders
        for t in list(self.trails.values()):
            order = orders.get(t.cid)
            if order is None or not order.is_open or order.instrument_id != iid:
                continue
            cand = price * (1.0 + t.sign * t.frac) if t.frac else price + t.sign * t.offset
            if (t.sign < 0 and cand > t.level) or (t.sign > 0 and cand < t.level):
                t.level = cand
                self.node.venue.amend_order(t.cid, trigger_price=to_decimal(cand))
