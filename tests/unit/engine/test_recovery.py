"""Crash recovery (`sapphire.engine.recovery`, `TradingNode.restore`): a restarted node
adopts the stored orders, continues the ids, relinks exit legs one-cancels-the-others,
places the bracket legs of entries that filled while it was down (once, never twice)
and holds OTO children again."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderStatus,
    OrderType,
    TradeId,
    VenueOrderId,
)
from sapphire.engine import EventStrategy, TradingNode
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")


def inst(iid: InstrumentId, base: str) -> Instrument:
    return Instrument(
        iid, base, "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"), maker_fee=Decimal(0), taker_fee=Decimal(0),
    )  # fmt: skip


def _node() -> tuple[TradingNode, EventStrategy]:
    node = TradingNode(SimulatedVenue([inst(BTC, "BTC")], cash=100_000), run_id="r")
    strat = EventStrategy("s")
    node.add_strategy(strat, bars=[BTC])
    node.last[BTC] = 100.0
    return node, strat


def _fill(cid: str, px: str, qty: str = "1") -> list[OrderEvent]:
    return [
        OrderAccepted(event_id="v-1", ts_ns=1, client_order_id=ClientOrderId(cid),
                      venue_order_id=VenueOrderId("V1")),
        OrderFilled(event_id="v-2", ts_ns=2, client_order_id=ClientOrderId(cid),
                    trade_id=TradeId("T1"),
                    last_qty=Decimal(qty), last_px=Decimal(px), liquidity=LiquiditySide.TAKER,
                    fee=Decimal(0), fee_currency="USDT"),
    ]  # fmt: skip


def _crashed_entry() -> tuple[Order, dict[str, Any], int]:
    """A bracket entry submitted by a node that then died before its fill."""
    node, strat = _node()
    entry = strat.market(BTC, "BUY", Decimal(1))
    strat.submit_bracket(entry, stop_loss=0.1, take_profit=0.2)
    spec = node.bracket_spec(str(entry.client_order_id))
    assert spec == {"stop_loss": 0.1, "take_profit": 0.2, "trailing_stop": None,
                    "relative": True}  # fmt: skip
    return copy.deepcopy(entry), spec, node._events


def test_a_restored_open_entry_places_its_legs_when_it_fills() -> None:
    entry, spec, seq = _crashed_entry()
    cid = str(entry.client_order_id)
    node, _ = _node()
    missing = node.restore([entry], seq, id_seqs={"s": 1}, brackets={cid: spec})
    assert missing == []
    assert [str(o.client_order_id) for o in node.open_orders()] == [cid]
    for ev in _fill(cid, "100"):
        node.on_venue_event(ev)
    legs = [o for o in node.open_orders() if str(o.parent_order_id) == cid]
    assert sorted(o.type for o in legs) == sorted([OrderType.STOP_MARKET, OrderType.LIMIT])
    assert {str(o.client_order_id) for o in legs} == {"r-s-2", "r-s-3"}  # ids continue
    stop = next(o for o in legs if o.type is OrderType.STOP_MARKET)
    assert stop.trigger_price == Decimal("90.0") and stop.reduce_only
    # the new events' ids continue after the stored ones
    assert int(stop.events[0].event_id.rsplit("-", 1)[1]) > seq


def test_a_filled_entry_without_legs_gets_them_once() -> None:
    entry, spec, seq = _crashed_entry()
    cid = str(entry.client_order_id)
    for ev in _fill(cid, "100"):
        entry.apply(ev)
    node, _ = _node()
    assert node.restore([entry], seq, id_seqs={"s": 1}, brackets={cid: spec}) == [cid]
    assert node.place_bracket(cid)
    assert not node.place_bracket(cid)  # placed once
    legs = [o for o in node.orders.values() if str(o.parent_order_id) == cid]
    assert len(legs) == 2
    # a second restart sees the legs: nothing is missing, the legs are linked OCO
    again, _ = _node()
    stored = [copy.deepcopy(o) for o in node.orders.values()]
    assert again.restore(stored, node._events, brackets={cid: spec}) == []
    stop, tp = sorted(legs, key=lambda o: o.type is OrderType.LIMIT)
    assert stop.status is OrderStatus.ACCEPTED  # the venue took the legs
    again.on_venue_event(_fill(str(stop.client_order_id), "90")[1])
    sibling = again.orders[str(tp.client_order_id)]
    # the fill cancels the relinked sibling (this test venue never had it: refused)
    assert any(type(e).__name__ == "OrderCancelRequested" for e in sibling.events)


def test_restore_refuses_bad_input() -> None:
    entry, spec, seq = _crashed_entry()
    cid = str(entry.client_order_id)
    node, _ = _node()
    with pytest.raises(ValueError, match="last_event_seq"):
        node.restore([], -1)
    with pytest.raises(ValueError, match="strategy 'x'"):
        node.restore([], 0, id_seqs={"x": 3})
    with pytest.raises(ValueError, match="unknown keys bogus"):
        node.restore([entry], seq, brackets={cid: {**spec, "bogus": 1}})
    with pytest.raises(ValueError, match="already in this node"):
        node.restore([entry], seq)
    with pytest.raises(ValueError, match="at least 2"):
        node.link_oco([cid])
    with pytest.raises(ValueError, match="not in this node"):
        node.link_oco([cid, "nope"])


def test_a_node_that_died_between_two_legs_places_only_the_missing_one() -> None:
    entry, spec, seq = _crashed_entry()
    cid = str(entry.client_order_id)
    for ev in _fill(cid, "100"):
        entry.apply(ev)
    # the first node placed the stop-loss leg, then died before the take-profit leg
    first, _ = _node()
    assert first.restore([entry], seq, id_seqs={"s": 1}, brackets={cid: spec}) == [cid]
    assert first.place_bracket(cid)
    stop = next(o for o in first.orders.values() if o.type is OrderType.STOP_MARKET)
    stored = [copy.deepcopy(entry), copy.deepcopy(stop)]
    node, _ = _node()
    missing = node.restore(stored, first._events, id_seqs={"s": 2}, brackets={cid: spec})
    assert missing == [cid]
    assert node.place_bracket(cid)
    legs = [o for o in node.orders.values() if str(o.parent_order_id) == cid]
    assert sorted(o.type for o in legs) == sorted([OrderType.STOP_MARKET, OrderType.LIMIT])
    assert len(legs) == 2  # the stop-loss was not placed a second time
    tp = next(o for o in legs if o.type is OrderType.LIMIT)
    assert tp.price == Decimal("120.0")
    # the new take-profit is linked one-cancels-the-other with the surviving stop
    group = node.emulator.oco[str(tp.client_order_id)]
    assert set(group) == {str(stop.client_order_id), str(tp.client_order_id)}


def _oto(strat: EventStrategy, entry: Order | None = None) -> tuple[Order, Order, Order]:
    parent = entry or strat.market(BTC, "BUY", Decimal(2))
    tp = strat.limit(BTC, "SELL", Decimal(1), Decimal(120), reduce_only=True)
    sl = strat.stop_market(BTC, "SELL", Decimal(2), Decimal(90), reduce_only=True)
    return parent, tp, sl


def test_held_children_survive_a_restore() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat)
    strat.submit_oto(parent, [tp, sl])
    pid = str(parent.client_order_id)
    held = copy.deepcopy(node.oto_children(pid))
    assert held is not None
    stored, seq = copy.deepcopy(parent), node._events
    again, _ = _node()
    assert again.restore([stored], seq, id_seqs={"s": 3}, otos={pid: held}) == []
    assert again.oto_children(pid) == held
    for ev in _fill(pid, "100", qty="2"):
        again.on_venue_event(ev)
    children = {str(o.client_order_id): o for o in again.open_orders()}
    assert set(children) == {"r-s-2", "r-s-3"}
    assert all(o.status is OrderStatus.ACCEPTED for o in children.values())
    # a third restart: the children are open orders, NOT relinked one-cancels-the-other
    third, _ = _node()
    third.restore([copy.deepcopy(o) for o in again.orders.values()], again._events)
    assert third.emulator.oco == {}


def test_a_parent_filled_while_down_reports_its_children_missing() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat)
    strat.submit_oto(parent, [tp, sl])
    pid = str(parent.client_order_id)
    held = copy.deepcopy(node.oto_children(pid))
    assert held is not None
    stored = copy.deepcopy(parent)
    for ev in _fill(pid, "100", qty="2"):
        stored.apply(ev)
    again, _ = _node()
    assert again.restore([stored], node._events, otos={pid: held}) == [pid]
    assert again.place_bracket(pid) and not again.place_bracket(pid)
    assert len(again.open_orders()) == 2


def test_a_restored_parent_that_ended_unfilled_discards_its_children() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat, strat.limit(BTC, "BUY", Decimal(2), Decimal(50)))
    strat.submit_oto(parent, [tp, sl])
    pid = str(parent.client_order_id)
    held = copy.deepcopy(node.oto_children(pid))
    assert held is not None
    stored = copy.deepcopy(parent)
    stored.apply(OrderExpired(event_id="v-3", ts_ns=3, client_order_id=ClientOrderId(pid)))
    again, _ = _node()
    assert again.restore([stored], node._events, otos={pid: held}) == []
    assert all(o.status is OrderStatus.REJECTED for o in held)
    assert again.oto_children(pid) is None
