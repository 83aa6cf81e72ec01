"""`BybitVenue`'s streams against the local Bybit exchange over real sockets (unmodified
ccxt.pro for the private stream, a raw WebSocket for the book): fills by the stream
before any poll, a connection dropped by the server while an order fills (reconnect,
resubscribe, REST catch-up, the fill applied once), the streamed book against the REST
book, and a delta lost on the way (a test-side proxy drops it) forcing a counted resync.

The server drops a connection the way it drops a slow client: its send queue gets the
close marker (`Connection.queue`), and it closes the socket.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from local_exchange import LINEAR, Exchange, frame, no_internet
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    Order,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    StrategyId,
)
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.live import BybitVenue
from sapphire.venues.resilience import RetryPolicy
from sapphire.venues.streams import Backoff, BookStream

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

PERP = InstrumentId(LINEAR, "BYBIT")
TOPIC = "orderbook.50.BTCUSDT"


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = Exchange(frame, faults=True)
    yield ex
    ex.server.stop()


def hub(ex: Exchange) -> Any:
    app = ex.server.server.config.app
    return getattr(app, "app", app).state.streams


def drop(ex: Exchange, category: str) -> int:
    """Close the server's connections of `category` (as it drops a slow client)."""
    conns = [c for c in list(hub(ex).connections) if c.category == category]
    for conn in conns:
        conn.loop.call_soon_threadsafe(conn.queue.put_nowait, None)
    return len(conns)


