"""Crash recovery: a restarted node adopts the orders of its interrupted run.

A paper or live session writes every order event ahead (`sapphire.store`), with what
the node holds for orders not yet filled: each bracket entry's spec (`bracket_spec`)
and each OTO parent's children (`oto_children`). After a crash it rebuilds a node and
calls `restore` before `start`; entries that filled while the node was down get their
exit legs from `place_bracket` once a price is known. `TradingNode.restore`,
`place_bracket`, `bracket_spec` and `oto_children` are these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sapphire.domain import ContingencyType, Order, OrderFilled, OrderStatus
from sapphire.engine.emulation import Bracket

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode

__all__ = ["bracket_spec", "oto_children", "place_bracket", "restore"]

_SPEC_KEYS = frozenset({"stop_loss", "take_profit", "trailing_stop", "relative"})


def restore(
    node: TradingNode,
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
    _adopt(node, orders, last_event_seq, id_seqs or {})
    _relink_legs(node)
    missing = _restore_brackets(node, brackets or {})
    missing += _restore_otos(node, otos or {})
    return missing


def _adopt(
    node: TradingNode, orders: Sequence[Order], last_event_seq: int, id_seqs: dict[str, int]
) -> None:
    """The stored orders become the node's; its id counters continue after theirs."""
    for order in orders:
        cid = str(order.client_order_id)
        if cid in node.orders:
            raise ValueError(f"order {cid} is already in this node")
        if str(order.strategy_id) not in node._by_id:
            raise ValueError(f"order {cid}: strategy {order.strategy_id!r} is not in this node")
        node.orders[cid] = order
        if order.is_open:
            node._open[cid] = order
    node._events = max(node._events, last_event_seq)
    for sid, seq in id_seqs.items():
        if sid not in node._ids:
            raise ValueError(f"id_seqs: strategy {sid!r} is not in this node")
        node._ids[sid].restore(seq)


def _relink_legs(node: TradingNode) -> None:
    """Working exit legs of one parent cancel each other again (OTO children do not)."""
    groups: dict[str, list[str]] = {}
    for cid, order in node._open.items():
        parent = node.orders.get(str(order.parent_order_id))
        if parent is not None and parent.contingency_type is ContingencyType.OTO:
            continue  # OTO children are independent orders
        if order.parent_order_id is not None:
            groups.setdefault(str(order.parent_order_id), []).append(cid)
    for group in groups.values():
        if len(group) > 1:
            node.emulator.link_oco(group)


def _restore_brackets(node: TradingNode, brackets: dict[str, dict[str, Any]]) -> list[str]:
    """Hold the brackets of open entries again; the FILLED entries missing legs."""
    held = node.emulator.brackets
    missing: list[str] = []
    for cid, spec in brackets.items():
        entry = node.orders.get(cid)
        if entry is None:
            raise ValueError(f"brackets: order {cid} is not in this node")
        unknown = sorted(set(spec) - _SPEC_KEYS)
        if unknown:
            raise ValueError(f"brackets[{cid}]: unknown keys {', '.join(unknown)}")
        bracket = Bracket(
            node._by_id[str(entry.strategy_id)], spec.get("stop_loss"),
            spec.get("take_profit"), spec.get("trailing_stop"),
            bool(spec.get("relative", True)), node.bracket_tick,
        )  # fmt: skip
        if entry.is_open:
            held[cid] = bracket
        elif entry.status is OrderStatus.FILLED:
            # legs are placed one after another in a fixed order (stop-loss, trailing
            # stop, take-profit): a node that died between two of them left a prefix
            placed = sum(1 for o in node.orders.values() if o.parent_order_id == cid)
            if placed < len(bracket.kinds()):
                bracket.placed = placed
                held[cid] = bracket
                missing.append(cid)
    return missing


def _restore_otos(node: TradingNode, otos: dict[str, Sequence[Order]]) -> list[str]:
    """Hold OTO children again; the FILLED parents whose children were never sent."""
    emulator = node.emulator
    missing: list[str] = []
    for cid, held in otos.items():
        parent = node.orders.get(cid)
        if parent is None:
            raise ValueError(f"otos: order {cid} is not in this node")
        kids = tuple(held)
        for child in kids:
            ccid = child.client_order_id
            if child.status is not OrderStatus.INITIALIZED or ccid in node.orders:
                raise ValueError(f"otos[{cid}]: order {ccid} was already submitted")
            if child.parent_order_id != cid:
                raise ValueError(f"otos[{cid}]: order {ccid} has parent {child.parent_order_id}")
        strat = node._by_id[str(parent.strategy_id)]
        tags = tuple(node.tags.get(c.client_order_id) for c in kids)
        emulator.brackets[cid] = Bracket(
            strat, None, None, None, True, node.bracket_tick, kids, tags
        )
        if parent.status is OrderStatus.FILLED:
            missing.append(cid)
        elif not parent.is_open:
            emulator.discard_children(cid, parent.status.name.lower())
    return missing


def bracket_spec(node: TradingNode, client_order_id: str) -> dict[str, Any] | None:
    """The bracket of an entry not yet filled (what `restore(brackets=)` takes)."""
    spec = node.emulator.brackets.get(client_order_id)
    if spec is None:
        return None
    return {
        "stop_loss": spec.stop_loss, "take_profit": spec.take_profit,
        "trailing_stop": spec.trailing_stop, "relative": spec.relative,
    }  # fmt: skip


def oto_children(node: TradingNode, client_order_id: str) -> tuple[Order, ...] | None:
    """The children an OTO parent not yet filled holds (what `restore(otos=)` takes)."""
    spec = node.emulator.brackets.get(client_order_id)
    return spec.children if spec is not None and spec.children else None


def place_bracket(node: TradingNode, client_order_id: str) -> bool:
    """Place the exit legs of a FILLED entry that `restore` reported as missing them
    (at the entry's last fill price); False when there is nothing to place."""
    emulator = node.emulator
    spec = emulator.brackets.get(client_order_id)
    entry = node.orders.get(client_order_id)
    if spec is None or entry is None or entry.status is not OrderStatus.FILLED:
        return False
    fill = next(e for e in reversed(entry.events) if isinstance(e, OrderFilled))
    del emulator.brackets[client_order_id]
    emulator.place(entry, fill, spec)
    return True
