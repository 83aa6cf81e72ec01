"""`TradingNode.submit_oto`: children held by the node until the parent is completely
FILLED, discarded (each with an `OrderDenied` naming the parent) when it ends otherwise,
linked with the OTO contingency fields, and held again after `restore`."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from sapphire.domain import (
    Bar,
    ClientOrderId,
    ContingencyType,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderStatus,
    OrderType,
    TradeId,
    TradingState,
    VenueOrderId,
)
from sapphire.engine import EventStrategy, TradingNode
from sapphire.risk import RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
TF = 60_000_000_000


def _inst() -> Instrument:
    return Instrument(
        BTC, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"), maker_fee=Decimal(0), taker_fee=Decimal(0),
    )  # fmt: skip


class Recorder(EventStrategy):
    def __init__(self) -> None:
        super().__init__("s")
        self.updates: list[tuple[str, OrderEvent]] = []

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        self.updates.append((str(order.client_order_id), event))


def _node(risk: RiskEngine | None = None) -> tuple[TradingNode, Recorder]:
    node = TradingNode(SimulatedVenue([_inst()], cash=100_000), run_id="r", risk=risk)
    strat = Recorder()
    node.add_strategy(strat, bars=[BTC])
    node.last[BTC] = 100.0
    return node, strat


def _bar(k: int, o: float, h: float, lo: float, c: float) -> Bar:
    return Bar(instrument_id=BTC, ts_ns=k * TF, open=o, high=h, low=lo, close=c, volume=1.0)


def _oto(strat: Recorder, entry: Order | None = None) -> tuple[Order, Order, Order]:
    parent = entry or strat.market(BTC, "BUY", Decimal(2))
    tp = strat.limit(BTC, "SELL", Decimal(1), Decimal(120), reduce_only=True)
    sl = strat.stop_market(BTC, "SELL", Decimal(2), Decimal(90), reduce_only=True)
    return parent, tp, sl


def _events(
    cid: str, *, fill: str | None = None, qty: str = "2", accept: bool = True
) -> list[OrderEvent]:
    c = ClientOrderId(cid)
    out: list[OrderEvent] = []
    if accept:  # the simulated venue accepts resting orders itself
        out.append(
            OrderAccepted(event_id="v-1", ts_ns=1, client_order_id=c,
                          venue_order_id=VenueOrderId("V"))
        )  # fmt: skip
    if fill is not None:
        out.append(
            OrderFilled(event_id="v-2", ts_ns=2, client_order_id=c, trade_id=TradeId("T1"),
                        last_qty=Decimal(qty), last_px=Decimal(fill),
                        liquidity=LiquiditySide.TAKER, fee=Decimal(0), fee_currency="USDT")
        )  # fmt: skip
    return out


def test_children_are_linked_held_and_submitted_when_the_parent_fills() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat)
    assert strat.submit_oto(parent, [tp, sl], tags=["tp", "sl"])
    pid, tid, sid = (str(o.client_order_id) for o in (parent, tp, sl))
    assert (pid, tid, sid) == ("r-s-1", "r-s-2", "r-s-3")  # the node's generator
    assert parent.contingency_type is ContingencyType.OTO
    assert parent.linked_order_ids == (tp.client_order_id, sl.client_order_id)
    assert tp.parent_order_id == parent.client_order_id == sl.parent_order_id
    # held: not sent to the venue, not among the node's orders
    assert [str(o.client_order_id) for o in node.open_orders()] == [pid]
    assert tid not in node.orders and tp.status is OrderStatus.INITIALIZED
    assert node.oto_children(pid) == (tp, sl)
    node.process_bar(_bar(1, 100, 101, 99, 100), TF)  # the parent fills at the open
    assert parent.status is OrderStatus.FILLED
    assert {str(o.client_order_id) for o in node.open_orders()} == {tid, sid}
    assert tp.status is OrderStatus.ACCEPTED and sl.status is OrderStatus.ACCEPTED
    assert node.tags[tid] == "tp" and node.tags[sid] == "sl"
    assert node.oto_children(pid) is None
    # OTO children are independent (not one-cancels-the-other): tp fills, sl stays
    node.process_bar(_bar(2, 110, 125, 105, 110), TF)
    assert tp.status is OrderStatus.FILLED and sl.status is OrderStatus.ACCEPTED
    assert node.portfolio.net_quantity(BTC) == Decimal(1)


def test_a_parent_that_expires_after_a_partial_fill_discards_the_children() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat, strat.limit(BTC, "BUY", Decimal(2), Decimal(95)))
    assert strat.submit_oto(parent, [tp, sl])
    pid = str(parent.client_order_id)
    assert parent.status is OrderStatus.ACCEPTED
    for ev in _events(pid, fill="95", qty="1", accept=False):  # partial: still held
        node.on_venue_event(ev)
    assert tp.status is OrderStatus.INITIALIZED and node.oto_children(pid) == (tp, sl)
    node.on_venue_event(OrderExpired(event_id="v-3", ts_ns=3, client_order_id=ClientOrderId(pid)))
    for child in (tp, sl):
        assert child.status is OrderStatus.REJECTED
        denied = child.events[-1]
        assert isinstance(denied, OrderDenied)
        assert denied.reason == f"OTO parent {pid} expired: child discarded"
        assert node.orders[str(child.client_order_id)] is child
    assert [cid for cid, e in strat.updates if isinstance(e, OrderDenied)] == [
        str(tp.client_order_id), str(sl.client_order_id),
    ]  # fmt: skip
    assert node.open_orders() == [] and node.oto_children(pid) is None


def test_a_canceled_parent_discards_the_children() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat, strat.limit(BTC, "BUY", Decimal(2), Decimal(50)))
    assert strat.submit_oto(parent, [tp, sl])
    node.process_bar(_bar(1, 100, 101, 99, 100), TF)
    assert strat.cancel_order(str(parent.client_order_id))
    assert parent.status is OrderStatus.CANCELED
    assert tp.status is OrderStatus.REJECTED and sl.status is OrderStatus.REJECTED
    assert "canceled" in str(getattr(tp.events[-1], "reason", ""))


def test_a_denied_parent_discards_the_children() -> None:
    node, strat = _node(RiskEngine(RiskConfig()))
    node.trading_state = TradingState.HALTED
    parent, tp, sl = _oto(strat)
    assert not strat.submit_oto(parent, [tp, sl])
    assert parent.status is OrderStatus.REJECTED
    assert tp.status is OrderStatus.REJECTED and sl.status is OrderStatus.REJECTED
    assert "denied" in str(getattr(sl.events[-1], "reason", ""))
    assert node.open_orders() == []


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
    for ev in _events(pid, fill="100"):
        again.on_venue_event(ev)
    children = {str(o.client_order_id): o for o in again.open_orders()}
    assert set(children) == {"r-s-2", "r-s-3"}
    assert all(o.status is OrderStatus.ACCEPTED for o in children.values())
    # a third restart: the children are open orders, NOT relinked one-cancels-the-other
    third, _ = _node()
    third.restore([copy.deepcopy(o) for o in again.orders.values()], again._events)
    assert third._oco == {}


def test_a_parent_filled_while_down_reports_its_children_missing() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat)
    strat.submit_oto(parent, [tp, sl])
    pid = str(parent.client_order_id)
    held = copy.deepcopy(node.oto_children(pid))
    assert held is not None
    stored = copy.deepcopy(parent)
    for ev in _events(pid, fill="100"):
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


def test_submit_oto_refuses_bad_input() -> None:
    node, strat = _node()
    parent, tp, sl = _oto(strat)
    with pytest.raises(ValueError, match="at least 1 child"):
        strat.submit_oto(parent, [])
    with pytest.raises(ValueError, match="tags: 1 given for 2"):
        strat.submit_oto(parent, [tp, sl], tags=["x"])
    with pytest.raises(ValueError, match="distinct client ids"):
        strat.submit_oto(parent, [tp, tp])
    other = strat.market(BTC, "SELL", Decimal(1), parent_order_id=ClientOrderId("elsewhere"))
    with pytest.raises(ValueError, match=r"parent_order_id=.*elsewhere.* conflicts"):
        strat.submit_oto(parent, [other])
    assert strat.submit_order(sl)
    with pytest.raises(ValueError, match="already submitted"):
        strat.submit_oto(parent, [tp, sl])
    with pytest.raises(ValueError, match="otos: order nope is not in this node"):
        node.restore([], 0, otos={"nope": [tp]})
    assert node.open_orders() == [sl]  # nothing else was sent
    assert OrderType.MARKET is parent.type and parent.status is OrderStatus.INITIALIZED
