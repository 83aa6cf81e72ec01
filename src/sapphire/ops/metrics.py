"""Prometheus metrics of a trading node (`NodeMetrics`) and the scrape endpoint of a
node process (`start_metrics_server`).

Names follow Prometheus' rules: the `sapphire_` prefix, base units (seconds, the
account's currency as a `currency` label), `_total` counters, `_seconds` histograms.
Labels stay of low cardinality: run id, strategy, instrument, status, reason (a refusal's
main reason with its figures replaced by N), never an order id or a price.

`NodeMetrics(node, run_id).attach()` subscribes to the node's message bus (order events,
fills, refusals, risk events, trading-state changes, drift events) and stamps the node's
market data as it arrives (the node has no market-data event on its bus, so `attach`
wraps the node's `process_bar` / `process_trade_tick` / `process_order_book`): the
tick-to-order latency is the time from the arrival of the market data to an order
submitted while the node handled it. The state gauges (equity, PnL, positions,
exposures, risk limit usage, trading state) are read from the node on its own thread
after market data and fills, at most every `refresh_s` seconds, so a scrape never reads
the node while it changes.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sapphire.domain import (
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    RiskEvent,
    TradingState,
    TradingStateChanged,
)

__all__ = [
    "LATENCY_BUCKETS",
    "DiskCollector",
    "NodeMetrics",
    "new_registry",
    "reason_label",
    "start_metrics_server",
]

#: tick-to-order and request latencies: 100 µs to 10 s
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: the numeric value of each trading state (`sapphire_trading_state`)
STATE_VALUES = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_FIGURE = re.compile(r"-?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_MAX_REASON = 80


def reason_label(reason: str) -> str:
    """A refusal's main reason as a label value: the text up to its first ": " or "; ",
    without brackets, every figure as N (`required margin N USDT exceeds free margin N
    USDT`), at most 80 characters: one value per kind of refusal, not per order."""
    head = re.split(r"[:;] ", reason, maxsplit=1)[0]
    head = _FIGURE.sub("N", re.sub(r"\s*\([^)]*\)", "", head))
    return " ".join(head.split())[:_MAX_REASON] or "unknown"


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A registry with the process, platform and garbage-collector metrics (`process`),
    for a process that serves one; the default registry has them already."""
    registry = CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> Any:
    """Serve `registry` (default: the process's default registry) at
    `http://addr:port/metrics` from a daemon thread; returns the server (`shutdown()`
    stops it). Loopback by default: a node's metrics carry no secrets but are not public."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"metrics port {port!r} is invalid: expected an int in 0..65535")
    from prometheus_client import REGISTRY

    server, _thread = start_http_server(port, addr=addr, registry=registry or REGISTRY)
    return server


class DiskCollector(Collector):
    """`sapphire_data_disk_free_bytes` and `sapphire_data_disk_size_bytes` of the file
    system holding `path` (the data folder), read at each scrape."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            usage = shutil.disk_usage(self.path)
        except OSError:
            return
        labels = ["path"]
        free = GaugeMetricFamily(
            "sapphire_data_disk_free_bytes", "Free bytes on the data folder's disk", labels=labels
        )
        free.add_metric([str(self.path)], usage.free)
        size = GaugeMetricFamily(
            "sapphire_data_disk_size_bytes", "Size of the data folder's disk", labels=labels
        )
        size.add_metric([str(self.path)], usage.total)
        yield free
        yield size


