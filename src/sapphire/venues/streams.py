"""The live venue's WebSocket streams: the account's private stream, the L2 book and a
trades/tickers feed. Each runs as a task on the venue's event loop and keeps itself
connected: a dropped connection is retried after an exponential back-off (`Backoff`),
resubscribed, and counted.

- `PrivateStream`: ccxt.pro's `watch_orders`, `watch_my_trades`, `watch_positions` and
  `watch_balance` on one authenticated connection; each order and execution row (Bybit's
  raw row, ccxt's ``info``) goes to the venue's handlers; the latest position rows and
  wallet are kept. It is `healthy` once every topic is subscribed again and the venue's
  `on_connected` (the REST catch-up of what was missed) has succeeded; a drop makes it
  unhealthy until then, so the venue polls at its fallback rate meanwhile.
- `BookStream`: Bybit's ``orderbook.{depth}.{SYM}`` topics on a raw WebSocket (ccxt.pro's
  book does not check Bybit's ``u`` continuity), each feeding a `BybitOrderBook`. A
  message that finds a book out of sync (a gap, a stale or crossed book) makes the stream
  unsubscribe and subscribe the topic again, which brings a fresh snapshot
  (`resubscribes`); a lost connection starts every book afresh.
- `MarketFeed`: ccxt.pro's `watch_ticker` and `watch_trades` (no sequence to check): the
  latest ticker of each symbol and a callback for each public trade.

Every callback runs on the venue's loop thread.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from sapphire.domain import InstrumentId, OrderBook
from sapphire.venues.bybit import wallet_equity
from sapphire.venues.bybit_book import BookStatus, BybitOrderBook

__all__ = ["Backoff", "BookStream", "MarketFeed", "PrivateStream", "StreamCounters"]

Row = Mapping[str, Any]
_MS = 1_000_000
#: the private topics ccxt.pro subscribes for the venue (one subscribe message each)
PRIVATE_WATCHES = ("watch_orders", "watch_my_trades", "watch_positions", "watch_balance")


@dataclass(slots=True)
class StreamCounters:
    """What a stream has seen (read by the caller and the metrics)."""

    connects: int = 0  # connections that reached the subscribed state
    reconnects: int = 0  # of them, those after a drop
    drops: int = 0  # connections lost (or that failed before being subscribed)
    messages: int = 0  # rows or messages handled
    resubscribes: int = 0  # (book) topics subscribed again after a resync

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


class Backoff:
    """Exponential back-off with jitter between reconnection attempts: `base_s`, doubled
    after each failure up to `cap_s`, reset by `reset()` once connected."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 15.0) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError(
                f"back-off base_s={base_s!r}, cap_s={cap_s!r} are invalid: expected "
                "0 < base_s <= cap_s"
            )
        self.base_s = base_s
        self.cap_s = cap_s
        self._next = base_s

    def delay(self) -> float:
        """The wait before the next attempt (then doubled), jittered by up to +25%."""
        now = self._next
        self._next = min(self._next * 2, self.cap_s)
        return now * (1 + random.random() / 4)

    def reset(self) -> None:
        self._next = self.base_s


