"""Bars in: the node's one per-bar step, and the replay loop around it.

Every bar, in every mode, goes through `BarLoop.step`: the node's `bar_index` becomes
the bar's index, funding is paid at the open, the venue matches the bar (market orders
at the open, resting orders along the OHLC path), the clock moves to the bar's close
(timers fire), the last price and the emulated trailing stops follow the close, then
the strategies subscribed to bars get a `Bar` and those that take bar indices
(`VectorAdapter`) `on_bar_index(i)` where their `bar_mask[i]` is set.

`run` replays feeds (a backtest: one feed, or several merged in time order) and
`process_bar` takes one bar at a time (paper trading, from its venue stream). The node
owns one (`TradingNode.bar_loop`); `TradingNode.run_bars` and `process_bar` call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from sapphire.domain import Bar, InstrumentId
from sapphire.domain.instrument import to_decimal
from sapphire.engine.clock import SimulatedClock
from sapphire.engine.strategy import EventStrategy
from sapphire.gc_tuning import rare_gc_passes

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode

__all__ = ["BarFeed", "BarLoop", "FundingPaid"]


@dataclass(frozen=True, eq=False)
class BarFeed:
    """Bars of one instrument for a replay: arrays of open times (ns), OHLCV and the
    bar length; `funding` optional per-bar summed funding rates."""

    instrument_id: InstrumentId
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    timeframe_ns: int
    funding: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.close.shape[0])


@dataclass(frozen=True, slots=True)
class FundingPaid:
    """A funding payment booked on the node's portfolio (`amount` < 0 when paid)."""

    instrument_id: InstrumentId
    ts_ns: int
    rate: float
    amount: Decimal


class _Track(NamedTuple):
    """One feed of a replay as Python lists (read bar by bar), and how to replay it."""

    iid: InstrumentId
    time: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]
    timeframe_ns: int
    funding: list[float] | None  # None: no funding in the feed
    book: Any  # the venue's working orders of `iid`, to skip bars with none; or None
    fast: Any  # the one index-driven strategy when the fast path applies; or None
    mask: list[bool]  # its `bar_mask`


