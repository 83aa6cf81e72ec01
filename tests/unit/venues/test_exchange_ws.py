"""The local exchange's WebSocket streams, spoken to with a raw `websockets` client.

Each test serves a fresh `ExchangeState` on a free local port and steps the replay by
hand, so every message is the one of a known bar.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sapphire.data import load_ohlcv
from sapphire.venues.exchange import (
    BackgroundServer,
    Credentials,
    ExchangeState,
    create_app,
    trading,
)
from sapphire.venues.exchange.auth import verify_stream
from sapphire.venues.exchange.errors import BybitError
from sapphire.venues.exchange.streams import StreamHub

CREDS = Credentials("ws-test-key", "ws-test-secret-0123456789abcdef0123")
ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
         "qty": "0.01", "price": "30000"}  # fmt: skip


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    frame, _report = load_ohlcv("sample")
    return frame.iloc[:2000]


class Served:
    """A state, its app's stream hub and its server."""

    def __init__(self, bars: pd.DataFrame, **app: Any) -> None:
        self.state = ExchangeState(bars, credentials=[CREDS], history=1440)
        application = create_app(self.state, **app)
        self.hub: StreamHub = application.state.streams
        self.server = BackgroundServer(application).start()
        self.ws = self.server.url.replace("http://", "ws://")

    def run(self, body: Callable[[], Awaitable[None]]) -> None:
        asyncio.run(asyncio.wait_for(body(), timeout=20))

    def rest(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.server.url + path) as answer:
            return json.loads(answer.read())["result"]  # type: ignore[no-any-return]


@pytest.fixture
def served(bars: pd.DataFrame) -> Iterator[Served]:
    s = Served(bars)
    yield s
    s.server.stop()


async def ask(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(request))
    return await receive(ws)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


def auth_args(secret: str = CREDS.secret, expires: int | None = None) -> list[str]:
    expires = expires or int(time.time() * 1000) + 10_000
    signature = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
    return [CREDS.key, str(expires), signature.hexdigest()]


# ---------------------------------------------------------------------- auth
def test_verify_stream_checks_key_expiry_and_signature() -> None:
    now = int(time.time() * 1000)
    creds = {CREDS.key: CREDS}
    assert verify_stream(auth_args(), creds, now) == CREDS
    for args, code in [
        (auth_args(secret="not-the-secret"), 10004),
        (auth_args(expires=now - 1), 10002),
        (["unknown", *auth_args()[1:]], 10003),
        (auth_args()[:2], 10001),
        ([CREDS.key, "soon", "00"], 10001),
    ]:
        with pytest.raises(BybitError) as refused:
            verify_stream(args, creds, now)
        assert refused.value.code == code and refused.value.message.startswith("Params Error")


def test_private_data_reaches_only_an_authenticated_connection(served: Served) -> None:
    async def body() -> None:
        async with (
            connect(served.ws + "/v5/private") as good,
            connect(served.ws + "/v5/private") as bad,
        ):
            denied = await ask(bad, {"op": "auth", "args": auth_args(secret="wrong")})
            assert (denied["success"], denied["op"]) == (False, "auth")
            assert "error sign" in denied["ret_msg"]
            refused = await ask(bad, {"op": "subscribe", "req_id": "s1", "args": ["order"]})
            assert (refused["success"], refused["req_id"]) == (False, "s1")
            assert refused["ret_msg"].startswith("Request not authorized")
            late = await ask(bad, {"op": "auth", "args": auth_args(expires=1_000)})
            assert late["success"] is False and "expired" in late["ret_msg"]
            ok = await ask(good, {"op": "auth", "args": auth_args()})
            assert (ok["success"], ok["op"]) == (True, "auth")
            ack = await ask(good, {"op": "subscribe", "req_id": 7, "args": ["order", "wallet"]})
            assert (ack["success"], ack["req_id"], ack["op"]) == (True, "7", "subscribe")
            with served.state.lock:
                placed = trading.create(served.state, ORDER)
            pushed = await receive(good)
            assert pushed["topic"] == "order"
            assert pushed["data"][0]["orderId"] == placed["orderId"]
            pong = await ask(bad, {"op": "ping", "req_id": "p"})  # nothing came before it
            assert (pong["op"], pong["req_id"]) == ("pong", "p")
            assert pong["args"][0].isdigit()

        async with connect(served.ws + "/v5/private") as spot_only:
            await ask(spot_only, {"op": "auth", "args": auth_args()})
            wrong = await ask(spot_only, {"op": "subscribe", "args": ["wallet.linear"]})
            assert wrong["success"] is False and "'wallet.linear'" in wrong["ret_msg"]
            ack = await ask(spot_only, {"op": "subscribe", "args": ["order.spot"]})
            assert ack["success"] is True
            with served.state.lock:
                trading.create(served.state, ORDER)  # a linear order: not for this topic
                trading.create(served.state, {**ORDER, "category": "spot"})
            pushed = await receive(spot_only)
            assert (pushed["topic"], pushed["data"][0]["category"]) == ("order", "spot")

    served.run(body)


