"""`watch_node`: a running node's order events feed a monitor and each alert goes back on
the node's bus as a RiskEvent (kind "surveillance"), where its journal stores it."""

from __future__ import annotations

from types import SimpleNamespace

from surveil_helpers import BUY, SELL, Tape

from sapphire.compliance.surveillance.monitor import watch_node
from sapphire.domain import OrderInitialized, RiskEvent
from sapphire.engine.bus import MessageBus


def _node_of(tape: Tape) -> SimpleNamespace:
    inits = {e.client_order_id: e for _, e in tape.events if isinstance(e, OrderInitialized)}
    orders = {cid: SimpleNamespace(init_event=init) for cid, init in inits.items()}
    return SimpleNamespace(bus=MessageBus(), orders=orders)


def _run(tape: Tape) -> list[RiskEvent]:
    node = _node_of(tape)
    risk: list[RiskEvent] = []
    node.bus.subscribe(RiskEvent, risk.append)
    watch_node(node, "r1")
    for _run_id, event in tape.arrivals(1):
        node.bus.publish(event)
    return risk


def test_a_spoof_in_a_running_node_becomes_a_risk_event() -> None:
    tape = Tape()
    tape.limit("sp-bid", BUY, "10", "99.95", 100, strategy="s3")
    tape.market("sp-sell", SELL, "2", "100", 105, strategy="s3")
    tape.cancel("sp-bid", 108)
    tape.market("later", BUY, "1", "100", 400, strategy="s3")  # the moment is complete
    (event,) = _run(tape)
    assert event.kind == "surveillance" and event.reason.startswith("SPOOFING")
    assert "sp-bid" in str(event.detail)


def test_ordinary_trading_raises_nothing() -> None:
    tape = Tape()
    for k in range(6):
        tape.market(f"m{k}", BUY if k % 2 else SELL, "1", "100", 60 * k, strategy="s1")
    assert _run(tape) == []