class PrivateStream:
    """The account's private stream through the ccxt.pro `client` (see the module
    docstring). `on_order` / `on_execution` get Bybit's raw rows; `on_connected` runs
    after every (re)subscription, before the stream counts as healthy."""

    def __init__(
        self,
        client: Any,
        *,
        on_order: Callable[[Row], Awaitable[None]],
        on_execution: Callable[[Row], Awaitable[None]],
        on_connected: Callable[[bool], Awaitable[None]],
        backoff: Backoff | None = None,
        subscribe_timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self.on_order = on_order
        self.on_execution = on_execution
        self.on_connected = on_connected
        self.backoff = backoff or Backoff()
        self.subscribe_timeout_s = subscribe_timeout_s
        self.counters = StreamCounters()
        self.healthy = False
        #: why the connection was last lost (None: never)
        self.last_error: str | None = None
        #: the latest position row by Bybit symbol, and the latest wallet (accounts)
        self.positions: dict[str, dict[str, Any]] = {}
        self.wallet: list[dict[str, Any]] | None = None
        self._acks = 0
        self._subscribed = asyncio.Event()
        # ccxt.pro answers no subscription future: watch its acknowledgements (the
        # client's message handler, observed, not changed; set before any connection)
        handle = client.handle_message

        def observe(ws_client: Any, message: Any) -> Any:
            if isinstance(message, dict) and message.get("op") == "subscribe":
                if message.get("success") is False:
                    self.last_error = f"subscribe refused: {message.get('ret_msg')}"
                else:
                    self._acks += 1
                    if self._acks >= len(PRIVATE_WATCHES):
                        self._subscribed.set()
            return handle(ws_client, message)

        client.handle_message = observe

    def equity(self, coin: str) -> Any:
        """The streamed wallet's equity of `coin` (Decimal; ValueError before a push)."""
        if self.wallet is None:
            raise ValueError("the wallet stream has pushed nothing yet")
        return wallet_equity({"result": {"list": self.wallet}}, coin)

    async def run(self) -> None:
        """Connect, subscribe and read, forever; reconnect after a drop."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any loss of the connection
                self.healthy = False
                self.counters.drops += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.backoff.delay())

    async def _session(self) -> None:
        self._acks = 0
        self._subscribed.clear()
        client = self.client
        tasks = [
            asyncio.create_task(self._read(client.watch_orders, self._orders)),
            asyncio.create_task(self._read(client.watch_my_trades, self._executions)),
            asyncio.create_task(self._read(client.watch_positions, self._positions)),
            asyncio.create_task(self._read(client.watch_balance, self._wallet)),
        ]
        try:
            ready = asyncio.create_task(self._subscribed.wait())
            done, _ = await asyncio.wait(
                [ready, *tasks], timeout=self.subscribe_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            if ready not in done:
                ready.cancel()
                for task in done:
                    task.result()  # a watcher failed before the subscription: raise it
                raise TimeoutError(f"not subscribed after {self.subscribe_timeout_s} s")
            reconnect = self.counters.connects > 0
            self.counters.connects += 1
            self.counters.reconnects += reconnect
            self.backoff.reset()
            await self._connected(reconnect, tasks)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise ConnectionError("a private watcher ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.healthy = False

    async def _connected(self, reconnect: bool, tasks: list[asyncio.Task[None]]) -> None:
        """The catch-up, retried (with the back-off) until it succeeds; the stream is
        healthy after it."""
        while True:
            for task in tasks:
                if task.done():
                    task.result()  # the connection went while catching up
            try:
                await self.on_connected(reconnect)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the REST side failed: try again
                self.last_error = f"catch-up failed: {type(exc).__name__}: {exc}"
                await asyncio.sleep(self.backoff.delay())
                continue
            self.backoff.reset()
            self.healthy = True
            return

    async def _read(self, watch: Callable[[], Awaitable[Any]], handle: Any) -> None:
        while True:
            update = await watch()
            for item in update if isinstance(update, list) else [update]:
                self.counters.messages += 1
                await handle(item)

    async def _orders(self, order: Mapping[str, Any]) -> None:
        await self.on_order(order["info"])

    async def _executions(self, trade: Mapping[str, Any]) -> None:
        await self.on_execution(trade["info"])

    async def _positions(self, position: Mapping[str, Any]) -> None:
        info = position.get("info") or {}
        if info.get("symbol"):
            self.positions[str(info["symbol"])] = dict(info)

    async def _wallet(self, balance: Mapping[str, Any]) -> None:
        info = balance.get("info")
        if isinstance(info, list):
            self.wallet = info


class BookStream:
    """Bybit ``orderbook.{depth}.{SYM}`` topics of one public stream `url`, each kept in a
    `BybitOrderBook` (see the module docstring). `stale_after_ms` (None: no check) is
    the books' staleness limit: between two messages' times (the book's own check), and
    every `stale_check_s` for the silence since the last message came (`clock`, ns,
    monotonic: the book's check is given the last message's time plus that silence, so
    our clock's offset from the exchange's does not matter). A book resubscribed that
    still waits for its snapshot after `stale_after_ms` is resubscribed again. Every
    `ping_interval_s` the stream sends Bybit's ``{"op": "ping"}`` heartbeat."""

    def __init__(
        self,
        url: str,
        books: Mapping[str, InstrumentId],
        *,
        stale_after_ms: int | None = 10_000,
        stale_check_s: float = 1.0,
        clock: Callable[[], int] = time.monotonic_ns,
        backoff: Backoff | None = None,
        ping_interval_s: float = 20.0,
    ) -> None:
        if not books:
            raise ValueError("books is empty: name the orderbook topics to stream")
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url={url!r} is invalid: expected a ws:// or wss:// URL")
        self.url = url
        self.stale_after_ms = stale_after_ms
        self.stale_check_s = stale_check_s
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.ping_interval_s = ping_interval_s
        self.counters = StreamCounters()
        self.connected = False
        self.last_error: str | None = None
        self._ids = dict(books)
        self.books = {topic: self._fresh(topic, None) for topic in books}
        self._socket: Any = None
        self._received: dict[str, int] = {}  # by topic: `clock` at its last message
        self._asked: dict[str, int] = {}  # by topic: `clock` at its last resubscription

    def _fresh(self, topic: str, old: BybitOrderBook | None) -> BybitOrderBook:
        book = BybitOrderBook(self._ids[topic], topic, stale_after_ms=self.stale_after_ms)
        if old is not None:
            book.counters = old.counters  # one topic's counts across connections
        return book

    def order_book(self, topic: str, depth: int | None = None) -> OrderBook:
        """The topic's book as the domain `OrderBook` (BookSequenceError while it waits
        for a snapshot); call it on the loop thread."""
        return self.books[topic].to_order_book(depth)

    async def run(self) -> None:
        """Connect, subscribe and apply, forever; reconnect after a drop."""
        checker = asyncio.create_task(self._check_stale())
        try:
            while True:
                try:
                    await self._session()
                    self.last_error = "the server closed the connection"
                except (OSError, WebSocketException, ValueError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self.connected = False
                    self._socket = None
                    self._received.clear()
                    self.books = {t: self._fresh(t, b) for t, b in self.books.items()}
                self.counters.drops += 1
                await asyncio.sleep(self.backoff.delay())
        finally:
            checker.cancel()

    async def _session(self) -> None:
        async with connect(self.url, ping_interval=self.ping_interval_s) as ws:
            self._socket = ws
            await ws.send(json.dumps({"op": "subscribe", "args": list(self.books)}))
            self._asked = dict.fromkeys(self.books, self.clock())
            pinger = asyncio.create_task(self._ping(ws))
            try:
                await self._read(ws)
            finally:
                pinger.cancel()

    async def _ping(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            await ws.send(json.dumps({"op": "ping"}))

    async def _read(self, ws: Any) -> None:
        async for text in ws:
            message = json.loads(text)
            if not isinstance(message, dict):
                continue
            if "topic" not in message:
                self._answer(message)
                continue
            book = self.books.get(str(message["topic"]))
            if book is None:
                continue
            self.counters.messages += 1
            self._received[book.topic] = self.clock()
            if book.apply(message) is BookStatus.RESYNC:
                await self._resubscribe(book.topic)

    def _answer(self, message: Mapping[str, Any]) -> None:
        if message.get("op") != "subscribe":
            return
        if message.get("success") is False:
            raise ValueError(f"{self.url}: subscribe refused: {message.get('ret_msg')}")
        if not self.connected:
            self.connected = True
            self.counters.connects += 1
            self.counters.reconnects += self.counters.connects > 1
            self.backoff.reset()

    async def _resubscribe(self, topic: str) -> None:
        """Unsubscribe and subscribe `topic` again: Bybit answers with a snapshot."""
        ws = self._socket
        if ws is None:
            return
        self.counters.resubscribes += 1
        self._asked[topic] = self.clock()
        await ws.send(json.dumps({"op": "unsubscribe", "args": [topic]}))
        await ws.send(json.dumps({"op": "subscribe", "args": [topic]}))

    async def _check_stale(self) -> None:
        while True:
            await asyncio.sleep(self.stale_check_s)
            if self.stale_after_ms is None:
                continue
            now, limit = self.clock(), self.stale_after_ms * _MS
            for topic, book in list(self.books.items()):
                if not book.in_sync:
                    asked = self._asked.get(topic)
                    if asked is not None and now - asked > limit:  # no snapshot came
                        await self._resubscribe(topic)
                    continue
                received = self._received.get(topic)
                if received is not None and book.check_stale(book.ts_ns + now - received):
                    await self._resubscribe(topic)


class MarketFeed:
    """Tickers and public trades of `symbols` (ccxt symbols) through the ccxt.pro
    `client`: `tickers` holds the latest of each, `on_trade` gets each trade (ccxt's)."""

    def __init__(
        self,
        client: Any,
        symbols: Sequence[str],
        *,
        on_trade: Callable[[Mapping[str, Any]], None] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.symbols = list(symbols)
        self.on_trade = on_trade
        self.backoff = backoff or Backoff()
        self.counters = StreamCounters()
        self.tickers: dict[str, dict[str, Any]] = {}
        self.last_error: str | None = None

    async def run(self) -> None:
        """Watch every symbol's ticker and trades, forever."""
        tasks = [self._watch(self._ticker, s) for s in self.symbols]
        tasks += [self._watch(self._trades, s) for s in self.symbols]
        await asyncio.gather(*tasks)

    async def _watch(self, step: Callable[[str], Awaitable[None]], symbol: str) -> None:
        while True:
            try:
                await step(symbol)
                self.backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ccxt.pro reconnects on the next call
                self.counters.drops += 1
                self.last_error = f"{symbol}: {type(exc).__name__}: {exc}"
                await asyncio.sleep(self.backoff.delay())

    async def _ticker(self, symbol: str) -> None:
        self.tickers[symbol] = await self.client.watch_ticker(symbol)
        self.counters.messages += 1

    async def _trades(self, symbol: str) -> None:
        for trade in await self.client.watch_trades(symbol):
            self.counters.messages += 1
            if self.on_trade is not None:
                self.on_trade(trade)