# ---------------------------------------------------------------------- public
def test_ping_subscribe_and_a_bad_topic_on_the_public_stream(served: Served) -> None:
    async def body() -> None:
        async with connect(served.ws + "/v5/public/linear") as ws:
            pong = await ask(ws, {"op": "ping", "req_id": "9"})
            assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"],
                            "req_id": "9", "op": "ping"}  # fmt: skip
            bad = await ask(ws, {"op": "subscribe", "req_id": 1,
                                 "args": ["tickers.BTCUSDT", "orderbook.40.BTCUSDT"]})  # fmt: skip
            assert bad["success"] is False and "orderbook.40.BTCUSDT" in bad["ret_msg"]
            assert served.hub.subscribed("tickers.BTCUSDT") == 0  # all or nothing
            unknown = await ask(ws, {"op": "subscribe", "args": ["tickers.ETHUSDT"]})
            assert "'ETHUSDT' is not listed" in unknown["ret_msg"]
            nonsense = await ask(ws, {"op": "fly"})
            assert nonsense["success"] is False and "'fly'" in nonsense["ret_msg"]
            ack = await ask(ws, {"op": "subscribe", "req_id": 2, "args": ["tickers.BTCUSDT"]})
            assert (ack["success"], ack["ret_msg"]) == (True, "subscribe")
            snapshot = await receive(ws)
            assert (snapshot["type"], snapshot["data"]["symbol"]) == ("snapshot", "BTCUSDT")
            gone = await ask(ws, {"op": "unsubscribe", "req_id": 3, "args": ["tickers.BTCUSDT"]})
            assert (gone["success"], gone["op"]) == (True, "unsubscribe")
            assert served.hub.subscribed("tickers.BTCUSDT") == 0

    served.run(body)


