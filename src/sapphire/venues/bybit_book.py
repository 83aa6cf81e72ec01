"""A Bybit v5 L2 order book kept from `orderbook.{depth}.{symbol}` WebSocket messages.

`BybitOrderBook` is the live stream's book for one topic: it takes the parsed messages
(``{topic, type: snapshot|delta, ts, data: {s, b, a, u, seq}, cts}``, prices and sizes as
strings), keeps the levels exactly (`Decimal`, in the simulated venue's `PriceLevels`),
and gives top-N views and the domain `OrderBook` the engine consumes.

Bybit's rules (v5 docs, "Orderbook"): a snapshot resets the book (also the "u" = 1
snapshot sent after a service restart, and the one Bybit re-sends when it had a
problem); in a delta, size "0" deletes a level; `u` is the topic's update id and goes up
by exactly 1 from one message to the next (`seq` is a cross sequence for comparing
different depths and is only recorded). Level-1 books re-send an unchanged snapshot
every 3 s with the same `u`: a snapshot is always applied.

Checks, each of which puts the book into "needs resync": it refuses deltas until the
next snapshot and `to_order_book` raises, so the caller resubscribes:

- a gap: a delta whose `u` is not the last `u` + 1 (counted in `gaps`);
- a delta before any snapshot (`no_snapshot`);
- a stale book: a delta whose `ts` is more than `stale_after_ms` after the previous
  message's, or `check_stale(now_ns)` (or the passed-in clock) finding no message for
  that long (`stale`);
- a crossed book after a message (best bid >= best ask) (`crossed`).

A delta whose `u` is not above the last one is already in the book: it is skipped and
counted (`skipped`), the book is unchanged. Deltas that arrive while the book waits for
a snapshot are counted in `refused`; `resyncs` counts the snapshots that brought a book
that needed a resync back in sync.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from sapphire.domain import InstrumentId, OrderBook
from sapphire.sim.book import BookSequenceError, PriceLevels

__all__ = ["BookCounters", "BookStatus", "BybitOrderBook"]

Level = tuple[Decimal, Decimal]

_MS = 1_000_000
_ZERO = Decimal(0)


class BookStatus(Enum):
    """What one message did to the book."""

    APPLIED = "applied"  # in sequence, the book changed
    SKIPPED = "skipped"  # a delta already in the book (u not above the last u)
    RESYNC = "resync"  # this message found the book out of sync: resubscribe now
    WAITING = "waiting"  # a delta refused: the book still waits for a snapshot


@dataclass(slots=True)
class BookCounters:
    """Counts of what the book has seen (read by the caller and the metrics)."""

    messages: int = 0
    snapshots: int = 0
    deltas: int = 0
    restarts: int = 0
    skipped: int = 0
    refused: int = 0
    gaps: int = 0
    no_snapshot: int = 0
    stale: int = 0
    crossed: int = 0
    resyncs: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


class BybitOrderBook:
    """The L2 book of one Bybit `orderbook.{depth}.{symbol}` topic, with sequence checks."""

    def __init__(
        self,
        instrument_id: InstrumentId,
        topic: str,
        *,
        stale_after_ms: int | None = 10_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if not isinstance(instrument_id, InstrumentId):
            raise ValueError(f"BybitOrderBook needs an InstrumentId, got {instrument_id!r}")
        parts = topic.split(".") if isinstance(topic, str) else []
        if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit() or not parts[2]:
            raise ValueError(
                f"Bybit book topic must be 'orderbook.{{depth}}.{{symbol}}', got {topic!r}"
            )
        if stale_after_ms is not None and (
            isinstance(stale_after_ms, bool)
            or not isinstance(stale_after_ms, int)
            or stale_after_ms <= 0
        ):
            raise ValueError(
                f"stale_after_ms must be a positive int or None, got {stale_after_ms!r}"
            )
        self.instrument_id = instrument_id
        self.topic = topic
        self.symbol = parts[2]
        self.stale_after_ms = stale_after_ms
        self.clock = clock
        self.counters = BookCounters()
        self.update_id: int | None = None
        self.seq: int | None = None
        self.ts_ms: int | None = None
        #: why the book is out of sync (names the topic and the ids), None while in sync
        self.resync_reason: str | None = f"{topic}: no snapshot yet"
        self._bids: PriceLevels[Decimal] = PriceLevels()
        self._asks: PriceLevels[Decimal] = PriceLevels()
        self._told = False  # the caller was told (RESYNC) that the book is out of sync

    # -- reading ----------------------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        """True while the book follows the stream (a snapshot and every delta since)."""
        return self.resync_reason is None

    @property
    def ts_ns(self) -> int:
        """The `ts` of the last message applied, in nanoseconds (0 before any)."""
        return 0 if self.ts_ms is None else self.ts_ms * _MS

    @property
    def best_bid(self) -> Level | None:
        """(price, size) of the highest bid, or None."""
        return self._bids.highest()

    @property
    def best_ask(self) -> Level | None:
        """(price, size) of the lowest ask, or None."""
        return self._asks.lowest()

    def bids(self, depth: int | None = None) -> list[Level]:
        """The bids best (highest) first, at most `depth` of them."""
        return _levels(self._bids, reversed(self._bids.prices), depth)

    def asks(self, depth: int | None = None) -> list[Level]:
        """The asks best (lowest) first, at most `depth` of them."""
        return _levels(self._asks, self._asks.prices, depth)

    def to_order_book(self, depth: int | None = None) -> OrderBook:
        """The book as the domain `OrderBook` (floats, at most `depth` levels a side).

        Raises `BookSequenceError` while the book needs a resync: a book that missed
        updates must not reach a strategy.
        """
        if self.resync_reason is not None:
            raise BookSequenceError(f"{self.resync_reason}: the book waits for a snapshot")
        return OrderBook(
            self.instrument_id,
            self.ts_ns,
            tuple((float(p), float(s)) for p, s in self.bids(depth)),
            tuple((float(p), float(s)) for p, s in self.asks(depth)),
        )

    # -- writing ----------------------------------------------------------------------

    def apply(self, message: Mapping[str, Any]) -> BookStatus:
        """Apply one parsed `orderbook` message; what it did is the returned status.

        A malformed message raises ValueError naming the bad value and leaves the book
        unchanged (its lost update then shows as a gap).
        """
        is_snapshot, ts_ms, update_id, seq, bids, asks = self._parse(message)
        counters = self.counters
        counters.messages += 1
        if is_snapshot:
            return self._apply_snapshot(ts_ms, update_id, seq, bids, asks)
        if self.resync_reason is not None:
            if not self._told:  # no snapshot yet, and the stream sends a delta
                return self._unsync("no_snapshot", f"delta u {update_id} before any snapshot")
            counters.refused += 1
            return BookStatus.WAITING
        assert self.update_id is not None and self.ts_ms is not None  # set by a snapshot
        expected = self.update_id + 1
        if update_id < expected:
            counters.skipped += 1
            return BookStatus.SKIPPED
        if update_id > expected:
            return self._unsync("gaps", f"gap: expected u {expected}, got u {update_id}")
        if self.stale_after_ms is not None and ts_ms - self.ts_ms > self.stale_after_ms:
            return self._unsync(
                "stale",
                f"stale: no message for {ts_ms - self.ts_ms} ms "
                f"(> {self.stale_after_ms} ms) before u {update_id}",
            )
        self._bids.update(bids)
        self._asks.update(asks)
        counters.deltas += 1
        self._record(ts_ms, update_id, seq)
        return self._check_crossed()

    def check_stale(self, now_ns: int | None = None) -> bool:
        """Mark the book stale if no message came for `stale_after_ms` before `now_ns`.

        `now_ns` defaults to the clock given to the book. True when this call found the
        book stale (the caller resubscribes); False if it is fresh or already unsynced.
        """
        if now_ns is None:
            if self.clock is None:
                raise ValueError(f"{self.topic}: check_stale needs now_ns or a clock")
            now_ns = self.clock()
        if self.resync_reason is not None or self.stale_after_ms is None or self.ts_ms is None:
            return False
        silent_ms = now_ns // _MS - self.ts_ms
        if silent_ms <= self.stale_after_ms:
            return False
        self._unsync(
            "stale",
            f"stale: no message for {silent_ms} ms (> {self.stale_after_ms} ms) "
            f"after u {self.update_id}",
        )
        return True

    def _apply_snapshot(
        self,
        ts_ms: int,
        update_id: int,
        seq: int | None,
        bids: list[Level],
        asks: list[Level],
    ) -> BookStatus:
        counters = self.counters
        counters.snapshots += 1
        if update_id == 1:
            counters.restarts += 1
        if self._told:
            counters.resyncs += 1
        self._bids.clear()
        self._asks.clear()
        self._bids.update(bids)
        self._asks.update(asks)
        self.resync_reason = None
        self._told = False
        self._record(ts_ms, update_id, seq)
        return self._check_crossed()

    def _record(self, ts_ms: int, update_id: int, seq: int | None) -> None:
        self.update_id = update_id
        self.seq = seq
        self.ts_ms = ts_ms if self.ts_ms is None else max(self.ts_ms, ts_ms)

    def _check_crossed(self) -> BookStatus:
        bids, asks = self._bids.prices, self._asks.prices
        if bids and asks and bids[-1] >= asks[0]:
            return self._unsync(
                "crossed",
                f"crossed at u {self.update_id}: best bid {bids[-1]} >= best ask {asks[0]}",
            )
        return BookStatus.APPLIED

    def _unsync(self, counter: str, reason: str) -> BookStatus:
        """Count `counter`, keep the reason, and refuse deltas until the next snapshot."""
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        self.resync_reason = f"{self.topic}: {reason}"
        self._told = True
        return BookStatus.RESYNC

    def _parse(
        self, message: Mapping[str, Any]
    ) -> tuple[bool, int, int, int | None, list[Level], list[Level]]:
        """The checked fields of a message: (is_snapshot, ts, u, seq, bids, asks)."""
        if not isinstance(message, Mapping):
            raise ValueError(
                f"{self.topic}: a message must be a parsed JSON object, got {message!r}"
            )
        topic = message.get("topic")
        if topic != self.topic:
            raise ValueError(f"{self.topic}: got a message for topic {topic!r}")
        kind = message.get("type")
        if kind not in ("snapshot", "delta"):
            raise ValueError(f"{self.topic}: message type must be snapshot or delta, got {kind!r}")
        ts_ms = _non_negative_int(message.get("ts"), f"{self.topic}: ts")
        data = message.get("data")
        if not isinstance(data, Mapping):
            raise ValueError(f"{self.topic}: data must be an object, got {data!r}")
        if data.get("s") != self.symbol:
            raise ValueError(f"{self.topic}: data.s must be {self.symbol!r}, got {data.get('s')!r}")
        update_id = _non_negative_int(data.get("u"), f"{self.topic}: data.u")
        seq = data.get("seq")
        if seq is not None:
            seq = _non_negative_int(seq, f"{self.topic}: data.seq")
        bids = self._parse_levels(data.get("b"), "b")
        asks = self._parse_levels(data.get("a"), "a")
        return kind == "snapshot", ts_ms, update_id, seq, bids, asks

    def _parse_levels(self, raw: object, key: str) -> list[Level]:
        if not isinstance(raw, list):
            raise ValueError(f"{self.topic}: data.{key} must be a list of levels, got {raw!r}")
        try:  # the whole list at once (the hot path); floats are refused: not exact
            levels = [(Decimal(p), Decimal(s)) for p, s in raw if type(p) is str and type(s) is str]
            ok = len(levels) == len(raw) and all(
                p > _ZERO and s >= _ZERO and p.is_finite() and s.is_finite() for p, s in levels
            )
        except (TypeError, ValueError, InvalidOperation):
            ok = False
        if ok:
            return levels
        bad = next(level for level in raw if _level(level) is None)
        raise ValueError(
            f"{self.topic}: data.{key} level must be [price > 0, size >= 0] as decimal "
            f"strings, got {bad!r}"
        )


def _level(raw: Any) -> Level | None:
    """One [price, size] level as Decimals, or None if it is not a valid one."""
    try:
        price_text, size_text = raw
        if type(price_text) is not str or type(size_text) is not str:
            return None
        price, size = Decimal(price_text), Decimal(size_text)
        if price.is_finite() and size.is_finite() and price > 0 and size >= 0:
            return price, size
    except (TypeError, ValueError, InvalidOperation):
        pass
    return None


def _levels(
    side: PriceLevels[Decimal], prices: Iterable[Decimal], depth: int | None
) -> list[Level]:
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be an int >= 0 or None, got {depth!r}")
        prices = itertools.islice(prices, depth)
    sizes = side.sizes
    return [(price, sizes[price]) for price in prices]


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value
