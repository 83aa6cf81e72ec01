"""The WebSocket streams against a real server (uvicorn on a free port) and a real
client: authentication by the first message only (late, missing, bad, in the URL, no
read scope), subscriptions (a node's kinds, jobs, candles; bad and control channels
refused), and backpressure: a client that stops reading is dropped with a reason while
the others get every event, and the hub's reader never waits on it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from sapphire.api import ws
from sapphire.api.security.deps import Principal
from sapphire.engine.stream import START, LocalStream, StreamEntry

PRINCIPALS = {
    "viewer-token": Principal(1, "vic", "viewer", frozenset({"read"}), "token"),
    "trade-only-key": Principal(2, "bot", "trader", frozenset({"trade"}), "api_key", key_id=7),
}


class FakeAuth:
    """Credentials as `AuthService.principal_from_bearer` takes them (401 otherwise)."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()

    def principal_from_bearer(self, credential: str) -> Principal:
        if credential in self.revoked or credential not in PRINCIPALS:
            raise HTTPException(401, detail="invalid or expired token")
        return PRINCIPALS[credential]


class Server:
    """The app served by uvicorn in a thread, on a free port."""

    def __init__(self, app: FastAPI) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/api/v1/ws"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def events(tmp_path: Path) -> LocalStream:
    return LocalStream(tmp_path / "events")


@pytest.fixture
def auth() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def server(events: LocalStream, auth: FakeAuth) -> Iterator[Server]:
    app = FastAPI()
    app.include_router(ws.router, prefix="/api/v1")
    app.state.service = SimpleNamespace(auth=auth, events=events)
    s = Server(app)
    yield s
    s.close()


@contextmanager
def login(url: str, token: str = "viewer-token", **options: Any) -> Iterator[ClientConnection]:
    with connect(url, open_timeout=5, **options) as conn:
        conn.send(json.dumps({"type": "auth", "token": token}))
        answer = json.loads(conn.recv(timeout=5))
        assert answer["type"] == "authenticated", answer
        yield conn


