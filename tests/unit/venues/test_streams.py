"""The streams' own logic: the back-off, and `BookStream` against a scripted Bybit public
stream on a local socket (a stale book resubscribed, a dropped connection reconnected
with every book started afresh)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from sapphire.domain import InstrumentId
from sapphire.sim.book import BookSequenceError
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.live import BybitVenue
from sapphire.venues.streams import Backoff, BookStream

TOPIC = "orderbook.50.BTCUSDT"
PERP = InstrumentId("BTC/USDT:USDT", "BYBIT")
MS = 1_000_000


def test_the_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 2.0)
    delays = [backoff.delay() for _ in range(4)]
    for delay, base in zip(delays, (0.5, 1.0, 2.0, 2.0), strict=True):
        assert base <= delay <= base * 1.25
    backoff.reset()
    assert backoff.delay() <= 0.625


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (2, 1), (-1, 1)])
def test_a_bad_backoff_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=f"base_s={base!r}, cap_s={cap!r} are invalid"):
        Backoff(base, cap)


def test_a_book_stream_needs_topics_and_a_websocket_url() -> None:
    with pytest.raises(ValueError, match="books is empty"):
        BookStream("ws://127.0.0.1:1", {})
    with pytest.raises(ValueError, match="url='http://x' is invalid"):
        BookStream("http://x", {TOPIC: PERP})


def test_the_venue_refuses_a_bad_reconcile_interval() -> None:
    conn = BybitConnection(BybitEnvironment.LOCAL, url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="reconcile_s=0 is invalid"):
        BybitVenue(conn, ["BTC/USDT:USDT"], reconcile_s=0)


def snapshot(u: int, ts_ms: int, bid: str) -> str:
    data = {"s": "BTCUSDT", "b": [[bid, "1"]], "a": [["50001", "2"]], "u": u, "seq": u}
    return json.dumps({"topic": TOPIC, "type": "snapshot", "ts": ts_ms, "data": data})


Script = Callable[[ServerConnection, int, list[dict[str, Any]]], Awaitable[None]]


async def scripted(script: Script, body: Callable[[str], Awaitable[None]]) -> None:
    """Serve `script(socket, connection number, requests seen)` and run `body(url)`."""
    count = 0
    requests: list[dict[str, Any]] = []

    async def handle(ws: ServerConnection) -> None:
        nonlocal count
        count += 1
        await script(ws, count, requests)

    async with serve(handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        await asyncio.wait_for(body(f"ws://127.0.0.1:{port}"), 20)


async def until(done: Callable[[], bool]) -> None:
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_a_stale_book_is_resubscribed_and_counted() -> None:
    now = [1_000 * MS]
    seen: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, n: int, requests: list[dict[str, Any]]) -> None:
        async for text in ws:
            request = json.loads(text)
            requests.append(request)
            seen.append(request)
            if request["op"] == "subscribe":
                await ws.send(json.dumps({"success": True, "ret_msg": "", "op": "subscribe"}))
                await ws.send(snapshot(len(requests), 1_000, "50000"))

    async def body(url: str) -> None:
        stream = BookStream(
            url, {TOPIC: PERP}, stale_after_ms=500, stale_check_s=0.02, clock=lambda: now[0],
            ping_interval_s=0.02,
        )  # fmt: skip
        task = asyncio.create_task(stream.run())
        book = stream.books[TOPIC]
        await until(lambda: book.in_sync)
        await until(lambda: {"op": "ping"} in seen)  # Bybit's heartbeat
        now[0] += 500 * MS  # silent for the limit: still fresh
        await asyncio.sleep(0.1)
        assert book.in_sync and book.counters.stale == 0
        now[0] += 1 * MS  # past it: the checker finds the book stale
        await until(lambda: book.counters.resyncs == 1 and book.in_sync)
        assert (book.counters.stale, stream.counters.resubscribes) == (1, 1)
        assert book.best_bid == (Decimal(50000), Decimal(1))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scripted(script, body))


def test_a_dropped_connection_is_reconnected_and_the_book_starts_afresh() -> None:
    async def script(ws: ServerConnection, n: int, requests: list[dict[str, Any]]) -> None:
        await ws.recv()
        await ws.send(json.dumps({"success": True, "ret_msg": "", "op": "subscribe"}))
        await ws.send(snapshot(7, 1_000, "49000" if n == 1 else "49500"))
        if n == 1:
            return  # the server drops the first connection
        async for _ in ws:
            pass

    async def body(url: str) -> None:
        stream = BookStream(url, {TOPIC: PERP}, stale_after_ms=None, backoff=Backoff(0.05, 0.1))
        task = asyncio.create_task(stream.run())
        await until(lambda: stream.counters.reconnects == 1 and stream.books[TOPIC].in_sync)
        book = stream.books[TOPIC]
        assert book.best_bid == (Decimal(49500), Decimal(1))
        assert (stream.counters.connects, stream.counters.drops) == (2, 1)
        assert book.counters.snapshots == 2  # the topic's counts span the connections
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with pytest.raises(BookSequenceError, match="no snapshot yet"):
            stream.order_book(TOPIC)  # after the connection: waits for a snapshot

    asyncio.run(scripted(script, body))


def test_a_resubscription_that_brings_no_snapshot_is_asked_again() -> None:
    now = [0]

    async def script(ws: ServerConnection, n: int, requests: list[dict[str, Any]]) -> None:
        subscribes = 0
        async for text in ws:
            request = json.loads(text)
            requests.append(request)
            if request["op"] == "subscribe":
                subscribes += 1
                if subscribes != 2:  # the first resubscription goes unanswered
                    await ws.send(snapshot(subscribes, 1_000, "50000"))

    async def body(url: str) -> None:
        stream = BookStream(
            url, {TOPIC: PERP}, stale_after_ms=500, stale_check_s=0.02, clock=lambda: now[0]
        )
        task = asyncio.create_task(stream.run())
        book = stream.books[TOPIC]
        await until(lambda: book.in_sync)
        now[0] += 501 * MS
        await until(lambda: stream.counters.resubscribes == 1)
        await asyncio.sleep(0.1)
        assert not book.in_sync  # waits: no snapshot, not yet asked again
        now[0] += 501 * MS
        await until(lambda: book.in_sync)
        assert stream.counters.resubscribes == 2 and book.counters.resyncs == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scripted(script, body))
