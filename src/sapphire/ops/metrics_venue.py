"""Prometheus metrics of a node's venue (`VenueMetrics`) and of an asyncio event loop's
lag (`LoopLag`).

`VenueMetrics(venue, name).attach()` times every request to the venue: a live venue's
exchange requests (through its `Guard`, whose `request` it wraps: latency and the
outcome of each failure as `resilience.classify` sorts it) or a paper venue's calls to
its venue process. At each scrape it reads what the venue counts itself: rate-limit
back-offs and circuit-breaker trips (`venue.guard`), the server clock's offset
(`guard.skew`), and the streams' reconnects and book resyncs (`venue.counters()`). A
paper venue shares the node's clock and has no WebSocket: its offset, reconnects and
resyncs are 0.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sapphire.ops.metrics import LATENCY_BUCKETS

__all__ = ["LoopLag", "VenueMetrics"]

#: event-loop lag: 1 ms to 5 s
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _outcome(exc: BaseException) -> str:
    from sapphire.venues.resilience import classify

    return classify(exc).value.lower()


class VenueMetrics(Collector):
    """The metrics of `venue` (named `name`: `bybit`, `paper`), see the module docstring."""

    def __init__(self, venue: Any, name: str, *, registry: CollectorRegistry | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"venue name {name!r} is invalid: expected a non-empty string")
        from prometheus_client import REGISTRY

        self.venue = venue
        self.name = name
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.requests = Counter(
            "sapphire_exchange_requests_total", "Requests to the venue",
            ["venue", "endpoint"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "sapphire_exchange_errors_total", "Failed requests to the venue by outcome",
            ["venue", "outcome"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "sapphire_exchange_request_duration_seconds", "Request latency to the venue",
            ["venue"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._attached = False

    def attach(self) -> VenueMetrics:
        """Time the venue's requests and register the scrape-time counters (once)."""
        if self._attached:
            return self
        self._attached = True
        self.latency.labels(self.name)
        for outcome in ("rate_limited", "bad_timestamp", "unavailable", "refused"):
            self.errors.labels(self.name, outcome)
        guard = getattr(self.venue, "guard", None)
        client = getattr(self.venue, "client", None)
        if guard is not None:
            guard.request = self._timed_async(guard.request)
        elif client is not None and hasattr(client, "call"):
            client.call = self._timed_sync(client.call)
        else:
            raise ValueError(
                f"venue {self.venue!r} has neither a guard (live) nor a client (paper): "
                "nothing to time"
            )
        self.registry.register(self)
        return self

    def _timed_async(self, request: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(request)
        async def timed(group: str, call: Any, *args: Any, **kwargs: Any) -> Any:
            endpoint = str(getattr(call, "__name__", group))
            return await self._observe(endpoint, request(group, call, *args, **kwargs))

        return timed

    async def _observe(self, endpoint: str, pending: Any) -> Any:
        start = time.perf_counter()
        self.requests.labels(self.name, endpoint).inc()
        try:
            return await pending
        except BaseException as exc:
            self.errors.labels(self.name, _outcome(exc)).inc()
            raise
        finally:
            self.latency.labels(self.name).observe(time.perf_counter() - start)

    def _timed_sync(self, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed(method: str, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self.requests.labels(self.name, method).inc()
            try:
                return call(method, **kwargs)
            except BaseException as exc:
                self.errors.labels(self.name, _outcome(exc)).inc()
                raise
            finally:
                self.latency.labels(self.name).observe(time.perf_counter() - start)

        return timed

    # ---------------------------------------------------------------- at each scrape
    def collect(self) -> Iterator[Metric]:
        venue, labels = self.venue, [self.name]
        guard = getattr(venue, "guard", None)
        limited = trips = 0
        breaker_open = False
        offset_s = 0.0
        if guard is not None:
            limited = len(guard.backoffs)
            trips = int(guard.breaker.trips)
            breaker_open = bool(guard.breaker.is_open)
            offset_ms = guard.skew.offset_ms
            offset_s = 0.0 if offset_ms is None else offset_ms / 1000.0
        counts = self._counters()
        resyncs = sum(
            n for k, n in counts.items() if k.startswith("book:") and k.endswith(":resyncs")
        )

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["venue"])
            family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["venue"])
            family.add_metric(labels, value)
            return family

        yield counter("sapphire_exchange_rate_limit_hits", "Rate-limit answers backed off", limited)
        yield counter("sapphire_exchange_circuit_trips", "Circuit-breaker trips", trips)
        yield gauge("sapphire_exchange_circuit_open", "1 while new orders are refused",
                    1.0 if breaker_open else 0.0)  # fmt: skip
        yield gauge("sapphire_exchange_clock_offset_seconds",
                    "Server clock minus ours (round-trip corrected)", offset_s)  # fmt: skip
        yield counter("sapphire_websocket_reconnects", "Private stream reconnections",
                      counts.get("reconnects", 0))  # fmt: skip
        yield counter("sapphire_websocket_drops", "Private stream connections lost",
                      counts.get("drops", 0))  # fmt: skip
        yield counter("sapphire_order_book_resyncs", "Order books resynced (gap, stale, crossed)",
                      resyncs)  # fmt: skip

    def _counters(self) -> dict[str, int]:
        counters = getattr(self.venue, "counters", None)
        if not callable(counters):
            return {}
        for _ in range(3):  # the venue's thread may add a book meanwhile: read again
            try:
                return dict(counters())
            except RuntimeError:
                continue
        return {}


class LoopLag:
    """The lag of an asyncio event loop: every `interval_s` a callback is due; how late
    it runs goes to `sapphire_event_loop_lag_seconds{loop=name}`. `start()` from any
    thread; `stop()` ends it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        *,
        interval_s: float = 0.25,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r} is invalid: expected seconds > 0")
        from prometheus_client import REGISTRY

        self.loop = loop
        self.name = name
        self.interval_s = float(interval_s)
        self.histogram = Histogram(
            "sapphire_event_loop_lag_seconds", "How late a due callback ran on the loop",
            ["loop"], buckets=LAG_BUCKETS, registry=registry if registry is not None else REGISTRY,
        )  # fmt: skip
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> LoopLag:
        self.histogram.labels(self.name)
        self.loop.call_soon_threadsafe(self._schedule)
        return self

    def _schedule(self) -> None:
        if self._stopped:
            return
        due = self.loop.time() + self.interval_s
        self._handle = self.loop.call_at(due, self._tick, due)

    def _tick(self, due: float) -> None:
        self.histogram.labels(self.name).observe(max(self.loop.time() - due, 0.0))
        self._schedule()

    def stop(self) -> None:
        self._stopped = True
        handle = self._handle
        if handle is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(handle.cancel)