def until(
    done: Callable[[], bool], timeout: float = 10.0, step: Callable[[], Any] = lambda: 0
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        step()
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


class Venue:
    """A started venue over `ex` whose REST poll (60 s unless told) never comes within a
    test, every event applied to its order."""

    def __init__(self, ex: Exchange, poll_interval_s: float = 60, **options: Any) -> None:
        conn = BybitConnection(BybitEnvironment.LOCAL, url=ex.url, timeout_ms=3000)
        self.venue = BybitVenue(
            conn, [LINEAR], environ=ex.environ(), poll_interval_s=poll_interval_s,
            reconcile_s=60, retry=RetryPolicy(attempts=3, base_s=0.05, cap_s=0.2), **options,
        )  # fmt: skip
        self.events: list[OrderEvent] = []
        self.orders: dict[str, Order] = {}
        self.venue.on_event = self._apply
        self.venue.start()

    def _apply(self, event: OrderEvent) -> None:
        self.events.append(event)
        self.orders[str(event.client_order_id)].apply(event)

    def rest(self, cid: str) -> Order:
        """A limit buy far below the market: it stays open."""
        order = Order.limit(
            ClientOrderId(cid), StrategyId("s"), PERP, OrderSide.BUY, Decimal("0.01"),
            Decimal(1000), ts_init=0,
        )  # fmt: skip
        self.orders[cid] = order
        order.apply(OrderSubmitted(ts_ns=1, client_order_id=order.client_order_id))
        self.venue.submit_order(order)
        return order

    def buy(self, cid: str, qty: str = "0.01") -> Order:
        order = Order.market(
            ClientOrderId(cid), StrategyId("s"), PERP, OrderSide.BUY, Decimal(qty), ts_init=0
        )
        self.orders[cid] = order
        order.apply(OrderSubmitted(ts_ns=1, client_order_id=order.client_order_id))
        self.venue.submit_order(order)
        return order

    def wait(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        until(done, timeout, self.venue.drain)
        assert not self.venue.errors, self.venue.errors

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.events if isinstance(e, OrderFilled)]


@pytest.fixture
def live(exchange: Exchange) -> Iterator[Venue]:
    v = Venue(exchange, stream_backoff=Backoff(1.0, 2.0))
    assert v.venue.wait_streaming(10)
    yield v
    v.venue.close()


def test_a_fill_comes_by_the_stream_before_any_poll(exchange: Exchange, live: Venue) -> None:
    faults = exchange.faults
    assert faults is not None
    order = live.buy("s-1")
    live.wait(lambda: order.status is OrderStatus.ACCEPTED)
    fill_px = Decimal(str(exchange.next_bar()["open"]))
    exchange.state.advance()
    started = time.monotonic()
    live.wait(lambda: order.status is OrderStatus.FILLED, timeout=5)
    assert time.monotonic() - started < 5  # the poll comes every 60 s
    (fill,) = live.fills()
    assert (fill.last_qty, fill.last_px) == (Decimal("0.01"), fill_px)
    # no REST read of the order or its executions: the stream alone brought the fill
    assert faults.count("/v5/execution/list") == faults.count("/v5/order/realtime") == 0
    assert live.venue.counters()["stream_fills"] == 1
    venue = live.venue
    asyncio.run_coroutine_threadsafe(venue.poll(), venue._loop).result(5)  # a full poll
    time.sleep(0.2)
    venue.drain()
    assert live.fills() == [fill]  # seen by the stream and REST: applied once
    assert venue.counters()["poll_fills"] == 0


def test_rest_polls_rarely_while_the_stream_is_healthy_and_often_while_it_is_down(
    exchange: Exchange,
) -> None:
    faults = exchange.faults
    assert faults is not None
    live = Venue(exchange, poll_interval_s=0.05, stream_backoff=Backoff(30, 30))
    try:
        venue = live.venue
        assert venue.wait_streaming(10)
        resting = live.rest("p-1")
        live.wait(lambda: resting.status is OrderStatus.ACCEPTED)
        time.sleep(0.5)  # ten poll intervals: only the reconciliation (60 s) reads orders
        assert faults.count("/v5/order/realtime") == 0
        drop(exchange, "private")  # and it stays down: the back-off is 30 s
        until(lambda: not venue.streaming)
        order = live.buy("p-2")
        live.wait(lambda: order.status is OrderStatus.ACCEPTED)
        exchange.state.advance()
        live.wait(lambda: order.status is OrderStatus.FILLED, timeout=5)
        counts = venue.counters()
        assert (counts["poll_fills"], counts["reconnects"]) == (1, 0)
        assert faults.count("/v5/order/realtime") > 2  # every working order, each 50 ms
    finally:
        live.venue.close()


def test_a_fill_the_stream_applied_is_skipped_by_the_rest_catch_up(
    exchange: Exchange, live: Venue
) -> None:
    venue = live.venue
    resting = live.rest("r-1")  # stays open: the catch-up after a reconnect reads REST
    order = live.buy("c-1")
    live.wait(lambda: order.status is OrderStatus.ACCEPTED)
    exchange.state.advance()
    live.wait(lambda: order.status is OrderStatus.FILLED, timeout=5)
    assert venue.counters()["stream_fills"] == 1
    drop(exchange, "private")
    until(lambda: venue.counters()["reconnects"] == 1 and venue.streaming)
    venue.drain()
    # the catch-up read the same execution by REST (since the newest, less recvWindow)
    assert venue.counters()["catch_up_fills"] == 0
    assert len(live.fills()) == 1 and resting.status is OrderStatus.ACCEPTED


def test_a_fill_missed_while_disconnected_is_caught_up_once(
    exchange: Exchange, live: Venue
) -> None:
    venue = live.venue
    order = live.buy("d-1")
    live.wait(lambda: order.status is OrderStatus.ACCEPTED)
    assert drop(exchange, "private") == 1
    until(lambda: not venue.streaming and hub(exchange).subscribed("execution") == 0)
    exchange.state.advance()  # the order fills while the venue is disconnected
    assert hub(exchange).subscribed("execution") == 0  # still (the back-off is >= 1 s)
    live.wait(lambda: order.status is OrderStatus.FILLED)
    assert venue.streaming
    counts = venue.counters()
    assert (counts["reconnects"], counts["drops"]) == (1, 1)
    assert (counts["catch_up_fills"], counts["stream_fills"], counts["poll_fills"]) == (1, 0, 0)
    assert len(live.fills()) == 1
    # the new connection is subscribed: the next fill comes by the stream again
    second = live.buy("d-2")
    live.wait(lambda: second.status is OrderStatus.ACCEPTED)
    exchange.state.advance()
    live.wait(lambda: second.status is OrderStatus.FILLED, timeout=5)
    assert venue.counters()["stream_fills"] == 1
    asyncio.run_coroutine_threadsafe(venue.poll(), venue._loop).result(5)
    venue.drain()
    assert len(live.fills()) == 2


def rest_book(ex: Exchange) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    """The exchange's REST book (depth 50), exact."""
    import urllib.request

    url = f"{ex.url}/v5/market/orderbook?category=linear&symbol=BTCUSDT&limit=50"
    with urllib.request.urlopen(url, timeout=5) as answer:
        result = json.load(answer)["result"]
    return tuple([(Decimal(p), Decimal(s)) for p, s in result[k]] for k in ("b", "a"))


def test_the_streamed_book_equals_the_rest_book_after_bars(exchange: Exchange, live: Venue) -> None:
    venue = live.venue
    stream = venue.watch_book(LINEAR, 50, stale_after_ms=None)
    book = stream.books[TOPIC]
    until(lambda: book.in_sync)
    for _ in range(5):
        exchange.state.advance()
    until(lambda: book.update_id == exchange.state.replay.position)
    shown = venue.order_book(LINEAR)
    bids, asks = rest_book(exchange)
    assert (book.bids(), book.asks()) == (bids, asks)
    assert shown.bids[0] == (float(bids[0][0]), float(bids[0][1]))
    counts = venue.counters()
    assert counts[f"book:{TOPIC}:deltas"] == 5 and counts[f"book:{TOPIC}:gaps"] == 0
    # the server drops the connection: reconnected, a fresh snapshot, the deltas after it
    assert drop(exchange, "linear") == 1
    until(lambda: stream.counters.reconnects == 1 and stream.books[TOPIC].in_sync)
    for _ in range(2):
        exchange.state.advance()
    book = stream.books[TOPIC]
    until(lambda: book.update_id == exchange.state.replay.position)
    assert (book.bids(), book.asks()) == rest_book(exchange)
    assert (book.counters.snapshots, book.counters.deltas) == (2, 7)


async def _proxy(upstream: str, drop_delta: int, dropped: list[str]) -> Any:
    """A WebSocket proxy to `upstream` that loses the `drop_delta`-th book delta."""

    async def handle(client: ServerConnection) -> None:
        deltas = 0
        async with connect(upstream) as server:

            async def up() -> None:
                async for text in client:
                    await server.send(text)

            async def down() -> None:
                nonlocal deltas
                async for text in server:
                    message = json.loads(text)
                    if message.get("type") == "delta" and message.get("topic") == TOPIC:
                        deltas += 1
                        if deltas == drop_delta:
                            dropped.append(text)
                            continue
                    await client.send(text)

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()

    return await serve(handle, "127.0.0.1", 0)


def test_a_lost_delta_forces_a_counted_resync_that_ends_with_the_right_book(
    exchange: Exchange,
) -> None:
    state = exchange.state
    upstream = exchange.url.replace("http://", "ws://") + "/v5/public/linear"

    async def body() -> None:
        dropped: list[str] = []
        proxy = await _proxy(upstream, 2, dropped)
        port = proxy.sockets[0].getsockname()[1]
        stream = BookStream(f"ws://127.0.0.1:{port}", {TOPIC: PERP}, stale_after_ms=None)
        task = asyncio.create_task(stream.run())
        try:
            book = stream.books[TOPIC]

            async def wait(done: Callable[[], bool]) -> None:
                for _ in range(1000):
                    if done():
                        return
                    await asyncio.sleep(0.01)
                raise AssertionError("timed out")

            await wait(lambda: book.in_sync)
            for _ in range(4):
                state.advance()
            await wait(lambda: book.in_sync and book.update_id == state.replay.position)
            assert len(dropped) == 1
            assert book.counters.gaps == 1 and book.counters.resyncs == 1
            assert stream.counters.resubscribes == 1
            assert (book.bids(), book.asks()) == await asyncio.to_thread(rest_book, exchange)
        finally:
            task.cancel()
            proxy.close()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(body(), 30))


def test_tickers_and_trades_stream(exchange: Exchange, live: Venue) -> None:
    trades: list[Any] = []
    feed = live.venue.watch_market(on_trade=trades.append)
    until(lambda: hub(exchange).subscribed("publicTrade.BTCUSDT") == 1)
    until(lambda: LINEAR in feed.tickers)
    replay = exchange.state.replay
    exchange.state.advance()
    until(lambda: trades and feed.tickers[LINEAR]["last"] == replay.close[replay.position - 1])
    assert trades[-1]["price"] == replay.close[replay.position - 1]
