"""`SurveillanceMonitor`: the rules fed order events one by one, as a node produces them.

Events are grouped by moment (their `ts_ns`) and a moment is judged only once it is
complete: when an event at least `reorder_s` later has arrived (or `advance` moved the
clock that far), every event of it is in. So what the rules see does not depend on the
order in which events of one moment, or events up to `reorder_s` out of time order,
arrive, and the monitor raises the same alerts as a batch run over the stored events
(`surveil`), which is this monitor fed the stored events in time order. An event that
arrives later than that is taken at the earliest moment not yet judged (`late_events`
counts them). Within one order, an event is never taken before the one before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sapphire.compliance.surveillance.alerts import Alert
from sapphire.compliance.surveillance.config import SurveillanceConfig
from sapphire.compliance.surveillance.ledger import Ledger, Moment
from sapphire.compliance.surveillance.periods import MarkingCloseRule, OrderToTradeRule
from sapphire.compliance.surveillance.spoofing import LayeringRule, SpoofingRule
from sapphire.compliance.surveillance.wash import WashRule
from sapphire.domain import ClientOrderId, OrderEvent, OrderInitialized

__all__ = ["SurveillanceMonitor"]

_NS = 1_000_000_000
OrderKey = tuple[str, ClientOrderId]


class _MomentRule(Protocol):
    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]: ...


class _PeriodRule(_MomentRule, Protocol):
    def on_time(self, ts_ns: int, ledger: Ledger) -> list[Alert]: ...
    def finish(self, last_ns: int | None, ledger: Ledger) -> list[Alert]: ...


class SurveillanceMonitor:
    """The surveillance rules, incrementally.

    Feed it every order event (`on_order_event`), in the order they happen, and the
    time when no event comes (`advance`, e.g. at each bar); each call returns the alerts
    it raised. `close()` ends the stream and judges the periods still open. Events of
    several runs may be mixed: each names its run (`run_id=`, default the monitor's).

    An order's first event is its `OrderInitialized`; a node's bus does not publish it,
    so pass it with the order's first other event (`init=order.init_event`) or give the
    monitor `specs`, which looks an order's `OrderInitialized` up by its client order id.
    """

    def __init__(
        self,
        config: SurveillanceConfig | None = None,
        *,
        run_id: str = "run",
        specs: Callable[[ClientOrderId], OrderInitialized | None] | None = None,
    ) -> None:
        self.config = config = config or SurveillanceConfig()
        self.run_id = run_id
        self.ledger = Ledger()
        self.alerts: list[Alert] = []
        #: events that came after their moment was judged (see the module docstring)
        self.late_events = 0
        self._specs = specs
        self._moment_rules: list[_MomentRule] = []
        if config.wash.enabled:
            self._moment_rules.append(WashRule(config.wash))
        if config.spoofing.enabled:
            self._moment_rules.append(SpoofingRule(config.spoofing))
        if config.layering.enabled:
            self._moment_rules.append(LayeringRule(config.layering))
        self._period_rules: list[_PeriodRule] = []
        if config.marking_close.enabled:
            self._period_rules.append(MarkingCloseRule(config.marking_close))
        if config.order_to_trade.enabled:
            self._period_rules.append(OrderToTradeRule(config.order_to_trade))
        self._reorder = int(config.reorder_s * _NS)
        self._horizon = config.horizon_ns
        self._pending: dict[int, list[tuple[str, OrderEvent]]] = {}
        #: each known order's latest event time: as it happened, and as it was taken
        self._last_ts: dict[OrderKey, tuple[int, int]] = {}
        self._latest: int | None = None
        self._judged: int | None = None  # the last moment judged
        self._pruned = 0
        self._closed = False

    @property
    def watermark(self) -> int | None:
        """Every moment before this time (int ns) has been judged."""
        return None if self._latest is None else self._latest - self._reorder

    def on_order_event(
        self,
        event: OrderEvent,
        *,
        run_id: str | None = None,
        init: OrderInitialized | None = None,
    ) -> list[Alert]:
        """Take one order event (of run `run_id`); the alerts this raised (moments that
        became complete), in time order."""
        if self._closed:
            raise ValueError("the surveillance monitor is closed")
        if not isinstance(event, OrderEvent):
            raise ValueError(f"on_order_event takes an order event, got {event!r}")
        run = self.run_id if run_id is None else run_id
        key = (run, event.client_order_id)
        if key not in self._last_ts:
            if not isinstance(event, OrderInitialized):
                spec = init if init is not None else self._look_up(event.client_order_id)
                if spec is None or spec.client_order_id != event.client_order_id:
                    raise ValueError(
                        f"order {event.client_order_id} (run {run}): its OrderInitialized "
                        "was not given: feed it first, pass init=, or give the monitor specs"
                    )
                self._take(key, spec)
        elif isinstance(event, OrderInitialized):
            return []  # given before with its order's first event
        self._take(key, event)
        return self._flush()

    def advance(self, ts_ns: int) -> list[Alert]:
        """The clock reached `ts_ns` (int ns) with no order event: judge what is complete."""
        if self._closed:
            raise ValueError("the surveillance monitor is closed")
        self._latest = ts_ns if self._latest is None else max(self._latest, ts_ns)
        return self._flush()

    def close(self) -> list[Alert]:
        """End of the stream: judge every moment still waiting and the open periods."""
        if self._closed:
            return []
        self._closed = True
        alerts = self._judge_until(None)
        last = self._judged
        for rule in self._period_rules:
            if last is not None:
                alerts += rule.on_time(last, self.ledger)
            alerts += rule.finish(last, self.ledger)
        return self._emit(alerts)

    # ------------------------------------------------------------------------------

    def _look_up(self, client_order_id: ClientOrderId) -> OrderInitialized | None:
        return None if self._specs is None else self._specs(client_order_id)

    def _take(self, key: OrderKey, event: OrderEvent) -> None:
        happened, taken = self._last_ts.get(key, (0, 0))
        happened = max(event.ts_ns, happened)
        ts = max(happened, taken)
        floor = self.watermark
        if floor is not None and ts < floor:
            ts = max(floor, (self._judged or 0) + 1)
        if floor is not None and happened < floor and not isinstance(event, OrderInitialized):
            # (an order's specification may predate what was judged: it is handed over
            # with the order's first event; only the events themselves come late)
            self.late_events += 1
        self._last_ts[key] = (happened, ts)
        self._pending.setdefault(ts, []).append((key[0], event))
        self._latest = ts if self._latest is None else max(self._latest, ts)

    def _flush(self) -> list[Alert]:
        floor = self.watermark
        if floor is None:
            return []
        alerts = self._judge_until(floor)
        for rule in self._period_rules:
            alerts += rule.on_time(floor, self.ledger)
        if floor - self._horizon - self._pruned > self._horizon // 4:
            self._prune(floor - self._horizon)
        return self._emit(alerts)

    def _judge_until(self, floor: int | None) -> list[Alert]:
        """Judge the waiting moments before `floor` (all of them if None), in time order."""
        due = sorted(ts for ts in self._pending if floor is None or ts < floor)
        alerts: list[Alert] = []
        for ts in due:
            moment = Moment(ts)
            for run, event in self._pending.pop(ts):
                self.ledger.apply(moment, run, event)
            for rule in self._moment_rules:
                alerts += rule.on_moment(moment, self.ledger)
            for period in self._period_rules:
                alerts += period.on_moment(moment, self.ledger)
            self._judged = ts
        return alerts

    def _prune(self, before: int) -> None:
        self.ledger.prune(before)
        orders = self.ledger.orders
        gone = [k for k, (_, ts) in self._last_ts.items() if ts < before and k not in orders]
        for key in gone:
            del self._last_ts[key]
        self._pruned = before

    def _emit(self, alerts: list[Alert]) -> list[Alert]:
        alerts.sort(key=lambda a: a.key)
        self.alerts += alerts
        return alerts


def watch_node(
    node: Any, run_id: str, config: SurveillanceConfig | None = None
) -> SurveillanceMonitor:
    """Surveil a running node (paper or live) as it trades: every order event it publishes
    feeds a monitor, and each alert goes back on the node's bus as a `RiskEvent` (kind
    "surveillance"), which its session journal stores and publishes (notifications).
    Alerts are raised once their moment is complete, as later order events arrive; the
    last moments of a run are judged by `sapphire surveil` over the store."""
    monitor = SurveillanceMonitor(config, run_id=run_id)
    bus = node.bus

    def on_event(event: OrderEvent) -> None:
        if isinstance(event, OrderInitialized):
            return  # given with the order's first published event
        order = node.orders.get(event.client_order_id)
        if order is None:
            return
        try:
            alerts = monitor.on_order_event(event, init=order.init_event)
            alerts += monitor.advance(event.ts_ns)
        except ValueError:
            return  # an event the monitor cannot place (e.g. an emulated trail's move)
        for alert in alerts:
            bus.publish(alert.to_risk_event())

    bus.subscribe(OrderEvent, on_event)
    return monitor