class BarLoop:
    """The node's bar subscriptions and its one per-bar step."""

    def __init__(self, node: TradingNode) -> None:
        self.node = node
        self.bar_subs: dict[InstrumentId, list[EventStrategy]] = {}
        self.index_subs: dict[InstrumentId, list[Any]] = {}

    def subscribe(self, strategy: EventStrategy, instrument_id: InstrumentId) -> None:
        """`strategy` gets the bars of `instrument_id`: as `Bar`s, or as indices when it
        takes them (`wants_bar_index`, with a `bar_mask` of the bars it wants)."""
        index_bars = getattr(strategy, "wants_bar_index", False)
        target = self.index_subs if index_bars else self.bar_subs
        target.setdefault(instrument_id, []).append(strategy)

    # ---------------------------------------------------------------- one bar
    def process_bar(
        self, bar: Bar, timeframe_ns: int, funding_rate: float = 0.0, index: int | None = None
    ) -> None:
        """One bar through `step` (see `TradingNode.process_bar`)."""
        i = -1
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
                raise ValueError(f"index={index!r} is invalid: expected a bar index >= 0 or None")
            i = int(index)
        self.step(
            bar.instrument_id, bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume,
            timeframe_ns, funding_rate, i, None, bar,
        )  # fmt: skip

    def step(
        self,
        iid: InstrumentId,
        ts: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        volume: float,
        tf: int,
        rate: float,
        index: int,
        book: Any,
        bar: Bar | None,
    ) -> None:
        """One bar of `iid`: `bar_index` becomes `index` (when >= 0), funding at `rate`
        is paid at the open, the venue matches the bar (skipped when `book`, the venue's
        working orders of `iid`, has none), then `close_bar`."""
        node = self.node
        if index >= 0:
            node.bar_index = index
        if rate:
            self.funding(iid, rate, o, ts)
        end = ts + tf
        if book is None or book.queued or book.resting:
            node.venue.process_bar(iid, ts, o, h, lo, c, end)
        self.close_bar(iid, ts, o, h, lo, c, volume, end, index, bar)

    def close_bar(
        self,
        iid: InstrumentId,
        ts: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        volume: float,
        end: int,
        index: int,
        bar: Bar | None,
    ) -> None:
        """The bar's close: the clock moves to `end` (timers fire), the last price and
        emulated trailing stops follow the close, the bar subscribers get the bar (a
        `Bar` built from the prices when `bar` is None), then the index subscribers
        `on_bar_index(index)` where their `bar_mask` is set (when `index` >= 0)."""
        node = self.node
        clock = node.clock
        if clock.next_due <= end:
            clock.advance_to(end)
        elif isinstance(clock, SimulatedClock):
            clock.ts_ns = end
        node.last[iid] = c
        emulator = node.emulator
        if emulator.trails:
            emulator.move_trails(iid, c)
        subs = self.bar_subs.get(iid)
        if subs:
            if bar is None:
                bar = Bar(
                    instrument_id=iid, ts_ns=ts, open=o, high=h, low=lo, close=c, volume=volume
                )
            for s in subs:
                s.on_bar(bar)
        if index >= 0:
            for s in self.index_subs.get(iid, ()):
                if s.bar_mask[index]:
                    s.on_bar_index(index)

    def funding(self, iid: InstrumentId, rate: float, mark: float, ts: int) -> None:
        """Funding at `rate` on the position in `iid` valued at `mark`: the venue's
        account pays it, and so does the node's portfolio (a `FundingPaid` event)."""
        node = self.node
        venue = node.venue
        if hasattr(venue, "apply_funding"):
            venue.apply_funding(iid, rate, mark, ts)
        portfolio = node.portfolio
        if portfolio.net_quantity(iid) == 0:
            return
        amount = portfolio.apply_funding(iid, to_decimal(rate), to_decimal(mark), ts)
        node.bus.publish(FundingPaid(instrument_id=iid, ts_ns=ts, rate=rate, amount=amount))

    # ---------------------------------------------------------------- the replay
    def run(self, feeds: Sequence[BarFeed]) -> None:
        """Replay every feed's bars in time order through `step` (the node started)."""
        alone = len(feeds) == 1
        tracks = [self._track(f, alone) for f in feeds]
        runs: Iterable[tuple[int, int, int]]
        if alone:
            runs = [(0, 0, len(feeds[0]))]
        else:
            times = np.concatenate([f.time for f in feeds])
            which = np.concatenate([np.full(len(f), k) for k, f in enumerate(feeds)])
            idx = np.concatenate([np.arange(len(f)) for f in feeds])
            perm = np.lexsort((which, times))
            which, idx = which[perm], idx[perm]
            # runs of consecutive bars of one feed: (feed, first index, end index)
            cut = np.flatnonzero((np.diff(which) != 0) | (np.diff(idx) != 1)) + 1
            first = np.concatenate(([0], cut)) if len(idx) else cut
            size = np.diff(np.concatenate((first, [len(idx)])))
            runs = zip(
                which[first].tolist(), idx[first].tolist(), (idx[first] + size).tolist(),
                strict=True,
            )  # fmt: skip
        with rare_gc_passes():  # the replay keeps every order and its events
            self._replay(tracks, runs)

    def _track(self, f: BarFeed, alone: bool) -> _Track:
        """A feed ready to replay. Alone in its replay, it may skip the venue on bars
        when no order works (the venue's `book_of`) and take the fast path when one
        index-driven strategy is all it feeds; with other feeds, every bar takes the
        whole step (the venue, the clock and the last prices follow every feed)."""
        iid = f.instrument_id
        node = self.node
        book_of = getattr(node.venue, "book_of", None) if alone else None
        index_subs = self.index_subs.get(iid, [])
        fast = (
            index_subs[0]
            if alone
            and len(index_subs) == 1
            and not self.bar_subs.get(iid)
            and isinstance(node.clock, SimulatedClock)
            else None
        )
        fund = f.funding
        return _Track(
            iid, f.time.tolist(), f.open.tolist(), f.high.tolist(), f.low.tolist(),
            f.close.tolist(), f.volume.tolist(), f.timeframe_ns,
            fund.tolist() if fund is not None and np.any(fund) else None,
            book_of(iid) if book_of is not None else None,
            fast, fast.bar_mask if fast is not None else [],
        )  # fmt: skip

    def _replay(self, tracks: list[_Track], runs: Iterable[tuple[int, int, int]]) -> None:
        """The replay loop: the bars of `runs` ((track, first index, end index), in time
        order), each through `step`.

        The fast path is that step written out for a track feeding one index-driven
        strategy: while no timer is due and no trailing stop is emulated, the clock and
        the last price only move on the bars the strategy is called on (caught up at
        the end), the only ones where anything reads them.
        """
        node = self.node
        step, close_bar, funding = self.step, self.close_bar, self.funding
        venue = node.venue
        clock = node.clock
        sim_clock = clock if isinstance(clock, SimulatedClock) else SimulatedClock()
        trails = node.emulator.trails
        last = node.last
        for k, start, stop in runs:
            iid, times, o_, h_, l_, c_, vol, tf, fund, book, fast, mask = tracks[k]
            for i in range(start, stop):
                if fast is None:
                    rate = fund[i] if fund is not None else 0.0
                    step(iid, times[i], o_[i], h_[i], l_[i], c_[i], vol[i], tf, rate, i, book, None)
                    continue
                ts = times[i]
                end = ts + tf
                node.bar_index = i
                if fund is not None and fund[i] != 0.0:
                    funding(iid, fund[i], o_[i], ts)
                if book is None or book.queued or book.resting:
                    venue.process_bar(iid, ts, o_[i], h_[i], l_[i], c_[i], end)
                if trails or clock.next_due <= end:
                    close_bar(iid, ts, o_[i], h_[i], l_[i], c_[i], vol[i], end, i, None)
                elif mask[i]:
                    sim_clock.ts_ns = end
                    last[iid] = c_[i]
                    fast.on_bar_index(i)
        for t in tracks:
            if t.fast is not None and t.time:
                last[t.iid] = t.close[-1]
                sim_clock.ts_ns = max(sim_clock.ts_ns, t.time[-1] + t.timeframe_ns)