class NodeMetrics:
    """The metrics of one trading node (see the module docstring). `registry`: where they
    are registered (default: the process's default registry; one node per registry)."""

    def __init__(
        self,
        node: Any,
        run_id: str,
        *,
        mode: str = "paper",
        registry: CollectorRegistry | None = None,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id={run_id!r} is invalid: expected a non-empty string")
        if not refresh_s >= 0:
            raise ValueError(f"refresh_s={refresh_s!r} is invalid: expected seconds >= 0")
        from prometheus_client import REGISTRY

        self.node = node
        self.run_id = run_id
        self.mode = mode
        self.refresh_s = float(refresh_s)
        self._clock = clock
        self.registry = registry if registry is not None else REGISTRY
        self._build(self.registry)
        self._attached = False
        self._refreshed = -math.inf
        self._tick_at: float | None = None  # perf_counter when the current market data came
        #: time.monotonic() of the last market data (None: none yet; the node's /ready)
        self.last_data_at: float | None = None
        self._known: set[tuple[str, str]] = set()  # (strategy, instrument) gauges set
        self._statuses: dict[str, str] = {}  # open order -> its last counted status

    # ---------------------------------------------------------------- the metrics
    def _build(self, r: CollectorRegistry) -> None:
        run = ["run_id"]
        pos = ["run_id", "strategy", "instrument"]
        self.info = Gauge(
            "sapphire_node_info",
            "A running node (1), by run id and mode",
            ["run_id", "mode"],
            registry=r,
        )
        self.equity = Gauge(
            "sapphire_equity",
            "Account equity at the last prices",
            ["run_id", "currency"],
            registry=r,
        )
        self.balance = Gauge(
            "sapphire_balance", "Account balance (cash)", ["run_id", "currency"], registry=r
        )
        self.realized = Gauge(
            "sapphire_realized_pnl",
            "Realised PnL of a strategy",
            ["run_id", "strategy"],
            registry=r,
        )
        self.unrealized = Gauge(
            "sapphire_unrealized_pnl",
            "Unrealised PnL of a strategy",
            ["run_id", "strategy"],
            registry=r,
        )
        self.quantity = Gauge(
            "sapphire_position_quantity", "Signed position size (base units)", pos, registry=r
        )
        self.notional = Gauge(
            "sapphire_position_notional", "Signed position value at the last price", pos, registry=r
        )
        self.gross = Gauge("sapphire_exposure_gross", "Sum of |position notional|", run, registry=r)
        self.net = Gauge("sapphire_exposure_net", "Sum of position notional", run, registry=r)
        self.drawdown = Gauge(
            "sapphire_drawdown_ratio",
            "Equity below its peak, as a fraction of the peak",
            run,
            registry=r,
        )
        self.limit_usage = Gauge(
            "sapphire_risk_limit_usage_ratio",
            "A risk limit's usage (1 = at the limit)",
            ["run_id", "limit"],
            registry=r,
        )
        self.state = Gauge(
            "sapphire_trading_state",
            "Trading state: 0 active, 1 reducing, 2 halted",
            run,
            registry=r,
        )
        self.kill_switch = Gauge(
            "sapphire_kill_switch_tripped", "1 while the kill switch is on", run, registry=r
        )
        self.open_orders = Gauge(
            "sapphire_open_orders", "Orders working at the venue", run, registry=r
        )
        self.orders = Counter(
            "sapphire_orders_total",
            "Orders reaching a status",
            ["run_id", "strategy", "status"],
            registry=r,
        )
        self.fills = Counter(
            "sapphire_fills_total", "Fills", ["run_id", "strategy", "instrument"], registry=r
        )
        self.fees = Counter("sapphire_fees_total", "Fees paid", ["run_id", "currency"], registry=r)
        self.refusals = Counter(
            "sapphire_order_refusals_total",
            "Orders denied by the risk engine or rejected by the venue",
            ["run_id", "source", "reason"],
            registry=r,
        )
        self.risk_events = Counter(
            "sapphire_risk_events_total", "Risk events by kind", ["run_id", "kind"], registry=r
        )
        self.market_data = Counter(
            "sapphire_market_data_total",
            "Market data taken",
            ["run_id", "instrument", "kind"],
            registry=r,
        )
        self.market_data_at = Gauge(
            "sapphire_market_data_last_timestamp_seconds",
            "Wall time the last market data arrived",
            ["run_id", "instrument"],
            registry=r,
        )
        self.tick_to_order = Histogram(
            "sapphire_tick_to_order_seconds",
            "From market data arriving to an order submitted",
            run,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "sapphire_model_predictions_total", "Bars the model scored", run, registry=r
        )
        self.abstentions = Counter(
            "sapphire_model_abstentions_total",
            "Bars without a score (warm-up or out of distribution)",
            run,
            registry=r,
        )
        self.score = Gauge("sapphire_model_score", "The model's last score", run, registry=r)
        self.ood = Gauge(
            "sapphire_model_ood_ratio",
            "Share of the run's rows the OOD gate flagged",
            run,
            registry=r,
        )
        self.drift_events = Counter(
            "sapphire_drift_events_total", "Drift breaches", ["run_id", "kind"], registry=r
        )
        self.drift_psi = Gauge(
            "sapphire_drift_psi",
            "A feature's PSI at its last breach",
            ["run_id", "feature"],
            registry=r,
        )

    # ---------------------------------------------------------------- wiring
    def attach(self) -> NodeMetrics:
        """Subscribe to the node's bus and stamp its market data (once); returns self."""
        if self._attached:
            return self
        self._attached = True
        node, run = self.node, self.run_id
        self.info.labels(run, self.mode).set(1)
        self.state.labels(run).set(STATE_VALUES[node.trading_state])
        self.kill_switch.labels(run).set(0)
        self.open_orders.labels(run).set(0)
        self.tick_to_order.labels(run)
        for kind in ("denied", "rejected"):
            self.refusals.labels(run, kind, "none")  # a series from the start: rate() works
        self.risk_events.labels(run, "none")
        bus = node.bus
        bus.subscribe(OrderEvent, self.on_order_event)
        bus.subscribe(RiskEvent, self.on_risk_event)
        bus.subscribe(TradingStateChanged, self.on_trading_state)
        from sapphire.ml.drift import DriftEvent

        bus.subscribe(DriftEvent, self.on_drift)
        self._wrap(node, "process_bar", "bar", lambda a: a[0])
        self._wrap(node, "process_trade_tick", "trade", lambda a: a[0])
        self._wrap(node, "process_order_book", "book", lambda a: a[0])
        self.refresh(force=True)
        return self

    def _wrap(
        self, node: Any, name: str, kind: str, data_of: Callable[[tuple[Any, ...]], Any]
    ) -> None:
        inner = getattr(node, name)

        def stamped(*args: Any, **kwargs: Any) -> Any:
            item = data_of(args) if args else next(iter(kwargs.values()))
            self.on_market_data(str(item.instrument_id), kind)
            try:
                return inner(*args, **kwargs)
            finally:
                self._tick_at = None
                self.after_market_data(item, args[3] if len(args) > 3 else kwargs.get("index"))

        setattr(node, name, stamped)

    # ---------------------------------------------------------------- handlers
    def on_market_data(self, instrument: str, kind: str) -> None:
        """Market data of `instrument` arrived (before the node handles it)."""
        self._tick_at = time.perf_counter()
        self.last_data_at = time.monotonic()
        self.market_data.labels(self.run_id, instrument, kind).inc()
        self.market_data_at.labels(self.run_id, instrument).set(self._clock())

    def after_market_data(self, item: Any, index: int | None = None) -> None:
        """The node handled market data: the model's score of bar `index` (an `ml`
        strategy), then the state gauges when due."""
        if index is not None:
            self._score(index)
        self.refresh()

    def on_order_event(self, event: OrderEvent) -> None:
        run = self.run_id
        cid = str(event.client_order_id)
        order = self.node.orders.get(cid)
        strategy = str(order.strategy_id) if order is not None else "unknown"
        status = order.status.value if order is not None else type(event).__name__
        if self._statuses.get(cid) != status:
            self.orders.labels(run, strategy, status).inc()
            if order is not None and order.is_terminal:
                self._statuses.pop(cid, None)
            else:
                self._statuses[cid] = status
        etype = type(event)
        if etype is OrderSubmitted and self._tick_at is not None:
            self.tick_to_order.labels(run).observe(time.perf_counter() - self._tick_at)
        elif etype is OrderFilled:
            assert isinstance(event, OrderFilled)
            instrument = str(order.instrument_id) if order is not None else "unknown"
            self.fills.labels(run, strategy, instrument).inc()
            if event.fee:
                self.fees.labels(run, event.fee_currency or "unknown").inc(float(event.fee))
            self.refresh(force=True)
        elif etype is OrderDenied or etype is OrderRejected:
            source = "denied" if etype is OrderDenied else "rejected"
            reason = str(getattr(event, "reason", "") or "")
            self.refusals.labels(run, source, reason_label(reason)).inc()
        self.open_orders.labels(run).set(len(self.node.open_orders()))

    def on_risk_event(self, event: RiskEvent) -> None:
        self.risk_events.labels(self.run_id, str(event.kind)).inc()
        self.refresh(force=True)

    def on_trading_state(self, event: TradingStateChanged) -> None:
        self.state.labels(self.run_id).set(STATE_VALUES[event.state])
        self.refresh(force=True)

    def on_drift(self, event: Any) -> None:
        self.drift_events.labels(self.run_id, str(event.kind)).inc()
        if event.feature is not None and event.psi is not None:
            self.drift_psi.labels(self.run_id, str(event.feature)).set(float(event.psi))

    def _score(self, index: int) -> None:
        """An `ml` strategy's score of bar `index` (its scores are computed per run)."""
        for strategy in self._ml_strategies():
            scores = strategy.last_scores
            if not 0 <= index < len(scores):
                continue
            value = float(scores[index])
            if math.isfinite(value):
                self.predictions.labels(self.run_id).inc()
                self.score.labels(self.run_id).set(value)
            else:
                self.abstentions.labels(self.run_id).inc()
            flagged = (getattr(strategy, "info", None) or {}).get("ood_rows")
            if flagged is not None and len(scores):
                self.ood.labels(self.run_id).set(int(flagged) / len(scores))

    def _ml_strategies(self) -> Iterable[Any]:
        for trader in self.node.strategies:
            strategy = getattr(trader, "strategy", None)
            if getattr(strategy, "last_scores", None) is not None:
                yield strategy

    # ---------------------------------------------------------------- state gauges
    def refresh(self, *, force: bool = False) -> None:
        """Read the node's state into the gauges (at most every `refresh_s` unless
        `force`); on the node's thread."""
        now = time.monotonic()
        if not force and now - self._refreshed < self.refresh_s:
            return
        self._refreshed = now
        node, run = self.node, self.run_id
        portfolio = node.portfolio
        marks = node._marks()
        self.state.labels(run).set(STATE_VALUES[node.trading_state])
        self.open_orders.labels(run).set(len(node.open_orders()))
        self._risk(node)
        if any(p.instrument_id not in marks for p in portfolio.open_positions()):
            return  # a position without a price cannot be valued yet
        snap = portfolio.snapshot(max(int(node.clock.now_ns()), 0), marks)
        self.equity.labels(run, snap.currency).set(float(snap.equity))
        self.balance.labels(run, snap.currency).set(float(snap.balance))
        self.gross.labels(run).set(float(snap.gross_exposure))
        self.net.labels(run).set(float(snap.net_exposure))
        for sid, pnl in snap.strategies.items():
            self.realized.labels(run, str(sid)).set(float(pnl.realized))
            self.unrealized.labels(run, str(sid)).set(float(pnl.unrealized))
        seen: set[tuple[str, str]] = set()
        for p in portfolio.positions():
            key = (str(p.strategy_id), str(p.instrument_id))
            seen.add(key)
            mark = marks.get(p.instrument_id)
            self.quantity.labels(run, *key).set(float(p.quantity))
            value = p.notional(mark) if mark is not None and p.quantity else Decimal(0)
            self.notional.labels(run, *key).set(float(value) * (1 if p.quantity >= 0 else -1))
        for key in self._known - seen:
            self.quantity.remove(run, *key)
            self.notional.remove(run, *key)
        self._known = seen

    def _risk(self, node: Any) -> None:
        """Drawdown, limit usage and the kill switch from the risk monitor's limits."""
        run = self.run_id
        monitor = next((s for s in node.strategies if hasattr(s, "kill_switch")), None)
        if monitor is None:
            return
        limits = monitor.limits
        self.kill_switch.labels(run).set(1 if monitor.kill_switch.tripped else 0)
        equity, peak, day_start = limits._equity, limits._peak, limits._day_start
        if equity is None:
            return
        drawdown = float((peak - equity) / peak) if peak else 0.0
        self.drawdown.labels(run).set(max(drawdown, 0.0))
        if limits.max_drawdown:
            self.limit_usage.labels(run, "drawdown").set(drawdown / float(limits.max_drawdown))
        if limits.daily_loss_limit and day_start:
            loss = float((day_start - equity) / day_start)
            usage = max(loss, 0.0) / float(limits.daily_loss_limit)
            self.limit_usage.labels(run, "daily_loss").set(usage)
        if limits.var_limit and limits.last_var is not None:
            self.limit_usage.labels(run, "var").set(float(limits.last_var) / limits.var_limit)


def serve_node_metrics(session: Any, mode: str, port: int, host: str = "127.0.0.1") -> Any:
    """A paper or live node process's metrics: the node's and its venue's, with the
    process metrics, served at `http://host:port/metrics`, beside the node's probes
    `/health` and `/ready` (`sapphire.ops.node_health`); returns the server."""
    from sapphire.ops.metrics_venue import VenueMetrics
    from sapphire.ops.node_health import NodeHealth, serve_node_http

    registry = new_registry()
    metrics = NodeMetrics(session.node, session.run_id, mode=mode, registry=registry).attach()
    VenueMetrics(session.venue, "bybit" if mode == "live" else mode, registry=registry).attach()
    health = NodeHealth(session, lambda: metrics.last_data_at)
    return serve_node_http(health, registry, port, addr=host)
