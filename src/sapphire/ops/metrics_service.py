"""Prometheus metrics of the service: HTTP requests by route template and status
(`HttpMetricsMiddleware`), backtest and optimisation jobs (`JobsCollector`), the data
folder's disk, the event loop's lag and the process; served at `/metrics`
(`metrics_route`).

Who may read `/metrics`: with a metrics token (`SAPPHIRE_METRICS_TOKEN`, or the file
`SAPPHIRE_METRICS_TOKEN_FILE` names), a request carrying `Authorization: Bearer <token>`
(Prometheus' `authorization` in its scrape config); without one, only a client on the
loopback (Prometheus on the same host, or a sidecar). Anyone else gets 401/403. The
token is separate from users' credentials: a scraper holds no user scope.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sapphire.ops.metrics import DiskCollector
from sapphire.ops.metrics_venue import LoopLag

__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "HttpMetricsMiddleware",
    "JobsCollector",
    "metrics_route",
    "metrics_token",
    "route_template",
]

TOKEN_ENV = "SAPPHIRE_METRICS_TOKEN"
TOKEN_FILE_ENV = "SAPPHIRE_METRICS_TOKEN_FILE"
#: request latency: 1 ms to 10 s
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
#: a request no route matched (a scan of random paths must not add series)
UNMATCHED = "unmatched"


def metrics_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The metrics token: `SAPPHIRE_METRICS_TOKEN`, else the content of the file
    `SAPPHIRE_METRICS_TOKEN_FILE` names; None without either. A token under 16
    characters, or an unreadable file, is refused naming the variable."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV)
    source = TOKEN_ENV
    if not token and env.get(TOKEN_FILE_ENV):
        path = Path(env[TOKEN_FILE_ENV])
        source = f"{TOKEN_FILE_ENV} ({path})"
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{source} cannot be read: {exc.strerror}") from None
    if not token:
        return None
    if len(token) < 16:
        raise ValueError(f"{source} is too short ({len(token)} characters): use 16 or more")
    return token


class HttpMetricsMiddleware:
    """Counts requests (`sapphire_http_requests_total{method,route,status}`) and times
    them (`sapphire_http_request_duration_seconds{method,route}`) by route template
    (`/api/v1/orders/{order_id}`, not the path); starts the loop-lag watch on the first
    request (`loop_lag`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        requests: Counter,
        latency: Histogram,
        loop_lag: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self._lag_args = loop_lag
        self.lag: LoopLag | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.lag is None and self._lag_args is not None:
            self.lag = LoopLag(asyncio.get_running_loop(), "service", **self._lag_args).start()
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = UNMATCHED
            if route is not None:
                template = route_template(str(scope.get("path", "")), str(route.path))
            method = str(scope.get("method", "GET"))
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - start)


def route_template(path: str, route_path: str) -> str:
    """The request's route template: `route_path` (`/nodes/{run_id}`) after the static
    prefix it was included under, taken from the request's `path` (`/api/v1/nodes/x`
    gives `/api/v1/nodes/{run_id}`; a route holding its whole path is kept as it is)."""
    below = len(path.rstrip("/").split("/")) - len(route_path.rstrip("/").split("/"))
    prefix = "/".join(path.split("/")[: below + 1]) if below > 0 else ""
    return prefix + route_path


class JobsCollector(Collector):
    """`sapphire_jobs{kind,status}`: the service's jobs (backtests, optimisations, walk-
    forwards...) by kind and status, read from the job manager at each scrape."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts: dict[tuple[str, str], int] = {}
        for job in self.jobs.list_jobs():
            key = (str(job.kind), str(job.status))
            counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(
            "sapphire_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(counts.items()):
            family.add_metric([kind, status], n)
        yield family


def metrics_route(
    app: Any,
    service: Any,
    *,
    registry: CollectorRegistry | None = None,
    token: str | None = None,
    loop_lag_s: float = 0.25,
) -> CollectorRegistry:
    """Instrument the FastAPI `app` of `service`: the HTTP middleware, the jobs and disk
    collectors, the loop-lag watch, and `GET /metrics` (see the module docstring for who
    may read it). Call before the app starts; returns the registry it serves (default:
    the process's, with the process metrics)."""
    from prometheus_client import REGISTRY

    r = registry if registry is not None else REGISTRY
    requests = Counter(
        "sapphire_http_requests_total", "HTTP requests by route template and status",
        ["method", "route", "status"], registry=r,
    )  # fmt: skip
    latency = Histogram(
        "sapphire_http_request_duration_seconds", "HTTP request latency by route template",
        ["method", "route"], buckets=HTTP_BUCKETS, registry=r,
    )  # fmt: skip
    r.register(JobsCollector(service.jobs))
    r.register(DiskCollector(Path(service.home)))
    app.add_middleware(
        HttpMetricsMiddleware, requests=requests, latency=latency,
        loop_lag={"interval_s": loop_lag_s, "registry": r},
    )  # fmt: skip

    async def metrics(request: Request) -> Response:
        refusal = _refusal(request, token)
        if refusal is not None:
            return refusal
        body = await run_in_threadpool(generate_latest, r)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return r


def _refusal(request: Request, token: str | None) -> Response | None:
    """None when the request may read the metrics, else the answer refusing it."""
    if token is None:
        host = request.client.host if request.client is not None else ""
        if host in _LOOPBACK:
            return None
        return PlainTextResponse(
            "metrics are served to the loopback only: set SAPPHIRE_METRICS_TOKEN to scrape "
            "from elsewhere",
            status_code=403,
        )
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(credential.encode(), token.encode()):
        return None
    return PlainTextResponse(
        "a bearer metrics token is required", status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )  # fmt: skip
