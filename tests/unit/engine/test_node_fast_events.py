"""The events the node and the simulated venue build without validation (their own,
already checked values) are exactly what the validating constructors would build, the
risk context too; a venue whose ids would be invalid still goes the validating way; a
replay restores the garbage collector's thresholds."""

from __future__ import annotations

import dataclasses
import gc
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from sapphire.domain import (
    Bar,
    ContractType,
    Instrument,
    InstrumentId,
    Order,
    OrderEvent,
    OrderFilled,
)
from sapphire.engine import BarFeed, EventStrategy, TradingNode
from sapphire.risk import RiskConfig, RiskContext, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
MIN = 60_000_000_000
INST = Instrument(
    BTC, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
    lot_size=Decimal("0.001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"),
)  # fmt: skip


def feed(n: int = 120) -> BarFeed:
    rng = np.random.default_rng(3)
    c = np.round(100 + np.cumsum(rng.normal(0, 0.8, n)), 2)
    o = np.concatenate(([c[0]], c[:-1]))
    hi = np.maximum(o, c) + np.round(rng.uniform(0, 0.6, n), 2)
    lo = np.minimum(o, c) - np.round(rng.uniform(0, 0.6, n), 2)
    return BarFeed(BTC, np.arange(n, dtype=np.int64) * MIN, o, hi, lo, c, np.ones(n), MIN)


class Busy(EventStrategy):
    """Brackets, limit orders it cancels, flips: every kind of order event."""

    def __init__(self) -> None:
        super().__init__("busy")
        self.n = 0

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        pos = self.position(BTC)
        if self.n % 7 == 0 and pos == 0:
            self.submit_bracket(
                self.market(BTC, "BUY", "0.5"), stop_loss=0.01, take_profit=0.015,
                trailing_stop=0.02,
            )  # fmt: skip
        elif self.n % 5 == 0:
            self.submit_order(self.limit(BTC, "SELL", "0.2", round(bar.close * 1.2, 2)))
        elif self.n % 5 == 1:
            for order in self.open_orders():
                if order.parent_order_id is None and order.type.value == "LIMIT":
                    self.cancel_order(order.client_order_id)
        elif self.n % 11 == 0 and pos != 0:
            side = "SELL" if pos > 0 else "BUY"
            self.submit_order(self.market(BTC, side, abs(pos), reduce_only=True))


def revalidated(event: Any) -> Any:
    return type(event)(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)})


def run(**venue_kw: Any) -> tuple[TradingNode, list[Any], list[RiskContext]]:
    venue = SimulatedVenue([INST], cash=100_000, **venue_kw)
    risk = RiskEngine(RiskConfig(max_open_orders=50))
    node = TradingNode(venue, risk=risk, run_id="f")
    contexts: list[RiskContext] = []
    check = risk.check

    def spy(order: Order, ctx: RiskContext) -> Any:
        contexts.append(ctx)
        return check(order, ctx)

    risk.check = spy
    node.add_strategy(Busy(), bars=[BTC])
    seen: list[Any] = []
    node.bus.subscribe(object, seen.append)
    node.run_bars([feed()])
    node.stop()
    return node, seen, contexts


@pytest.mark.parametrize("native", [True, False], ids=["native-trail", "emulated-trail"])
def test_every_published_event_passes_validation_unchanged(native: bool) -> None:
    node, seen, contexts = run(native_trailing=native)
    kinds = {type(e).__name__ for e in seen}
    assert {"OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderCanceled"} <= kinds
    assert {"OrderCancelRequested", "PositionOpened", "PositionClosed"} <= kinds
    assert sum(isinstance(e, OrderFilled) for e in seen) >= 10
    for event in seen:
        if not dataclasses.is_dataclass(event) or not hasattr(event, "event_id"):
            continue
        twin = revalidated(event)
        assert twin == event
        for f in dataclasses.fields(event):
            assert type(getattr(twin, f.name)) is type(getattr(event, f.name)), f.name
    for order in node.orders.values():
        assert Order.from_events(order.events) == order
    assert contexts
    for ctx in contexts:
        assert revalidated(ctx) == ctx


def test_node_and_venue_event_ids_are_deterministic() -> None:
    def ids() -> list[tuple[str, str]]:
        _, seen, _ = run()
        return [(type(e).__name__, e.event_id) for e in seen if isinstance(e, OrderEvent)]

    first = ids()
    assert first == ids()
    assert first[0][1].startswith("f-") and any(i.startswith("SIM-E") for _, i in first)


def test_a_venue_name_with_whitespace_still_fails_as_before() -> None:
    venue = SimulatedVenue([INST], cash=100_000, name="MY SIM")
    node = TradingNode(venue, run_id="f")

    class One(EventStrategy):
        def on_bar(self, bar: Bar) -> None:
            if not node.orders:
                self.submit_order(self.market(BTC, "BUY", "0.1"))

    node.add_strategy(One("one"), bars=[BTC])
    with pytest.raises(ValueError, match="whitespace"):
        node.run_bars([feed(5)])


def test_replay_restores_the_gc_thresholds() -> None:
    before = gc.get_threshold()
    node, _, _ = run()
    assert gc.get_threshold() == before
    assert node.orders
