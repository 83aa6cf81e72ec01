"""The local exchange's fault injection: the ``--faults`` syntax, the seeded streams, and
each fault as a client meets it over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sapphire.data import load_ohlcv
from sapphire.venues.exchange import (
    BackgroundServer,
    Credentials,
    ExchangeState,
    FaultPlan,
    create_app,
)
from sapphire.venues.exchange.auth import sign
from sapphire.venues.exchange.faults import FaultInjector

CREDS = Credentials("fault-key", "fault-secret-0123456789abcdef012345")
ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
         "qty": "0.01", "price": "30000"}  # fmt: skip
ISSUE_EXAMPLE = (
    "latency=50ms±20,http5xx=0.02,timeout_after_accept=0.01,rate_limit=0.02,"
    "ws_disconnect=0.005,drop_delta=0.01,reorder_delta=0.01,restart=every:5000bars"
)


# ---------------------------------------------------------------------- the plan
def test_the_issue_example_parses() -> None:
    plan = FaultPlan.parse(ISSUE_EXAMPLE, seed=7)
    assert (plan.latency, plan.latency_jitter) == (0.05, 0.02)
    assert (plan.http5xx, plan.timeout_after_accept, plan.rate_limit) == (0.02, 0.01, 0.02)
    assert (plan.ws_disconnect, plan.drop_delta, plan.reorder_delta) == (0.005, 0.01, 0.01)
    assert (plan.restart_every, plan.seed) == (5000, 7)
    assert FaultPlan.parse(plan.describe(), seed=7) == plan
    assert FaultPlan.parse("latency=0.2s+-50ms,restart_pause=500ms").latency_jitter == 0.05
    assert not FaultPlan.parse("").active and FaultPlan.parse("").describe() == "none"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("http5xx=2", "'http5xx=2': http5xx must be a probability in 0..1"),
        ("http5xx=lots", "'http5xx=lots'"),
        ("latency=50", "'latency=50': expected latency=MEAN[±JITTER]"),
        ("restart=5000", "'restart=5000': expected restart=every:Nbars"),
        ("restart=every:0bars", "'restart=every:0bars'"),
        ("timeout_hold=30", "'timeout_hold=30': '30' needs a unit, ms or s"),
        ("timeout_hold=soon", "expected a duration"),
        ("explode=0.1", "unknown fault 'explode'"),
        ("http5xx", "'http5xx': expected name=value"),
        ("http5xx=0.1,http5xx=0.2", "http5xx is given twice"),
    ],
)
def test_a_bad_item_is_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="--faults item") as error:
        FaultPlan.parse(text)
    assert named in str(error.value)


def test_the_same_seed_gives_the_same_faults_each_from_its_own_stream() -> None:
    plan = FaultPlan.parse("http5xx=0.3,rate_limit=0.3,latency=50ms±20", seed=7)

    def sequence(injector: FaultInjector, mixed: bool) -> list[bool]:
        out = []
        for _ in range(200):
            if mixed:
                injector.roll("rate_limit")  # another fault's draws interleaved
            out.append(injector.roll("http5xx"))
        return out

    first, again = FaultInjector(plan), FaultInjector(plan)
    assert sequence(first, False) == sequence(again, True)
    assert 30 < first.counts["http5xx"] < 90
    other = FaultInjector(FaultPlan.parse("http5xx=0.3", seed=8))
    assert sequence(other, False) != sequence(FaultInjector(plan), False)
    delays = [first.delay() for _ in range(100)]
    assert min(delays) >= 0.03 and max(delays) <= 0.07 and len(set(delays)) > 50


# ---------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    frame, _report = load_ohlcv("sample")
    return frame.iloc[:1600]


class Served:
    def __init__(self, bars: pd.DataFrame, faults: str) -> None:
        self.state = ExchangeState(bars, credentials=[CREDS], history=1440)
        self.app = create_app(self.state, faults=FaultPlan.parse(faults, seed=7))
        self.server = BackgroundServer(self.app).start()
        self.url = self.server.url
        self.ws = self.url.replace("http://", "ws://")

    @property
    def counts(self) -> dict[str, int]:
        return self.get("/sapphire/faults")[1]["counts"]  # type: ignore[no-any-return]

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, path: str, body: dict[str, Any], timeout: float = 5) -> tuple[int, Any]:
        ts, raw = str(int(time.time() * 1000)), json.dumps(body).encode()
        headers = {"X-BAPI-API-KEY": CREDS.key, "X-BAPI-TIMESTAMP": ts,
                   "X-BAPI-RECV-WINDOW": "5000", "Content-Type": "application/json",
                   "X-BAPI-SIGN": sign(CREDS.secret, ts, CREDS.key, "5000", raw)}  # fmt: skip
        request = urllib.request.Request(self.url + path, raw, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def serve(bars: pd.DataFrame) -> Iterator[Any]:
    started: list[Served] = []

    def start(faults: str) -> Served:
        started.append(Served(bars, faults))
        return started[-1]

    yield start
    for s in started:
        s.server.stop()


def test_5xx_and_10006_answer_before_the_exchange_sees_the_order(serve: Any) -> None:
    down = serve("http5xx=1")
    status, body = down.post("/v5/order/create", ORDER)
    assert status == 503 and "Service Unavailable" in body
    assert down.state.orders == {} and down.counts == {"http5xx": 1}

    limited = serve("rate_limit=1")
    status, answer = limited.post("/v5/order/create", ORDER)
    assert status == 200 and answer["retCode"] == 10006 and limited.state.orders == {}
    status, public = limited.get("/v5/market/time")  # public endpoints are not limited
    assert status == 200 and public["retCode"] == 0 and limited.counts == {"rate_limit": 1}


def test_a_timeout_after_accept_creates_the_order_and_answers_too_late(serve: Any) -> None:
    s = serve("timeout_after_accept=1,timeout_hold=1s")
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        s.post("/v5/order/create", {**ORDER, "orderLinkId": "late-1"}, timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert [r.link_id for r in s.state.orders.values()] == ["late-1"]  # it did happen
    status, answer = s.post("/v5/order/create", {**ORDER, "orderLinkId": "late-2"}, timeout=3)
    assert status == 200 and answer["retCode"] == 0  # a patient client gets the answer
    assert time.monotonic() - started >= 1.0 and s.counts == {"timeout_after_accept": 2}


def test_latency_delays_every_v5_answer(serve: Any) -> None:
    s = serve("latency=200ms±10")
    started = time.monotonic()
    s.get("/v5/market/time")
    assert time.monotonic() - started >= 0.19 and s.counts["latency"] == 1


# ---------------------------------------------------------------------- WebSocket
async def _ask(ws: Any, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(request))
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


def _book_us(s: Served, bars: int) -> list[int]:
    """The u of every book message a subscriber gets over `bars` replayed bars."""

    async def body() -> list[int]:
        async with connect(s.ws + "/v5/public/linear") as ws:
            await _ask(ws, {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
            us = [json.loads(await ws.recv())["data"]["u"]]
            for _ in range(bars):
                s.state.advance()
            await ws.send(json.dumps({"op": "ping"}))
            while True:  # the ping's answer comes after every delta sent before it
                answer = json.loads(await ws.recv())
                if answer.get("op") == "ping":
                    return us
                us.append(answer["data"]["u"])

    return asyncio.run(asyncio.wait_for(body(), 20))


def test_dropped_and_reordered_deltas_show_in_the_u_sequence(serve: Any) -> None:
    dropped = serve("drop_delta=0.5")
    us = _book_us(dropped, 40)
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(us))
    assert us == sorted(us) and gaps == dropped.counts["drop_delta"] > 5
    assert _book_us(serve("drop_delta=0.5"), 40) == us  # seeded: the same gaps again

    reordered = serve("reorder_delta=1")
    us = _book_us(reordered, 4)
    first = us[0]
    assert us == [first, first + 2, first + 1, first + 4, first + 3]


def test_ws_disconnect_closes_the_connection(serve: Any) -> None:
    s = serve("ws_disconnect=1")

    async def body() -> int | None:
        async with connect(s.ws + "/v5/public/linear") as ws:
            await ws.send(json.dumps({"op": "ping"}))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(asyncio.wait_for(body(), 10)) == 1011
    assert s.counts == {"ws_disconnect": 1}


def test_a_restart_closes_streams_refuses_a_moment_and_keeps_the_state(serve: Any) -> None:
    s = serve("restart=every:3bars,restart_pause=0.6s")
    status, placed = s.post("/v5/order/create", ORDER)
    assert placed["retCode"] == 0

    async def body() -> int | None:
        async with connect(s.ws + "/v5/public/linear") as ws:
            await _ask(ws, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
            for _ in range(3):
                s.state.advance()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(asyncio.wait_for(body(), 10)) == 1012
    assert s.get("/v5/market/time")[0] == 503
    time.sleep(0.7)
    status, answer = s.get("/v5/market/tickers?category=linear&symbol=BTCUSDT")
    assert status == 200 and answer["retCode"] == 0
    assert [r.order_id for r in s.state.orders.values()] == [placed["result"]["orderId"]]
    counts = s.counts
    assert counts["restart"] == 1 and counts["refused_while_restarting"] == 1