def ask(conn: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    conn.send(json.dumps(message))
    answer: dict[str, Any] = json.loads(conn.recv(timeout=5))
    return answer


def closed_with(conn: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            conn.recv(timeout=10)
    rcvd = closed.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


def events_of(conn: ClientConnection, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        message = json.loads(conn.recv(timeout=max(0.01, deadline - time.monotonic())))
        assert message["type"] == "event", message
        out.append(message)
    return out


def test_the_first_message_must_authenticate_in_time(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "AUTH_TIMEOUT_S", 0.3)
    with connect(server.url) as conn:
        code, reason = closed_with(conn)
    assert (code, reason) == (4401, "no auth message within 0.3 s")
    with connect(server.url) as conn:
        conn.send(json.dumps({"type": "subscribe", "channels": ["jobs"]}))
        code, reason = closed_with(conn)
    assert code == 4401 and reason.startswith("authenticate first")


def test_bad_credentials_are_refused(server: Server) -> None:
    with connect(server.url) as conn:
        conn.send(json.dumps({"type": "auth", "token": "forged"}))
        assert closed_with(conn) == (4401, "not authenticated: invalid or expired token")
    with connect(server.url) as conn:
        conn.send(json.dumps({"type": "auth", "token": "trade-only-key"}))
        assert closed_with(conn) == (4403, "streams need the 'read' scope")


def test_a_credential_in_the_url_is_refused_even_a_good_one(server: Server) -> None:
    with connect(server.url + "?token=viewer-token") as conn:
        assert closed_with(conn) == (4400, "never put a credential in the URL")


def test_subscriptions_deliver_a_nodes_kinds_jobs_and_candles(
    server: Server, events: LocalStream
) -> None:
    with login(server.url) as conn:
        answer = ask(conn, {"type": "subscribe", "channels": ["node.r1.fills", "jobs"]})
        assert answer == {"type": "subscribed", "channels": ["node.r1.fills", "jobs"]}
        events.publish("node.r1", {"type": "order", "status": "SUBMITTED"})
        events.publish("node.r1", {"type": "fill", "last_px": "41000.5"})
        events.publish("jobs", {"type": "job", "job_id": "j1", "status": "running"})
        got = events_of(conn, 2)
        assert {(m["channel"], m["event"]["type"]) for m in got} == {
            ("node.r1", "fill"), ("jobs", "job"),
        }  # fmt: skip
        fill = next(m for m in got if m["channel"] == "node.r1")
        assert fill["event"]["last_px"] == "41000.5"
        assert int(fill["position"]) > 0  # a position to resume from
        # a second subscription to the node widens it; candles come too
        answer = ask(conn, {"type": "subscribe", "channels": ["node.r1.orders", "candles.X@P.1m"]})
        assert answer["type"] == "subscribed"
        events.publish("node.r1", {"type": "order", "status": "FILLED"})
        events.publish("node.r1", {"type": "equity", "equity": "1"})  # not subscribed
        events.publish("candles.X@P.1m", {"type": "bar", "close": 1.0})
        got = events_of(conn, 2)
        assert sorted(m["event"]["type"] for m in got) == ["bar", "order"]
        assert ask(conn, {"type": "unsubscribe", "channels": ["jobs"]})["type"] == "unsubscribed"
        events.publish("jobs", {"type": "job", "job_id": "j2"})
        events.publish("node.r1", {"type": "fill", "last_px": "2"})
        (last,) = events_of(conn, 1)
        assert last["event"]["last_px"] == "2"  # the job event was not sent
        assert ask(conn, {"type": "ping"}) == {"type": "pong"}


def test_a_client_that_reconnects_resumes_from_its_last_position(
    server: Server, events: LocalStream
) -> None:
    """What went by while a client was away comes first, from the position it last got,
    then the live events: nothing missed, nothing twice, in order."""
    with login(server.url) as conn:
        assert ask(conn, {"type": "subscribe", "channels": ["node.r2.fills"]})["type"] == (
            "subscribed"
        )
        events.publish("node.r2", {"type": "fill", "i": 0})
        (first,) = events_of(conn, 1)
    for i in range(1, 6):  # while it is away: fills and orders
        events.publish("node.r2", {"type": "fill", "i": i})
        events.publish("node.r2", {"type": "order", "i": i})
    with login(server.url) as conn:
        answer = ask(conn, {"type": "subscribe", "channels": ["node.r2.fills"],
                            "since": {"node.r2.fills": first["position"]}})  # fmt: skip
        assert answer == {"type": "subscribed", "channels": ["node.r2.fills"],
                          "replayed": {"node.r2.fills": 10}}  # fmt: skip
        events.publish("node.r2", {"type": "fill", "i": 6})
        got = events_of(conn, 6)  # the kinds it asked for: 5 missed fills, then the live one
        assert [m["event"]["i"] for m in got] == [1, 2, 3, 4, 5, 6]
        positions = [int(m["position"]) for m in got]
        assert positions == sorted(positions) and positions[0] > int(first["position"])
    with login(server.url) as conn:  # by the stream channel's name, as events carry it
        answer = ask(conn, {"type": "subscribe", "channels": ["node.r2"],
                            "since": {"node.r2": got[-2]["position"]}})  # fmt: skip
        assert answer["replayed"] == {"node.r2": 2}  # every kind: the order, the fill
        again = events_of(conn, 2)
        assert [m["event"] for m in again] == [{"type": "order", "i": 5}, {"type": "fill", "i": 6}]


@pytest.mark.parametrize(
    ("since", "detail"),
    [
        ({"node.r3.fills": "abc"}, "position 'abc' of channel 'node.r3' is invalid"),
        ({"node.r3.fills": 5}, "position 5 of channel 'node.r3' is invalid"),
        (
            {"jobs": "0"},
            "since must map channels of this subscription to positions an event "
            "came with; 'jobs' is not one",
        ),
        (["0"], "since must map channels of this subscription"),
        ({"node.r3.fills": "0"}, "more than 1000 events of 'node.r3' since position '0'"),
    ],
)
def test_bad_or_too_old_resume_positions_are_refused(
    server: Server, events: LocalStream, since: Any, detail: str
) -> None:
    for i in range(1100):
        events.publish("node.r3", {"type": "fill", "i": i})
    with login(server.url) as conn:
        answer = ask(conn, {"type": "subscribe", "channels": ["node.r3.fills"], "since": since})
        assert answer["type"] == "error" and answer["detail"].startswith(detail), answer


@pytest.mark.parametrize(
    ("channels", "detail"),
    [
        (["node.r1.control"], "channel 'node.r1.control' is a node's commands"),
        (["orders"], "channel 'orders' is unknown: expected node.<run_id>"),
        (["node.a b"], "channel 'node.a b' is invalid"),
        ([], "channels must be a list of 1 to 100 names"),
        ("jobs", "channels must be a list of 1 to 100 names"),
        ([7], "channel 7 is invalid"),
    ],
)
def test_bad_subscriptions_are_refused_naming_the_channel(
    server: Server, channels: Any, detail: str
) -> None:
    with login(server.url) as conn:
        answer = ask(conn, {"type": "subscribe", "channels": channels})
        assert answer["type"] == "error" and answer["detail"].startswith(detail)
        assert ask(conn, {"type": "dance"})["detail"].startswith("message type 'dance' is unknown")


def test_a_revoked_credential_ends_the_stream(
    server: Server, auth: FakeAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "RECHECK_S", 0.2)
    with login(server.url) as conn:
        assert ask(conn, {"type": "ping"}) == {"type": "pong"}
        auth.revoked.add("viewer-token")
        code, reason = closed_with(conn)
    assert code == 4401 and "credential no longer valid" in reason


class RawClient:
    """A WebSocket client on a bare socket with a tiny receive buffer, that reads only
    when told to (a client that falls behind)."""

    def __init__(self, url: str) -> None:
        host_port = url.split("/")[2]
        host, port = host_port.split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /api/v1/ws HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frames(self, timeout: float = 30.0) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of every frame up to the close frame."""
        self.sock.settimeout(timeout)
        while True:
            while True:
                frame = self._frame()
                if frame is None:
                    break
                yield frame
                if frame[0] == 0x8:  # a close frame: nothing comes after it
                    return
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return
            self.buffer += chunk

    def _frame(self) -> tuple[int, bytes] | None:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, at = int.from_bytes(buf[2:4], "big"), 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + size:
            return None
        self.buffer = buf[at + size :]
        return opcode, buf[at : at + size]


def test_a_slow_client_is_dropped_and_the_others_get_everything(
    server: Server, events: LocalStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "QUEUE_SIZE", 100)
    slow = RawClient(server.url)
    slow.send({"type": "auth", "token": "viewer-token"})
    slow.send({"type": "subscribe", "channels": ["node.big"]})
    with login(server.url, max_size=None) as fast:
        assert ask(fast, {"type": "subscribe", "channels": ["node.big"]})["type"] == "subscribed"
        time.sleep(0.3)  # the slow client's subscription is in place too
        n, pad = 400, "x" * 40_000  # 16 MB: more than the kernel buffers between them
        received: list[int] = []

        def read_fast() -> None:
            while len(received) < n:
                message = json.loads(fast.recv(timeout=30))
                received.append(message["event"]["i"])

        reader = threading.Thread(target=read_fast)
        reader.start()
        t0 = time.monotonic()
        for i in range(n):  # the slow client reads nothing meanwhile
            events.publish("node.big", {"type": "fill", "i": i, "pad": pad})
            if i % 10 == 9:
                time.sleep(0.005)  # a busy node's pace: 2,000 events a second
        reader.join(60)
        assert received == list(range(n))  # the fast client got every event, in order
        assert time.monotonic() - t0 < 30
        frames = list(slow.frames())  # now it reads: what was sent, then the close frame
        texts = [json.loads(p) for op, p in frames if op == 0x1]
        assert [t["type"] for t in texts[:2]] == ["authenticated", "subscribed"]
        got = [t["event"]["i"] for t in texts[2:]]
        assert got == list(range(len(got))) and len(got) < n  # in order, then cut off
        opcode, payload = frames[-1]
        assert opcode == 0x8  # a close frame, with the code and the reason
        assert int.from_bytes(payload[:2], "big") == 1013
        assert payload[2:].decode() == (
            "too slow: more than 100 events waiting; reconnect and subscribe again"
        )


def test_the_hub_never_waits_on_a_client_that_does_not_read(tmp_path: Path) -> None:
    """The hub's side alone: a client whose loop takes nothing fills its queue and is
    dropped; another gets all the events; the reader thread is never held up."""
    events = LocalStream(tmp_path / "events")
    hub = ws.StreamHub(events, poll_s=0.05)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        stuck, ok = ws.Client(loop, maxsize=3), ws.Client(loop, maxsize=1000)
        hub.subscribe(stuck, "node.h", None)
        hub.subscribe(ok, "node.h", frozenset({"fill"}))
        for i in range(50):
            events.publish("node.h", {"type": "fill" if i % 2 else "order", "i": i})
        deadline = time.monotonic() + 5
        # the two clients' batches are handed to the loop one after the other: wait for both
        while (ok.queue.qsize() < 25 or stuck.dropped is None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ok.queue.qsize() == 25  # only its kind, every one of them
        assert stuck.dropped is not None and stuck.overflow.is_set()
        assert stuck.queue.qsize() == 3
        got: list[StreamEntry] = [ok.queue.get_nowait() for _ in range(25)]
        assert [e.event["i"] for e in got] == list(range(1, 50, 2))
        hub.leave(stuck)
        hub.leave(ok)
        time.sleep(0.2)
        assert hub._thread is None  # no client left: the reader thread ended
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    assert events.read({"node.h": START}, count=100)[-1].event["i"] == 49
