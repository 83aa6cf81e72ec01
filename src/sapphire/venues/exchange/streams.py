"""What the local exchange's WebSocket pushes, and to whom: `StreamHub` and `Connection`.

Public topics (on ``/v5/public/linear`` and ``/v5/public/spot``), all moved by the replay
(one push per replayed bar, `ExchangeState.advance`):

- ``orderbook.{depth}.{SYM}`` (depth 1, 50, 200, 500 or 1000 on linear; 1, 50, 200 or
  1000 on spot): the synthetic book of ``GET /v5/market/orderbook`` (`views.book`, the
  same code), a snapshot on subscribe, then one delta per bar holding the levels that
  changed (size "0" deletes one). ``u`` is the number of bars replayed, so it rises by
  exactly 1 from the snapshot on; ``seq`` is the same number.
- ``publicTrade.{SYM}``: the bar's one synthetic trade (`BarReplay.trades`).
- ``tickers.{SYM}``: `views.ticker`; on linear a snapshot on subscribe, then deltas with
  the fields that changed; on spot a snapshot on subscribe and on every bar.
- ``kline.{interval}.{SYM}``: the bar of `interval` (Bybit's: 1 ... 720, D, W) that holds
  the replayed minute, ``confirm`` false while it is still forming and true with its
  last minute (every 1-minute bar is confirmed at once: the replay has nothing inside a
  bar). Nothing is pushed on subscribe.

Private topics (on ``/v5/private``, after ``auth``): ``order``, ``execution``,
``position``, ``wallet`` (and ``order.linear``, ``order.spot``, ``execution.linear``,
``execution.spot``, ``position.linear`` for one category),
pushed from `ExchangeState.subscribe` events in the REST shapes, as Bybit's stream
carries them (a position's ``avgPrice`` is its ``entryPrice``).

Threads: the state publishes under its lock on whichever thread changed it (the replay
clock's, or the server's while answering a request). The hub builds each message there,
once, as JSON text, and hands it to each subscribed connection's event loop with
``call_soon_threadsafe``; subscribing happens under the same lock, so a subscriber gets
its snapshot before any later update, in order. Each connection queues at most `limit`
messages: a client that falls further behind is disconnected (close code 1008), as a
real exchange drops a slow consumer, rather than letting memory grow or skipping updates
(which would break the book's ``u`` sequence).

With a `sapphire.venues.exchange.faults.FaultInjector` (`faults`), book deltas may be
dropped or reordered per connection, and `close_all` closes every connection (a
restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from sapphire.encoding import to_json
from sapphire.venues.exchange import views
from sapphire.venues.exchange.errors import BAD_PARAM, BybitError
from sapphire.venues.exchange.market import INTERVALS
from sapphire.venues.exchange.state import LINEAR, SPOT, ExchangeState, Market

if TYPE_CHECKING:
    from sapphire.venues.exchange.faults import FaultInjector

__all__ = ["DEPTHS", "PRIVATE_TOPICS", "Connection", "StreamHub"]

#: the order book depths each category streams
DEPTHS = {LINEAR: (1, 50, 200, 500, 1000), SPOT: (1, 50, 200, 1000)}
#: the private topics (each also per category: ``order.linear``, ``order.spot``...)
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
_PRIVATE_ALLOWED = frozenset(
    (*PRIVATE_TOPICS, "order.linear", "order.spot", "execution.linear", "execution.spot",
     "position.linear")
)  # fmt: skip
#: messages a connection may have waiting before it is dropped as too slow
DEFAULT_QUEUE = 10_000
SLOW_CLOSE_CODE = 1008


class Connection:
    """One WebSocket client: its topics and the queue of JSON text it has yet to be sent.

    `send` may be called from any thread; the text is queued on `loop`. When more than
    `limit` messages wait, the queue is emptied and `None` queued: the sender then closes
    the socket (`too_slow` is set). `close` asks the sender to close it with a code.
    `number` counts the hub's connections from 1 (it seeds the connection's faults).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, category: str, limit: int, number: int = 0
    ) -> None:
        if limit < 1:
            raise ValueError(f"queue limit={limit!r} is invalid: expected >= 1")
        self.loop = loop
        self.number = number
        self.closing: tuple[int, str] | None = None  # (code, reason) once `close`d
        self.category = category  # "linear" | "spot" | "private" | "trade"
        self.id = str(uuid.uuid4())
        self.topics: set[str] = set()
        self.key: str | None = None  # the API key once authenticated
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(limit)
        self.too_slow = False

    def send(self, text: str) -> None:
        """Queue `text` for the client (from any thread)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: the client is gone
            self.loop.call_soon_threadsafe(self._put, text)

    def close(self, code: int, reason: str) -> None:
        """Close the connection with `code` and `reason` (from any thread)."""
        self.closing = (code, reason)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._put, None)

    def _put(self, text: str | None) -> None:
        if self.too_slow:
            return
        if text is None:  # `close`: what is still queued is never sent
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


@dataclass
class _Feed:
    """The last pushed state of a topic whose updates are deltas."""

    view: dict[str, object]
    count: int = 1
    subscribers: set[Connection] = field(default_factory=set)


class StreamHub:
    """The connections of one exchange and what each is sent (see the module docstring)."""

    def __init__(self, state: ExchangeState, queue_limit: int = DEFAULT_QUEUE) -> None:
        if queue_limit < 1:
            raise ValueError(f"queue_limit={queue_limit!r} is invalid: expected >= 1")
        self.state = state
        self.queue_limit = queue_limit
        self.connections: set[Connection] = set()
        self._feeds: dict[tuple[str, str], _Feed] = {}  # (category, topic) -> last pushed
        self._guard = threading.Lock()  # the connection set, read on publishing threads
        self._opened = 0
        self.faults: FaultInjector | None = None
        state.subscribe(self.on_event)

    # ---------------------------------------------------------------- connections
    def connect(self, loop: asyncio.AbstractEventLoop, category: str) -> Connection:
        with self._guard:
            self._opened += 1
            conn = Connection(loop, category, self.queue_limit, self._opened)
            self.connections.add(conn)
        return conn

    def disconnect(self, conn: Connection) -> None:
        with self.state.lock:
            self.unsubscribe(conn, list(conn.topics))
            with self._guard:
                self.connections.discard(conn)
            if self.faults is not None:
                self.faults.forget(conn)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection with `code` and `reason`."""
        with self._guard:
            connections = list(self.connections)
        for conn in connections:
            conn.close(code, reason)

    def subscribed(self, topic: str) -> int:
        """How many connections hold `topic` (tests wait on it)."""
        with self._guard:
            return sum(topic in c.topics for c in self.connections)

    def subscribe(self, conn: Connection, topics: Iterable[str], ack: str) -> None:
        """Check `topics` (BybitError naming a bad one: nothing is subscribed then), then
        send `ack` and each new topic's snapshot, under the state's lock so that no update
        can overtake them."""
        topics = list(topics)
        with self.state.lock:
            for topic in topics:
                self._check(conn, topic)
            conn.send(ack)
            for topic in topics:
                if topic in conn.topics:
                    continue
                conn.topics.add(topic)
                snapshot = self._snapshot(conn, topic)
                if snapshot is not None:
                    conn.send(snapshot)

    def unsubscribe(self, conn: Connection, topics: Iterable[str]) -> None:
        with self.state.lock:
            for topic in topics:
                conn.topics.discard(topic)
                key = (conn.category, topic)
                feed = self._feeds.get(key)
                if feed is not None:
                    feed.subscribers.discard(conn)
                    if not feed.subscribers:
                        del self._feeds[key]

    def _check(self, conn: Connection, topic: str) -> None:
        if conn.category not in DEPTHS:
            if topic not in _PRIVATE_ALLOWED:
                raise BybitError(BAD_PARAM, f"error:invalid topic {topic!r}: expected one of "
                                 f"{', '.join(sorted(_PRIVATE_ALLOWED))}")  # fmt: skip
            return
        parts = topic.split(".")
        name = parts[0]
        if name in ("orderbook", "kline") and len(parts) == 3:
            arg, symbol = parts[1], parts[2]
            if name == "orderbook" and arg not in [str(d) for d in DEPTHS[conn.category]]:
                raise BybitError(BAD_PARAM, f"error:invalid topic {topic!r}: depth {arg!r} is "
                                 f"not one of {DEPTHS[conn.category]}")  # fmt: skip
            if name == "kline" and arg not in INTERVALS:
                raise BybitError(BAD_PARAM, f"error:invalid topic {topic!r}: interval {arg!r} "
                                 f"is not one of {', '.join(INTERVALS)}")  # fmt: skip
        elif name in ("publicTrade", "tickers") and len(parts) == 2:
            symbol = parts[1]
        else:
            raise BybitError(BAD_PARAM, f"error:invalid topic {topic!r}: expected orderbook."
                             "{depth}.{SYM}, publicTrade.{SYM}, tickers.{SYM} or kline.{interval}."
                             "{SYM}")  # fmt: skip
        if (conn.category, symbol) not in self.state.markets:
            raise BybitError(BAD_PARAM, f"error:invalid topic {topic!r}: symbol {symbol!r} is "
                             f"not listed in category {conn.category!r}")  # fmt: skip

    # ---------------------------------------------------------------- public data
    def _market(self, conn_category: str, topic: str) -> Market:
        return self.state.markets[(conn_category, topic.rsplit(".", 1)[1])]

    def _snapshot(self, conn: Connection, topic: str) -> str | None:
        name = topic.split(".")[0]
        if name == "orderbook" or (name == "tickers" and conn.category == LINEAR):
            key = (conn.category, topic)
            feed = self._feeds.get(key)
            if feed is None:
                feed = self._feeds[key] = _Feed(self._view(conn.category, topic))
            feed.subscribers.add(conn)
            return self._message(topic, "snapshot", feed)
        if name == "tickers":  # spot: always snapshots
            view = views.ticker(self.state, self._market(conn.category, topic))
            return to_json({"topic": topic, "type": "snapshot", "ts": self.state.clock(),
                            "cs": self.state.replay.position, "data": view})  # fmt: skip
        return None

    def _view(self, category: str, topic: str) -> dict[str, object]:
        market = self._market(category, topic)
        if topic.startswith("orderbook."):
            return views.book(self.state, market, int(topic.split(".")[1]))
        return views.ticker(self.state, market)

    def _message(
        self, topic: str, kind: str, feed: _Feed, data: dict[str, object] | None = None
    ) -> str:
        view = feed.view
        if topic.startswith("orderbook."):
            body = data or {k: view[k] for k in ("s", "b", "a")}
            book = {"s": view["s"], "b": body["b"], "a": body["a"], "u": view["u"],
                    "seq": view["seq"]}  # fmt: skip
            return to_json({"topic": topic, "type": kind, "ts": view["ts"], "data": book,
                            "cts": view["cts"]})  # fmt: skip
        return to_json({"topic": topic, "type": kind, "cs": feed.count,
                        "ts": self.state.clock(), "data": data or view})  # fmt: skip

    def _bar(self) -> None:
        """Push every subscribed public topic's update for the bar just replayed."""
        with self._guard:
            public = [c for c in self.connections if c.category in DEPTHS]
        built: dict[tuple[str, str], str | None] = {}
        for conn in public:
            for topic in sorted(conn.topics):
                key = (conn.category, topic)
                if key not in built:
                    built[key] = self._update(conn.category, topic)
                text = built[key]
                if text is None:
                    continue
                if self.faults is not None and topic.startswith("orderbook."):  # a delta
                    for message in self.faults.book_delta(conn, topic, text):
                        conn.send(message)
                else:
                    conn.send(text)

    def _update(self, category: str, topic: str) -> str | None:
        name = topic.split(".")[0]
        feed = self._feeds.get((category, topic))
        if feed is not None:
            before, after = feed.view, self._view(category, topic)
            feed.view = after
            feed.count += 1
            if name == "orderbook":
                delta: dict[str, object] = {
                    side: _level_changes(before[side], after[side]) for side in ("b", "a")
                }
                return self._message(topic, "delta", feed, delta)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            return self._message(topic, "delta", feed, {"symbol": after["symbol"], **changed})
        market = self._market(category, topic)
        now = self.state.clock()
        if name == "tickers":
            view = views.ticker(self.state, market)
            return to_json({"topic": topic, "type": "snapshot", "ts": now,
                            "cs": self.state.replay.position, "data": view})  # fmt: skip
        if name == "publicTrade":
            (trade,) = self.state.replay.trades(market.symbol, 1)
            row = {"T": int(str(trade["time"])), "s": market.symbol, "S": trade["side"],
                   "v": trade["size"], "p": trade["price"], "i": trade["execId"],
                   "BT": False}  # fmt: skip
            return to_json({"topic": topic, "type": "snapshot", "ts": now, "data": [row]})
        return self._kline(topic, now)

    def _kline(self, topic: str, now: int) -> str | None:
        interval = topic.split(".")[1]
        replay = self.state.replay
        rows = replay.klines(interval, None, None, 1)
        if not rows:
            return None
        start, o, h, low, c, volume, turnover = rows[0]
        span = int(pd.Timedelta(INTERVALS[interval]) // pd.Timedelta(milliseconds=1))
        end = int(start) + span
        bar = {"start": int(start), "end": end - 1, "interval": interval, "open": o, "close": c,
               "high": h, "low": low, "volume": volume, "turnover": turnover,
               "confirm": end <= replay.now_ms, "timestamp": now}  # fmt: skip
        return to_json({"topic": topic, "type": "snapshot", "ts": now, "data": [bar]})

    # ---------------------------------------------------------------- events
    def on_event(self, topic: str, data: dict[str, object]) -> None:
        """`ExchangeState.subscribe`'s listener: the bar moves the public topics, the
        rest go to the authenticated private connections holding the topic."""
        with self.state.lock:
            if topic == "bar":
                self._bar()
                return
            if topic not in PRIVATE_TOPICS:
                return
            with self._guard:
                private = [c for c in self.connections if c.category == "private" and c.key]
            wanted = (topic, f"{topic}.{data.get('category', '')}")
            readers = [c for c in private if not c.topics.isdisjoint(wanted)]
            if not readers:
                return
            if topic == "position":
                data = {("entryPrice" if k == "avgPrice" else k): v for k, v in data.items()}
            text = to_json({"id": str(uuid.uuid4()), "topic": topic,
                            "creationTime": self.state.clock(), "data": [data]})  # fmt: skip
            for conn in readers:
                conn.send(text)


def _level_changes(before: object, after: object) -> list[list[str]]:
    """The levels of `after` that are new or resized, and those of `before` it lacks
    (size "0")."""
    old = {price: size for price, size in before}  # type: ignore[attr-defined]
    new = {price: size for price, size in after}  # type: ignore[attr-defined]
    changes = [[p, s] for p, s in new.items() if old.get(p) != s]
    changes += [[p, "0"] for p in old if p not in new]
    return changes
