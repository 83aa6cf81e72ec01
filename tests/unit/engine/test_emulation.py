"""`OrderEmulator` (`node.emulator`): brackets placed at the entry's fill, one leg
cancelling the others; OCO groups; trailing stops emulated on a venue without them; OTO
children held until the parent is completely FILLED, discarded (each with an
`OrderDenied` naming the parent) when it ends otherwise, linked with the OTO
contingency fields."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
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
from sapphire.engine import BarFeed, EventStrategy, TradingNode
from sapphire.risk import RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
TF = 60_000_000_000


def _inst(maker_fee: str = "0", taker_fee: str = "0") -> Instrument:
    return Instrument(
        BTC, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"), maker_fee=Decimal(maker_fee), taker_fee=Decimal(taker_fee),
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


def feed(closes: list[float]) -> BarFeed:
    c = np.asarray(closes, dtype=float)
    o = np.concatenate(([c[0]], c[:-1]))
    return BarFeed(
        BTC, np.arange(len(c), dtype=np.int64) * TF, o, np.maximum(o, c) + 0.5,
        np.minimum(o, c) - 0.5, c, np.ones(len(c)), TF,
    )  # fmt: skip


def node_for(native: bool = True) -> TradingNode:
    venue = SimulatedVenue([_inst("0.0002", "0.0005")], cash=100_000, native_trailing=native)
    return TradingNode(venue, run_id="t")


class Scripted(EventStrategy):
    """Runs `script(self, bar_number)` on each bar."""

    def __init__(self, name: str, script: Any) -> None:
        super().__init__(name)
        self.script = script
        self.n = 0
        self.events: list[str] = []

    def on_bar(self, bar: Bar) -> None:
        self.script(self, self.n)
        self.n += 1

    def on_fill(self, order: Order, fill: OrderFilled) -> None:
        self.events.append(f"fill:{self.node.tags.get(order.client_order_id)}:{fill.last_px}")

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        self.events.append(f"{type(event).__name__}:{self.node.tags.get(order.client_order_id)}")


def test_bracket_legs_are_placed_at_the_fill_and_cancel_each_other() -> None:
    def script(s: Scripted, n: int) -> None:
        if n == 0:
            s.submit_bracket(s.market(BTC, "BUY", 1), stop_loss=0.05, take_profit=0.03, tag="entry")

    node = node_for()
    strat = Scripted("br", script)
    node.add_strategy(strat, bars=[BTC])
    # entry at 100 (open of bar 1); TP at 103 is reached at bar 3
    node.run_bars([feed([100, 100, 101, 104, 104, 90])])
    assert "fill:entry:100.0" in strat.events
    assert "fill:take_profit:103.0" in strat.events
    assert "OrderCanceled:stop_loss" in strat.events
    assert strat.position(BTC) == 0


def test_oco_and_absolute_bracket_and_amend_cancel() -> None:
    def script(s: Scripted, n: int) -> None:
        if n == 0:
            s.submit_bracket(
                s.market(BTC, "BUY", 2), stop_loss=95.0, take_profit=120.0, relative=False
            )
        if n == 2:
            tp = next(o for o in s.open_orders() if s.node.tags[o.client_order_id] == "take_profit")
            assert s.amend_order(tp.client_order_id, price="102")
        if n == 4:
            a = s.limit(BTC, "SELL", 1, 200)
            b = s.limit(BTC, "SELL", 1, 210)
            s.submit_oco([a, b], tags=["a", "b"])
        if n == 5:
            for o in s.open_orders():
                if s.node.tags.get(o.client_order_id) == "a":
                    assert s.cancel_order(o.client_order_id)

    node = node_for()
    strat = Scripted("oco", script)
    node.add_strategy(strat, bars=[BTC])
    node.run_bars([feed([100, 100, 100, 101, 103, 103, 103])])
    assert "OrderUpdated:take_profit" in strat.events
    assert "fill:take_profit:102.0" in strat.events
    # cancelling one OCO member leaves the other working
    assert "OrderCanceled:a" in strat.events
    assert [node.tags[o.client_order_id] for o in node.open_orders()] == ["b"]


def test_trailing_stop_is_emulated_when_the_venue_lacks_it() -> None:
    def script(s: Scripted, n: int) -> None:
        if n == 0:
            s.submit_bracket(s.market(BTC, "BUY", 1), trailing_stop=0.02)

    results = {}
    for native in (True, False):
        node = node_for(native=native)
        strat = Scripted("tr", script)
        node.add_strategy(strat, bars=[BTC])
        node.run_bars([feed([100, 100, 105, 110, 112, 108, 104, 100])])
        fills = [e for e in strat.events if e.startswith("fill:trailing_stop")]
        assert len(fills) == 1, strat.events
        results[native] = float(fills[0].rsplit(":", 1)[1])
        assert strat.position(BTC) == 0
        # the node's emulator let go of the filled trail and its group
        emulator = node.emulator
        assert not emulator.trails and not emulator.oco and not emulator.brackets
    # native: trails the intrabar high 112.5 -> 110.25; emulated: trails closes (112 -> 109.76)
    assert results[True] == pytest.approx(112.5 * 0.98)
    assert results[False] == pytest.approx(112 * 0.98)


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
