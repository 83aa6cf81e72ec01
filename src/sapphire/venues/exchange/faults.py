"""Fault injection for the local exchange: a seeded `FaultPlan`, switched on per fault.

`FaultPlan.parse` reads the ``--faults`` text, comma-separated ``name=value`` items:

- ``latency=50ms±20`` (or ``50ms+-20ms``, ``0.2s``): every ``/v5`` HTTP answer waits the
  mean plus a uniform jitter in ``[-jitter, +jitter]`` (never below 0);
- ``http5xx=0.02``: a share of ``/v5`` HTTP requests answered HTTP 503 before the
  exchange sees them;
- ``rate_limit=0.02``: a share of private ``/v5`` requests answered Bybit's 10006 ("Too
  many visits") before the exchange sees them;
- ``timeout_after_accept=0.01``: a share of order entries (create, amend, cancel,
  cancel-all) the exchange processes, whose answer is then held ``timeout_hold``
  (default ``30s``, past ccxt's 10 s timeout) before it is sent: the client gives up on
  a request that did happen;
- ``ws_disconnect=0.005``: a share of WebSocket messages replaced by closing the
  connection (code 1011, reason ``fault injection: ws_disconnect``);
- ``drop_delta=0.01`` / ``reorder_delta=0.01``: a share of order book deltas not sent,
  or held back and sent after the next one; the book's ``u`` sequence then shows the gap
  or the step back, which a client must notice;
- ``restart=every:5000bars``: every 5000 replayed bars the exchange restarts: every
  WebSocket is closed (code 1012, "service restart") and for ``restart_pause`` (default
  ``2s``) every HTTP request is answered 503 and every WebSocket refused; then it comes
  back with the same state (in process: the orders, positions and balances never left).

Shares are probabilities in 0..1. Each fault draws from its own random stream, seeded by
``(seed, fault)`` (and, for WebSocket faults, the connection's number), so the same seed
gives the same faults for the same sequence of requests, whatever the other faults do.

`FaultInjector` applies a plan and counts what it injected (`counts`, also served as
JSON at ``GET /sapphire/faults``); `FaultMiddleware` is its ASGI side.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sapphire.venues.exchange.errors import RATE_LIMIT

if TYPE_CHECKING:
    from sapphire.venues.exchange.state import ExchangeState
    from sapphire.venues.exchange.streams import Connection, StreamHub

__all__ = ["FAULTS", "FaultInjector", "FaultMiddleware", "FaultPlan"]

#: the faults a plan can switch on (besides latency and restart, each a probability)
SHARES = (
    "http5xx",
    "rate_limit",
    "timeout_after_accept",
    "ws_disconnect",
    "drop_delta",
    "reorder_delta",
)
FAULTS = ("latency", *SHARES, "restart")
_SETTINGS = ("timeout_hold", "restart_pause")
ORDER_ENTRY = frozenset(
    ("/v5/order/create", "/v5/order/amend", "/v5/order/cancel", "/v5/order/cancel-all")
)
ADMIN_PATH = "/sapphire/faults"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)?")
_LATENCY = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)\s*(?:(?:±|\+-|\+/-)\s*(\d+(?:\.\d+)?)\s*(ms|s)?)?")
_RESTART = re.compile(r"every:(\d+)\s*bars?")
RESTART_CLOSE_CODE = 1012
DISCONNECT_CLOSE_CODE = 1011

ASGIApp = Callable[..., Awaitable[None]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _seconds(text: str, unit: str | None, item: str, default_unit: str | None) -> float:
    unit = unit or default_unit
    if unit is None:
        raise ValueError(f"--faults item {item!r}: {text!r} needs a unit, ms or s")
    return float(text) / (1000 if unit == "ms" else 1)


@dataclass(frozen=True)
class FaultPlan:
    """Which faults the exchange injects and how often (see the module docstring);
    durations in seconds, shares in 0..1, `restart_every` in bars (0: never)."""

    latency: float = 0.0
    latency_jitter: float = 0.0
    http5xx: float = 0.0
    rate_limit: float = 0.0
    timeout_after_accept: float = 0.0
    ws_disconnect: float = 0.0
    drop_delta: float = 0.0
    reorder_delta: float = 0.0
    restart_every: int = 0
    timeout_hold: float = 30.0
    restart_pause: float = 2.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> FaultPlan:
        """The plan `text` describes (``"latency=50ms±20,http5xx=0.02,..."``); a
        ValueError names the first bad item and what was expected."""
        values: dict[str, Any] = {"seed": seed}
        for raw in str(text).split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = (part.strip() for part in item.partition("="))
            if not sep or not value:
                raise ValueError(f"--faults item {item!r}: expected name=value")
            if name in values:
                raise ValueError(f"--faults item {item!r}: {name} is given twice")
            if name == "latency":
                m = _LATENCY.fullmatch(value)
                if m is None:
                    raise ValueError(
                        f"--faults item {item!r}: expected latency=MEAN[±JITTER], e.g. 50ms±20"
                    )
                values["latency"] = _seconds(m.group(1), m.group(2), item, None)
                if m.group(3):
                    jitter = _seconds(m.group(3), m.group(4), item, m.group(2))
                    values["latency_jitter"] = jitter
            elif name == "restart":
                m = _RESTART.fullmatch(value)
                if m is None or int(m.group(1)) < 1:
                    raise ValueError(
                        f"--faults item {item!r}: expected restart=every:Nbars with N >= 1"
                    )
                values["restart_every"] = int(m.group(1))
            elif name in _SETTINGS:
                m = _DURATION.fullmatch(value)
                if m is None:
                    raise ValueError(f"--faults item {item!r}: expected a duration, e.g. 2s")
                values[name] = _seconds(m.group(1), m.group(2), item, None)
            elif name in SHARES:
                try:
                    share = float(value)
                except ValueError:
                    share = -1.0
                if not 0 <= share <= 1:
                    raise ValueError(
                        f"--faults item {item!r}: {name} must be a probability in 0..1"
                    )
                values[name] = share
            else:
                known = ", ".join((*FAULTS, *_SETTINGS))
                raise ValueError(f"--faults item {item!r}: unknown fault {name!r}: one of {known}")
        return cls(**values)

    @property
    def active(self) -> bool:
        """Whether any fault is switched on."""
        return bool(self.latency or self.restart_every or any(getattr(self, s) for s in SHARES))

    def describe(self) -> str:
        """The switched-on faults, as ``--faults`` takes them."""
        parts = []
        if self.latency:
            parts.append(f"latency={self.latency * 1000:g}ms±{self.latency_jitter * 1000:g}")
        parts += [f"{s}={getattr(self, s):g}" for s in SHARES if getattr(self, s)]
        if self.restart_every:
            parts.append(f"restart=every:{self.restart_every}bars")
        defaults = {f.name: f.default for f in fields(self)}
        parts += [
            f"{s}={getattr(self, s):g}s" for s in _SETTINGS if getattr(self, s) != defaults[s]
        ]
        return ",".join(parts) or "none"


class FaultInjector:
    """Applies a `FaultPlan`: decides each fault from its seeded stream and counts what
    it injected (`counts`, by fault name)."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self._streams: dict[str, random.Random] = {}
        self._down_until = 0.0
        self._bars = 0
        self._hub: StreamHub | None = None
        self._held: dict[tuple[str, str], str] = {}  # (connection, topic) -> held delta

    def _stream(self, name: str) -> random.Random:
        found = self._streams.get(name)
        if found is None:
            found = self._streams[name] = random.Random(f"{self.plan.seed}/{name}")
        return found

    def roll(self, fault: str, stream: str | None = None) -> bool:
        """Whether `fault` strikes now (counted when it does); `stream` names a separate
        random stream (a WebSocket connection's)."""
        share = float(getattr(self.plan, fault))
        if share <= 0:
            return False
        hit = self._stream(stream or fault).random() < share
        if hit:
            self.counts[fault] += 1
        return hit

    def delay(self) -> float:
        """This request's latency in seconds."""
        plan = self.plan
        if not plan.latency:
            return 0.0
        jitter = self._stream("latency").uniform(-plan.latency_jitter, plan.latency_jitter)
        self.counts["latency"] += 1
        return max(0.0, plan.latency + jitter)

    # ------------------------------------------------------------------ restarts
    def attach(self, state: ExchangeState, hub: StreamHub) -> None:
        """Watch `state`'s bars (for restarts) and inject the WebSocket faults in `hub`."""
        self._hub = hub
        hub.faults = self
        if self.plan.restart_every:
            state.subscribe(self._on_event)

    def _on_event(self, topic: str, data: dict[str, object]) -> None:
        if topic != "bar":
            return
        self._bars += 1
        if self._bars % self.plan.restart_every == 0:
            self.restart()

    def restart(self) -> None:
        """Close every WebSocket and refuse everything for `restart_pause` seconds."""
        self.counts["restart"] += 1
        self._down_until = time.monotonic() + self.plan.restart_pause
        if self._hub is not None:
            self._hub.close_all(RESTART_CLOSE_CODE, "service restart")

    @property
    def down(self) -> bool:
        """Whether the exchange is restarting."""
        return time.monotonic() < self._down_until

    # ------------------------------------------------------------------ WebSocket
    def disconnect(self, conn: Connection) -> bool:
        """Whether the next message to `conn` is replaced by closing it."""
        return self.roll("ws_disconnect", f"ws_disconnect/{conn.number}")

    def book_delta(self, conn: Connection, topic: str, text: str) -> list[str]:
        """The messages to send `conn` for the book delta `text`: none (dropped), or it,
        or a held one after it (reordered)."""
        key = (conn.id, topic)
        if self.roll("drop_delta", f"drop_delta/{conn.number}"):
            return []
        if self.roll("reorder_delta", f"reorder_delta/{conn.number}") and key not in self._held:
            self._held[key] = text
            return []
        held = self._held.pop(key, None)
        return [text] if held is None else [text, held]

    def forget(self, conn: Connection) -> None:
        for key in [k for k in self._held if k[0] == conn.id]:
            del self._held[key]


