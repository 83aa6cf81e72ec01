"""A paper or live node process's probes, served beside its metrics (`--metrics-port`):

- `GET /health`: 200 while the session's loop turns (it publishes its status at least
  every few seconds), 503 once it has not for `stuck_after_s` or the session has ended.
- `GET /ready`: 200 when the node can trade: its loop turns, its market data is fresh
  (a bar, trade or book within `stale_after_s`: three bar intervals at the run's pace,
  at least a minute) and its venue answers (a live venue's circuit breaker is closed; a
  paper venue's server process is alive). 503 otherwise, naming each failed check.
  A halted node is ready (it is doing what it must: nothing); its state is in the body.
- `GET /metrics`: the Prometheus metrics (`sapphire.ops.metrics`).

Answers are JSON: `{"status": "ready"|"not ready"|"ok"|"stuck", "run_id", "checks":
{name: {"ok": bool, "detail": str}}}`. Kubernetes probes use them (`deploy/k8s`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["NodeHealth", "serve_node_http"]

#: the least time without market data that makes a node not ready
MIN_STALE_S = 60.0
#: a loop that has not published its status for this long is stuck
STUCK_AFTER_S = 60.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def bar_interval_s(session: Any) -> float | None:
    """Seconds between two bars at the session's pace (None: unknown): a live session's
    timeframe; a paper session's timeframe over its replay speed (lockstep: none)."""
    source = getattr(session, "source", None)
    if source is not None and getattr(source, "timeframe_ns", None):
        return float(source.timeframe_ns) / 1e9
    bars = getattr(session, "bars", None)
    timeframe_ns = getattr(bars, "timeframe_ns", None)
    if not timeframe_ns:
        return None
    from sapphire.paper.config import parse_speed

    speed = parse_speed(str(getattr(session, "speed", "max")))
    return None if speed is None else float(timeframe_ns) / 1e9 / speed


class NodeHealth:
    """The probes of one session (see the module docstring). `last_data` returns the
    monotonic time of the node's last market data (None: none yet)."""

    def __init__(
        self,
        session: Any,
        last_data: Callable[[], float | None],
        *,
        stale_after_s: float | None = None,
        stuck_after_s: float = STUCK_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.last_data = last_data
        interval = bar_interval_s(session)
        self.stale_after_s = (
            stale_after_s
            if stale_after_s is not None
            else max(MIN_STALE_S, 3 * interval if interval else 0.0)
        )
        self.stuck_after_s = stuck_after_s
        self._clock = clock
        self.started = clock()

    # ---------------------------------------------------------------- checks
    def _loop(self) -> tuple[bool, str]:
        status = str(getattr(self.session, "status", "running"))
        if status != "running":
            return False, f"the session is {status}"
        published = getattr(self.session, "_status_at", None)
        if not published:
            return True, "starting"
        age = self._clock() - float(published)
        if age > self.stuck_after_s:
            return False, f"the loop has not turned for {age:.0f} s"
        return True, f"turned {age:.1f} s ago"

    def _market_data(self) -> tuple[bool, str]:
        last = self.last_data()
        since = self.started if last is None else last
        age = self._clock() - since
        what = "no market data yet" if last is None else f"last market data {age:.1f} s ago"
        if age > self.stale_after_s:
            return False, f"{what} (stale after {self.stale_after_s:.0f} s)"
        return True, what

    def _venue(self) -> tuple[bool, str]:
        venue = getattr(self.session, "venue", None)
        guard = getattr(venue, "guard", None)
        if guard is not None:
            if guard.breaker.is_open:
                return False, "the exchange's circuit breaker is open (it does not answer)"
            return True, "the exchange answers"
        client = getattr(self.session, "client", None)
        pid = getattr(client, "pid", None)
        if isinstance(pid, int):
            if _gone(pid):
                return False, f"the paper venue's process {pid} is gone"
            return True, f"the paper venue's process {pid} runs"
        return True, "the venue is in this process"

    def health(self) -> tuple[int, dict[str, Any]]:
        ok, detail = self._loop()
        body = {
            "status": "ok" if ok else "stuck",
            "run_id": getattr(self.session, "run_id", None),
            "checks": {"loop": {"ok": ok, "detail": detail}},
        }
        return (200 if ok else 503), body

    def ready(self) -> tuple[int, dict[str, Any]]:
        checks = {}
        for name, check in (
            ("loop", self._loop),
            ("market_data", self._market_data),
            ("venue", self._venue),
        ):
            ok, detail = check()
            checks[name] = {"ok": ok, "detail": detail}
        ready = all(c["ok"] for c in checks.values())
        node = getattr(self.session, "node", None)
        state = getattr(getattr(node, "trading_state", None), "value", None)
        body = {
            "status": "ready" if ready else "not ready",
            "run_id": getattr(self.session, "run_id", None),
            "trading_state": state,
            "checks": checks,
        }
        return (200 if ready else 503), body


def _gone(pid: int) -> bool:
    """Process `pid` has ended (a child of ours that ended is reaped, not a zombie)."""
    with contextlib.suppress(ChildProcessError):  # not our child: the kernel says below
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, as another user's
    return False


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds: no access log."""


def _app(health: NodeHealth, metrics: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/health", "/ready"):
            code, body = health.health() if path == "/health" else health.ready()
            data = json.dumps(body).encode()
            reason = "OK" if code == 200 else "Service Unavailable"
            start_response(
                f"{code} {reason}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
            )
            return [data]
        return metrics(environ, start_response)

    return app


def serve_node_http(
    health: NodeHealth, registry: Any, port: int, addr: str = "127.0.0.1"
) -> WSGIServer:
    """Serve `/health`, `/ready` and `/metrics` (of `registry`) at `addr:port` from a
    daemon thread; returns the server (`shutdown()` stops it)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"metrics port {port!r} is invalid: expected an int in 0..65535")
    from prometheus_client import make_wsgi_app

    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("NodeHTTPServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(
        addr, port, _app(health, make_wsgi_app(registry)), server_class, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, name="sapphire-node-http", daemon=True).start()
    return server
