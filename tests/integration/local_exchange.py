"""The local Bybit exchange for integration tests: a state served on a free local port,
ccxt's configuration pointing every URL at it, and a guard (`no_internet`) that makes
any name lookup but the loopback's fail, so nothing can reach bybit.com.

Test modules import what they use (``from local_exchange import Exchange, frame,
no_internet``): pytest takes the imported fixtures as the module's own.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from sapphire.data import load_ohlcv
from sapphire.venues.exchange import (
    BackgroundServer,
    Credentials,
    ExchangeState,
    FaultPlan,
    Market,
    create_app,
)

CREDS = Credentials("sapphire-test-key", "sapphire-test-secret-0123456789abcdef")
LINEAR, SPOT = "BTC/USDT:USDT", "BTC/USDT"
LOCAL = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    bars, _report = load_ohlcv("sample")
    return bars.iloc[:3000]


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup but the loopback's fails: ccxt cannot reach a real exchange."""
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOCAL:
            raise AssertionError(f"the test tried to reach {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


class Exchange:
    """A state and its server; with `faults` the app is served behind the test-only
    `Faults` middleware (`self.faults`), with `plan` it injects the exchange's own faults
    (`sapphire.venues.exchange.faults`, ``app.state.faults``); `clock` is the exchange's
    clock (ms); `markets` the markets listed (default: BTCUSDT linear and spot), every
    one replaying `frame`."""

    def __init__(
        self,
        frame: pd.DataFrame,
        limits: dict[str, int] | None = None,
        *,
        faults: bool = False,
        plan: FaultPlan | None = None,
        clock: Callable[[], int] | None = None,
        markets: list[Market] | None = None,
    ) -> None:
        self.state = ExchangeState(
            frame, credentials=[CREDS], history=1440, clock=clock, markets=markets
        )
        app = create_app(self.state, limits=limits, faults=plan)
        self.app = app
        self.faults = Faults(app) if faults else None
        self.server = BackgroundServer(self.faults or app).start()
        self.url = self.server.url

    def config(self, **overrides: Any) -> dict[str, Any]:
        """ccxt's configuration for this server: every URL local."""
        url, ws = self.url, self.url.replace("http://", "ws://")
        api = {
            **dict.fromkeys(("public", "private", "spot", "futures", "v2"), url),
            "ws": {
                "public": {
                    k: f"{ws}/v5/public/{k}" for k in ("spot", "linear", "inverse", "option")
                },
                "private": {
                    "contract": f"{ws}/v5/private",
                    "spot": {"unified": f"{ws}/v5/private", "nonUnified": f"{ws}/v5/private"},
                    "usdc": f"{ws}/v5/private",
                    "trade": f"{ws}/v5/trade",
                },
            },
        }
        config: dict[str, Any] = {
            "apiKey": CREDS.key,
            "secret": CREDS.secret,
            "urls": {"api": api, "test": api, "demotrading": api},
            "options": {
                "fetchMarkets": {"types": ["spot", "linear"]},
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                "fetchOrder": {"acknowledged": True},
            },
            "has": {"fetchCurrencies": False},
        }
        config.update(overrides)
        return config

    def environ(self) -> dict[str, str]:
        """The credential variables of Sapphire's `local` Bybit environment."""
        return {"BYBIT_LOCAL_API_KEY": CREDS.key, "BYBIT_LOCAL_API_SECRET": CREDS.secret}

    def next_bar(self) -> dict[str, float]:
        """The bar the next `advance` replays."""
        r = self.state.replay
        i = r.position
        return {"open": r.open[i], "high": r.high[i], "low": r.low[i], "close": r.close[i]}


def urls_are_local(value: object, base: str) -> list[str]:
    """The URLs in ccxt's `urls` (nested) that do not start with `base`."""
    if isinstance(value, str):
        return [] if value.startswith((base, base.replace("http://", "ws://"))) else [value]
    if isinstance(value, dict):
        return [bad for v in value.values() for bad in urls_are_local(v, base)]
    return []


# ---------------------------------------------------------------------- fault injection
@dataclass
class Seen:
    """One request the exchange saw (or was answered for it by a fault): its method,
    path, retCode (None: not a Bybit envelope) and monotonic time."""

    method: str
    path: str
    code: int | None
    at: float


@dataclass
class _Rule:
    path: str
    kind: str  # "status" | "answer" | "stall" | "rewrite"
    times: int
    status: int = 503
    code: int = 0
    seconds: float = 0.0
    forward: bool = True
    edit: Callable[[dict[str, Any]], None] | None = None


class Faults:
    """An ASGI middleware in front of the local exchange that fails on demand, exactly
    where a test wants it (the exchange's own faults, `FaultPlan`, strike by seeded
    chance). Rules apply to a path for the next `times` requests; `down` answers every
    request HTTP 503. `seen` logs every request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: list[_Rule] = []
        self.seen: list[Seen] = []
        self.down = False

    # the rules
    def status(self, path: str, status: int = 503, times: int = 1) -> None:
        """Answer HTTP `status` (a plain body) without forwarding."""
        self.rules.append(_Rule(path, "status", times, status=status))

    def answer(self, path: str, code: int, times: int = 1) -> None:
        """Answer Bybit's envelope with `code` (e.g. 10006) without forwarding."""
        self.rules.append(_Rule(path, "answer", times, code=code))

    def stall(self, path: str, seconds: float, *, forward: bool, times: int = 1) -> None:
        """Hold the answer `seconds` (after forwarding the request, or instead of it:
        then the exchange never sees it and the late answer is a 504)."""
        self.rules.append(_Rule(path, "stall", times, seconds=seconds, forward=forward))

    def rewrite(self, path: str, edit: Callable[[dict[str, Any]], None], times: int = 1) -> None:
        """Forward, then let `edit` change the JSON answer."""
        self.rules.append(_Rule(path, "rewrite", times, edit=edit))

    def count(self, path: str, code: int | None = None) -> int:
        return sum(1 for s in self.seen if s.path == path and (code is None or s.code == code))

    def _take(self, path: str) -> _Rule | None:
        for rule in self.rules:
            if rule.path == path and rule.times > 0:
                rule.times -= 1
                return rule
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        rule = None if self.down else self._take(path)
        if self.down or (rule is not None and rule.kind == "status"):
            self.seen.append(Seen(method, path, None, time.monotonic()))
            await _reply(send, 503 if rule is None else rule.status, b"Service Unavailable")
            return
        if rule is not None and rule.kind == "answer":
            self.seen.append(Seen(method, path, rule.code, time.monotonic()))
            envelope = {"retCode": rule.code, "retMsg": "Too many visits!", "result": {},
                        "retExtInfo": {}, "time": int(time.time() * 1000)}  # fmt: skip
            await _reply(send, 200, json.dumps(envelope).encode(), "application/json")
            return
        if rule is not None and rule.kind == "stall" and not rule.forward:
            self.seen.append(Seen(method, path, None, time.monotonic()))
            await asyncio.sleep(rule.seconds)
            await _reply(send, 504, b"Gateway Timeout")
            return
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        code = answer.get("retCode") if isinstance(answer, dict) else None
        self.seen.append(Seen(method, path, code, time.monotonic()))
        if rule is not None and rule.kind == "stall":
            await asyncio.sleep(rule.seconds)
        if rule is not None and rule.kind == "rewrite" and rule.edit is not None:
            rule.edit(answer)
            body = json.dumps(answer).encode()
        headers = [(k, v) for k, v in started.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": started["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _reply(send: Any, status: int, body: bytes, kind: str = "text/plain") -> None:
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
