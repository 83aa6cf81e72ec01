"""The node binds an order's correlation id (its signal's: the parent order's id, else
its own) while the order is submitted and while its venue events are handled, when
`correlate` is on (paper and live sessions); backtests leave it off."""

from __future__ import annotations

from decimal import Decimal

from test_emulation import BTC, Recorder, _events, _inst

from sapphire.correlation import correlation_id
from sapphire.domain import OrderEvent
from sapphire.engine import TradingNode
from sapphire.sim.venue import SimulatedVenue


def _ids(correlate: bool) -> list[tuple[str, str, str | None]]:
    node = TradingNode(SimulatedVenue([_inst()], cash=100_000), run_id="r")
    node.correlate = correlate
    strat = Recorder()
    node.add_strategy(strat, bars=[BTC])
    node.last[BTC] = 100.0
    seen: list[tuple[str, str, str | None]] = []
    node.bus.subscribe(
        OrderEvent,
        lambda e: seen.append((type(e).__name__, str(e.client_order_id), correlation_id())),
    )
    order = strat.market(BTC, "BUY", Decimal(1))
    strat.submit_order(order)
    for event in _events(str(order.client_order_id), fill="100", qty="1"):
        node.on_venue_event(event)
    assert correlation_id() is None  # nothing left bound after the calls
    return seen


def test_every_event_of_an_order_carries_its_id() -> None:
    seen = _ids(correlate=True)
    assert [name for name, _, _ in seen] == ["OrderSubmitted", "OrderAccepted", "OrderFilled"]
    assert all(bound == cid for _, cid, bound in seen)


def test_backtests_bind_nothing() -> None:
    assert all(bound is None for _, _, bound in _ids(correlate=False))