class FaultMiddleware:
    """ASGI middleware injecting the HTTP faults of `injector` in front of `app`, and
    serving the counts at ``GET /sapphire/faults``."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        inj = self.injector
        if scope["type"] == "websocket" and inj.down:
            self._refused()
            await send({"type": "websocket.close", "code": RESTART_CLOSE_CODE})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == ADMIN_PATH:
            body = {"plan": inj.plan.describe(), "seed": inj.plan.seed, "counts": dict(inj.counts)}
            await _reply(send, 200, json.dumps(body).encode(), "application/json")
            return
        if not path.startswith("/v5/"):
            await self.app(scope, receive, send)
            return
        if inj.down:
            self._refused()
            await _reply(send, 503, b"Service Unavailable: restarting")
            return
        wait = inj.delay()
        if wait:
            await asyncio.sleep(wait)
        if inj.roll("http5xx"):
            await _reply(send, 503, b"Service Unavailable")
            return
        if not path.startswith("/v5/market/") and inj.roll("rate_limit"):
            envelope = {"retCode": RATE_LIMIT, "retMsg": "Too many visits!", "result": {},
                        "retExtInfo": {}, "time": int(time.time() * 1000)}  # fmt: skip
            await _reply(send, 200, json.dumps(envelope).encode(), "application/json")
            return
        if path in ORDER_ENTRY and inj.roll("timeout_after_accept"):
            await self._late(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refused(self) -> None:
        self.injector.counts["refused_while_restarting"] += 1

    async def _late(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        """Process the request, then hold its answer `timeout_hold` seconds."""
        answer: list[MutableMapping[str, Any]] = []

        async def capture(message: MutableMapping[str, Any]) -> None:
            answer.append(message)

        await self.app(scope, receive, capture)
        await asyncio.sleep(self.injector.plan.timeout_hold)
        try:
            for message in answer:
                await send(message)
        except (OSError, RuntimeError):  # the client has gone: the point of the fault
            return


async def _reply(send: Send, status: int, body: bytes, kind: str = "text/plain") -> None:
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
