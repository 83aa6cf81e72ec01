"""Surveillance on demand: the rules over the orders, order events and fills in the store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sapphire.compliance.surveillance.alerts import Alert
from sapphire.compliance.surveillance.config import SurveillanceConfig
from sapphire.compliance.surveillance.monitor import SurveillanceMonitor
from sapphire.domain import ClientOrderId, OrderEvent
from sapphire.store import Store

__all__ = ["order_events", "surveil", "surveil_events"]

RunEvent = tuple[str, OrderEvent]


def order_events(store: Store, run_ids: Sequence[str] | None = None) -> list[RunEvent]:
    """Every order event of the runs `run_ids` (default: every run in the store) as
    (run_id, event), each order's events in their order; ValueError for an unknown run."""
    runs = [r.run_id for r in store.runs()] if run_ids is None else list(run_ids)
    out: list[RunEvent] = []
    for run in dict.fromkeys(runs):
        store.run(run)  # names an unknown run
        for order in store.orders(run):
            out.extend((run, event) for event in order.events)
    return out


def surveil_events(
    events: Iterable[RunEvent], config: SurveillanceConfig | None = None
) -> list[Alert]:
    """The alerts of the rules over (run_id, event) pairs, each order's events in their
    order: the `SurveillanceMonitor` fed them in time order, then closed."""
    stream = list(events)
    last: dict[tuple[str, ClientOrderId], int] = {}
    times = []
    for run, event in stream:  # an order's event is never before its previous one
        key = (run, event.client_order_id)
        last[key] = ts = max(event.ts_ns, last.get(key, 0))
        times.append(ts)
    order = sorted(range(len(stream)), key=times.__getitem__)
    monitor = SurveillanceMonitor(config)
    for i in order:
        run, event = stream[i]
        monitor.on_order_event(event, run_id=run)
    monitor.close()
    return sorted(monitor.alerts, key=lambda a: a.key)


def surveil(
    store: Store,
    run_ids: Sequence[str] | None = None,
    config: SurveillanceConfig | None = None,
) -> list[Alert]:
    """The alerts of the rules over the runs `run_ids` (default: every run), together:
    across runs, strategies and accounts; in time order."""
    return surveil_events(order_events(store, run_ids), config)