def test_book_deltas_rise_u_by_one_and_rebuild_the_rest_book(served: Served) -> None:
    state = served.state

    async def body() -> None:
        async with connect(served.ws + "/v5/public/linear") as ws:
            await ask(ws, {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
            snapshot = await receive(ws)
            assert snapshot["type"] == "snapshot"
            assert snapshot["data"]["u"] == snapshot["data"]["seq"] == state.replay.position
            book = {side: dict(snapshot["data"][side]) for side in ("b", "a")}
            u = snapshot["data"]["u"]
            for _ in range(4):
                state.advance()
                delta = await receive(ws)
                assert delta["type"] == "delta" and delta["data"]["u"] == u + 1
                u = delta["data"]["u"]
                for side in ("b", "a"):
                    for price, size in delta["data"][side]:
                        if size == "0":
                            del book[side][price]
                        else:
                            book[side][price] = size
            rest = served.rest("/v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=50")
            assert book == {side: dict(rest[side]) for side in ("b", "a")}
            assert delta["ts"] == rest["ts"] == state.replay.now_ms

    served.run(body)


def test_klines_confirm_a_bar_with_its_last_minute(served: Served) -> None:
    state = served.state
    replay = state.replay

    async def body() -> None:
        async with connect(served.ws + "/v5/public/spot") as ws:
            ack = await ask(ws, {"op": "subscribe", "args": ["kline.5.BTCUSDT", "kline.1.BTCUSDT"]})
            assert ack["success"] is True
            closed = 0
            for _ in range(6):  # at least one 5-minute bar closes
                i = replay.position
                state.advance()
                by_topic = {}
                for _ in range(2):
                    message = await receive(ws)
                    by_topic[message["topic"]] = message["data"][0]
                minute = by_topic["kline.1.BTCUSDT"]
                assert minute["confirm"] is True and minute["start"] == replay.time_ms[i]
                assert float(minute["close"]) == replay.close[i]
                five = by_topic["kline.5.BTCUSDT"]
                start = int(replay.time_ms[i]) // 300_000 * 300_000
                assert five["start"] == start and five["end"] == start + 299_999
                assert five["confirm"] is (start + 300_000 == replay.now_ms)
                assert float(five["close"]) == replay.close[i]
                closed += five["confirm"]
            assert closed == 1

    served.run(body)


def test_a_slow_client_is_disconnected(bars: pd.DataFrame) -> None:
    served = Served(bars, stream_queue=3)
    state = served.state

    async def body() -> None:
        async with connect(served.ws + "/v5/public/linear") as ws:
            await ask(ws, {"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]})
            await receive(ws)  # the snapshot
            (conn,) = served.hub.connections
            # five bars while the server's loop is busy: five deltas queue at once
            conn.loop.call_soon_threadsafe(lambda: [state.advance() for _ in range(5)])
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await receive(ws)
                    assert message["type"] == "delta"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "too slow" in closed.value.rcvd.reason
        for _ in range(500):  # the server forgets the connection once its tasks end
            if not served.hub.connections:
                break
            await asyncio.sleep(0.01)
        assert served.hub.connections == set()

    try:
        served.run(body)
    finally:
        served.server.stop()


def test_a_clock_thread_streams_an_unbroken_book(served: Served) -> None:
    async def body() -> None:
        async with connect(served.ws + "/v5/public/linear") as ws:
            await ask(ws, {"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]})
            u = (await receive(ws))["data"]["u"]
            clock = served.state.start_clock(speed=60 * 200)  # a bar every 5 ms
            try:
                for _ in range(40):
                    delta = await receive(ws)
                    assert delta["data"]["u"] == u + 1
                    u = delta["data"]["u"]
            finally:
                clock.stop()

    served.run(body)


# ---------------------------------------------------------------------- trade
def test_the_trade_stream_refuses_as_rest_does(served: Served) -> None:
    def header(ms: int | None = None) -> dict[str, str]:
        return {"X-BAPI-TIMESTAMP": str(ms or int(time.time() * 1000)),
                "X-BAPI-RECV-WINDOW": "5000"}  # fmt: skip

    async def body() -> None:
        async with connect(served.ws + "/v5/trade") as ws:
            first = await ask(ws, {"op": "order.create", "reqId": "r1", "header": header(),
                                   "args": [ORDER]})  # fmt: skip
            assert (first["reqId"], first["retCode"], first["data"]) == ("r1", 10003, {})
            bad = await ask(ws, {"op": "auth", "args": auth_args(secret="nope")})
            assert (bad["op"], bad["retCode"]) == ("auth", 10004)
            ok = await ask(ws, {"op": "auth", "args": auth_args()})
            assert (ok["op"], ok["retCode"], ok["retMsg"]) == ("auth", 0, "OK")
            stale = await ask(ws, {"op": "order.create", "reqId": "r2",
                                   "header": header(int(time.time() * 1000) - 60_000),
                                   "args": [ORDER]})  # fmt: skip
            assert stale["retCode"] == 10002 and "recv_window" in stale["retMsg"]
            wrong = {**ORDER, "qty": "0.0105"}
            with pytest.raises(BybitError) as rest, served.state.lock:
                trading.create(served.state, wrong)
            refused = await ask(ws, {"op": "order.create", "reqId": "r3", "header": header(),
                                     "args": [wrong]})  # fmt: skip
            assert (refused["retCode"], refused["retMsg"]) == (rest.value.code,
                                                               rest.value.message)  # fmt: skip
            placed = await ask(ws, {"op": "order.create", "reqId": "r4", "header": header(),
                                    "args": [ORDER]})  # fmt: skip
            assert (placed["retCode"], placed["op"]) == (0, "order.create")
            assert placed["header"]["X-Bapi-Limit"] == "10"
            assert served.state.orders[placed["data"]["orderId"]].price == 30000
            pong = await ask(ws, {"op": "ping", "req_id": "x"})
            assert pong["op"] == "pong"

    served.run(body)
