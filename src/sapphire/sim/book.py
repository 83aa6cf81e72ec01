"""An L2 order book kept up to date from a snapshot and incremental updates.

`L2Book` is the simulated venue's working copy of one instrument's book: mutable, with
sorted price levels, fed by `BookUpdate`s (a batch of domain `OrderBookDelta`s with the
venue's update ids) and read back as a domain `OrderBook` snapshot. Sequence checks
refuse a gap with `BookSequenceError`, so a replay never trades against a book that
silently missed updates. One side of a book is a `PriceLevels` (sorted prices, float or
Decimal), shared with the live Bybit book (`sapphire.venues.bybit_book`).

Update ids (the fields of `BookUpdate`): `update_id` is the last id the batch covers,
`first_update_id` the first (Binance `U`; Bybit sends one id, so both are `u`), and
`prev_update_id` the last id of the previous batch when the venue says so (Binance
futures `pu`). After a snapshot with id `S`:

- a batch with `update_id <= S` (older than the book) is skipped;
- the first batch applied must cover `S + 1` (`first_update_id <= S + 1 <= update_id`);
- each later batch must follow the previous one: `prev_update_id == last` when given,
  else `first_update_id == last + 1`.

Anything else raises `BookSequenceError` naming the ids. A snapshot always resets the
book and the sequence.

A batch that leaves the book crossed is resolved in favour of the batch: levels of the
side it did not touch that cross a level it set are stale and are removed (the venue
would have matched them). A batch that crosses itself is refused (ValueError).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from sapphire.domain import InstrumentId, OrderBook, OrderBookDelta, OrderSide
from sapphire.domain.events import check_ts

__all__ = ["BookSequenceError", "BookUpdate", "L2Book", "Level", "PriceLevels"]

Level = tuple[float, float]


class BookSequenceError(ValueError):
    """An update does not follow the book's last update id (a gap, or no snapshot yet)."""


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """One venue message: a snapshot (replaces the book) or a batch of deltas.

    `deltas` are applied in order; in a snapshot they are the levels (size > 0).
    """

    instrument_id: InstrumentId
    ts_ns: int
    is_snapshot: bool
    deltas: tuple[OrderBookDelta, ...]
    update_id: int | None = None
    first_update_id: int | None = None
    prev_update_id: int | None = None

    def __post_init__(self) -> None:
        check_ts(self.ts_ns, "BookUpdate.ts_ns")
        object.__setattr__(self, "deltas", tuple(self.deltas))
        for delta in self.deltas:
            if not isinstance(delta, OrderBookDelta):
                raise ValueError(f"BookUpdate.deltas must hold OrderBookDeltas, got {delta!r}")
            if delta.instrument_id != self.instrument_id:
                raise ValueError(
                    f"BookUpdate for {self.instrument_id} holds a delta for {delta.instrument_id}"
                )
            if self.is_snapshot and delta.size == 0:
                raise ValueError(f"a snapshot level must have size > 0, got {delta}")
        for name in ("update_id", "first_update_id", "prev_update_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"BookUpdate.{name} must be an int or None, got {value!r}")
        if self.first_update_id is None and self.update_id is not None:
            object.__setattr__(self, "first_update_id", self.update_id)
        if (
            self.update_id is not None
            and self.first_update_id is not None
            and self.first_update_id > self.update_id
        ):
            raise ValueError(
                f"BookUpdate first_update_id {self.first_update_id} > update_id {self.update_id}"
            )

    @classmethod
    def from_order_book(cls, book: OrderBook, update_id: int | None = None) -> BookUpdate:
        """A snapshot update holding every level of the domain `book`."""
        deltas = [
            OrderBookDelta(book.instrument_id, book.ts_ns, side, price, size)
            for side, levels in ((OrderSide.BUY, book.bids), (OrderSide.SELL, book.asks))
            for price, size in levels
        ]
        return cls(book.instrument_id, book.ts_ns, True, tuple(deltas), update_id)


#: a price or size type of a book: float (the simulated venue) or Decimal (live books)
N = TypeVar("N", float, Decimal)


class PriceLevels(Generic[N]):
    """One side of a book: price -> size, with the prices kept sorted ascending."""

    __slots__ = ("prices", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[N, N] = {}
        self.prices: list[N] = []

    def set(self, price: N, size: N) -> None:
        """Set the size at `price`; size 0 removes the level."""
        if size == 0:
            if self.sizes.pop(price, None) is not None:
                del self.prices[bisect.bisect_left(self.prices, price)]
        else:
            if price not in self.sizes:
                bisect.insort(self.prices, price)
            self.sizes[price] = size

    def highest(self) -> tuple[N, N] | None:
        """(price, size) of the highest price (a bid side's best), or None when empty."""
        if not self.prices:
            return None
        price = self.prices[-1]
        return price, self.sizes[price]

    def lowest(self) -> tuple[N, N] | None:
        """(price, size) of the lowest price (an ask side's best), or None when empty."""
        if not self.prices:
            return None
        price = self.prices[0]
        return price, self.sizes[price]

    def update(self, levels: Iterable[tuple[N, N]]) -> None:
        """`set` each (price, size) in order (the batch form, for whole messages)."""
        sizes, prices = self.sizes, self.prices
        for price, size in levels:
            if size == 0:
                if sizes.pop(price, None) is not None:
                    del prices[bisect.bisect_left(prices, price)]
            else:
                if price not in sizes:
                    bisect.insort(prices, price)
                sizes[price] = size

    def clear(self) -> None:
        """Remove every level."""
        self.sizes.clear()
        self.prices.clear()


class L2Book:
    """A mutable L2 book for one instrument (bid = BUY side, ask = SELL side)."""

    def __init__(self, instrument_id: InstrumentId) -> None:
        if not isinstance(instrument_id, InstrumentId):
            raise ValueError(f"L2Book needs an InstrumentId, got {instrument_id!r}")
        self.instrument_id = instrument_id
        self.ts_ns = 0
        self.update_id: int | None = None
        self._bids: PriceLevels[float] = PriceLevels()
        self._asks: PriceLevels[float] = PriceLevels()
        self._has_snapshot = False
        self._synced = False
        self.removed_crossed_levels = 0

    # -- reading ----------------------------------------------------------------------

    def _side(self, side: OrderSide) -> PriceLevels[float]:
        return self._bids if side is OrderSide.BUY else self._asks

    @property
    def has_snapshot(self) -> bool:
        return self._has_snapshot

    @property
    def best_bid(self) -> Level | None:
        """(price, size) of the highest bid, or None."""
        return self._bids.highest()

    @property
    def best_ask(self) -> Level | None:
        """(price, size) of the lowest ask, or None."""
        return self._asks.lowest()

    @property
    def mid(self) -> float | None:
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    @property
    def is_crossed(self) -> bool:
        bid, ask = self.best_bid, self.best_ask
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def levels(self, side: OrderSide, depth: int | None = None) -> list[Level]:
        """`side`'s levels best first (bids descending, asks ascending), at most `depth`."""
        book_side = self._side(side)
        prices: Iterable[float] = (
            reversed(book_side.prices) if side is OrderSide.BUY else book_side.prices
        )
        if depth is not None:
            prices = itertools.islice(prices, depth)
        return [(price, book_side.sizes[price]) for price in prices]

    def size_at(self, side: OrderSide, price: float) -> float:
        """The displayed size at `price` on `side` (0 if no level)."""
        return self._side(side).sizes.get(price, 0.0)

    def depth(self, side: OrderSide) -> int:
        """The number of levels on `side`."""
        return len(self._side(side).prices)

    def to_order_book(self, depth: int | None = None) -> OrderBook:
        """The book as a domain `OrderBook` snapshot (at most `depth` levels a side)."""
        return OrderBook(
            self.instrument_id,
            self.ts_ns,
            tuple(self.levels(OrderSide.BUY, depth)),
            tuple(self.levels(OrderSide.SELL, depth)),
        )

    # -- writing ----------------------------------------------------------------------

    def set_level(self, side: OrderSide, price: float, size: float) -> None:
        """Set one level (size 0 removes it); no sequence or cross check."""
        self._side(side).set(price, size)

    def apply_delta(self, delta: OrderBookDelta) -> None:
        """Apply one domain delta (no sequence check; a cross is resolved as for a batch)."""
        self._check_instrument(delta.instrument_id)
        self._apply_batch((delta,))
        self.ts_ns = max(self.ts_ns, delta.ts_ns)

    def apply_snapshot(self, book: OrderBook, update_id: int | None = None) -> None:
        """Replace the whole book by the domain snapshot `book`."""
        self.apply_update(BookUpdate.from_order_book(book, update_id))

    def apply_update(self, update: BookUpdate, *, check_sequence: bool = True) -> bool:
        """Apply a snapshot or a batch of deltas; False if the batch was older than the book.

        With `check_sequence=False` update ids are recorded but not checked (for data
        known to be sampled, not contiguous). Raises `BookSequenceError` on a gap.
        """
        self._check_instrument(update.instrument_id)
        if update.is_snapshot:
            self._bids.clear()
            self._asks.clear()
            for delta in update.deltas:
                self._side(delta.side).set(delta.price, delta.size)
            if self.is_crossed:
                bid, ask = self.best_bid, self.best_ask
                raise ValueError(
                    f"order book snapshot for {self.instrument_id} at {update.ts_ns} is crossed: "
                    f"best bid {bid[0] if bid else None} >= best ask {ask[0] if ask else None}"
                )
            self._has_snapshot = True
            self._synced = False
            self.update_id = update.update_id
            self.ts_ns = update.ts_ns
            return True
        if check_sequence and not self._in_sequence(update):
            return False
        self._apply_batch(update.deltas)
        if update.update_id is not None:
            self.update_id = update.update_id
        self._synced = True
        self.ts_ns = max(self.ts_ns, update.ts_ns)
        return True

    def _check_instrument(self, instrument_id: InstrumentId) -> None:
        if instrument_id != self.instrument_id:
            raise ValueError(
                f"update for {instrument_id} applied to the book of {self.instrument_id}"
            )

    def _in_sequence(self, update: BookUpdate) -> bool:
        if not self._has_snapshot:
            raise BookSequenceError(
                f"order book {self.instrument_id}: delta (update {update.update_id}) "
                "before any snapshot"
            )
        last = self.update_id
        if last is None or update.update_id is None:
            if last is None and update.update_id is None:
                return True
            raise BookSequenceError(
                f"order book {self.instrument_id}: cannot sequence update {update.update_id} "
                f"after update {last} (one of them has no update id)"
            )
        first = update.first_update_id
        assert first is not None  # set from update_id in BookUpdate.__post_init__
        if update.update_id <= last:
            return False
        if not self._synced:
            ok = first <= last + 1
            expected = f"an update covering id {last + 1}"
        elif update.prev_update_id is not None:
            ok = update.prev_update_id == last
            expected = f"prev_update_id {last}"
        else:
            ok = first == last + 1
            expected = f"first_update_id {last + 1}"
        if not ok:
            raise BookSequenceError(
                f"order book {self.instrument_id}: gap after update {last}: expected "
                f"{expected}, got update {first}..{update.update_id}"
                f" (prev {update.prev_update_id}) at ts {update.ts_ns}; resubscribe for a "
                "fresh snapshot"
            )
        return True

    def _apply_batch(self, deltas: Sequence[OrderBookDelta]) -> None:
        for delta in deltas:
            self._side(delta.side).set(delta.price, delta.size)
        if not self.is_crossed:
            return
        top_bid = max(
            (d.price for d in deltas if d.side is OrderSide.BUY and d.size > 0), default=None
        )
        low_ask = min(
            (d.price for d in deltas if d.side is OrderSide.SELL and d.size > 0), default=None
        )
        if top_bid is not None and low_ask is not None and top_bid >= low_ask:
            raise ValueError(
                f"order book {self.instrument_id}: an update crosses itself "
                f"(bid {top_bid} >= ask {low_ask})"
            )
        if top_bid is not None:  # asks at or below the fresh bid are stale
            while self._asks.prices and self._asks.prices[0] <= top_bid:
                self._asks.set(self._asks.prices[0], 0.0)
                self.removed_crossed_levels += 1
        if low_ask is not None:  # bids at or above the fresh ask are stale
            while self._bids.prices and self._bids.prices[-1] >= low_ask:
                self._bids.set(self._bids.prices[-1], 0.0)
                self.removed_crossed_levels += 1
