"""`FeatureStream`: the rows of `build_features`, one base bar at a time (paper and live).

Each indicator slot is fed by the streaming twin of its `Indicator`; higher timeframes by
buckets that feed once they close; other instruments' bars wait until the base bar that
closes at or after them. The rules are those of `sapphire.ml.features`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from sapphire.ml.feature_indicators import INDICATORS, NAN, FloatArray, Updater
from sapphire.ml.features import (
    DAY_NS,
    TWO_PI,
    FeatureSpec,
    _check_bucket,
    _positive_ns,
    _timeframe_ns,
)
from sapphire.strategy.base import Bars


class _Source:
    """A run of indicator slots fed by one bar series (an instrument's own bars or buckets)."""

    __slots__ = ("start", "stop", "updaters", "values")

    def __init__(self, values: FloatArray, start: int, updaters: list[Updater]) -> None:
        self.values = values
        self.start = start
        self.stop = start + len(updaters)
        self.updaters = updaters

    def feed(self, h: float, lo: float, c: float) -> None:
        self.values[self.start : self.stop] = [f(h, lo, c) for f in self.updaters]


class _Bucketer:
    """Aggregates bars into epoch-aligned buckets and feeds each whole bucket once it closes."""

    __slots__ = ("close", "high", "low", "seen", "size", "skip", "source", "start")

    def __init__(self, source: _Source, size: int) -> None:
        self.source = source
        self.size = size
        self.start: int | None = None
        self.seen = False
        self.skip = False
        self.high = self.low = self.close = NAN

    def add(self, t: int, h: float, lo: float, c: float) -> None:
        bucket = t - t % self.size
        if self.start is not None and bucket != self.start:
            self.emit()
        if self.start is None:
            self.start = bucket
            self.skip = not self.seen and t != bucket  # the data start inside it: partial
            self.seen = True
            self.high, self.low = h, lo
        else:  # NaN-propagating max / min, as np.maximum / np.minimum
            if self.high == self.high and (h != h or h > self.high):
                self.high = h
            if self.low == self.low and (lo != lo or lo < self.low):
                self.low = lo
        self.close = c

    def flush(self, limit: int) -> None:
        if self.start is not None and self.start + self.size <= limit:
            self.emit()

    def emit(self) -> None:
        if not self.skip:
            self.source.feed(self.high, self.low, self.close)
        self.start = None


class _Feed:
    """One instrument: its own-bar source, its buckets and the pushed bars not yet due."""

    __slots__ = ("bar_ns", "buckets", "last", "name", "native", "pending")

    def __init__(self, name: str, bar_ns: int) -> None:
        self.name = name
        self.bar_ns = bar_ns
        self.native: _Source | None = None
        self.buckets: list[_Bucketer] = []
        self.pending: deque[tuple[int, float, float, float]] = deque()
        self.last = -(2**63)

    def check(self, t: int, c: float) -> None:
        """Raise unless bar `t` comes after the last one, has a close > 0 (or NaN) and fits."""
        if t <= self.last:
            raise ValueError(
                f"FeatureStream: {self.name!r} bar {t} is not after its last bar {self.last}"
            )
        if not c > 0.0 and c == c:
            raise ValueError(f"FeatureStream: {self.name!r} close {c} <= 0 at {t}")
        if self.buckets and t % self.bar_ns:
            raise ValueError(f"FeatureStream: {self.name!r} bar {t} is not on its timeframe")

    def apply(self, t: int, h: float, lo: float, c: float) -> None:
        if self.native is not None:
            self.native.feed(h, lo, c)
        for bucketer in self.buckets:
            bucketer.add(t, h, lo, c)

    def drain(self, limit: int) -> None:
        pending = self.pending
        while pending and pending[0][0] + self.bar_ns <= limit:
            self.apply(*pending.popleft())


class _FracDiff:
    """The fixed-width-window fractional difference of the log close, bar by bar."""

    __slots__ = ("buffer", "n", "weights", "width")

    def __init__(self, weights: FloatArray) -> None:
        self.width = weights.shape[0]
        self.weights = np.ascontiguousarray(weights[::-1])  # oldest close first
        self.buffer = np.full(2 * self.width, NAN)  # each close twice: windows are contiguous
        self.n = 0

    def update(self, c: float) -> float:
        x = math.log(c) if c == c else NAN
        width = self.width
        pos = self.n % width
        self.buffer[pos] = self.buffer[pos + width] = x
        self.n += 1
        if self.n < width:
            return NAN
        return float(np.dot(self.weights, self.buffer[pos + 1 : pos + 1 + width]))


class FeatureStream:
    """Same rows as build_features, one base bar at a time (for paper/live).

    For each base bar: `push` every other instrument's bars that closed by its close, then
    `update` with the base bar. A bar pushed after a base bar that closed at or after it
    raises ValueError (the row would differ from the batch one). `replay` drives a history
    through the same calls, e.g. to warm the indicators up before going live.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        base_timeframe_ns: int,
        other_timeframes_ns: Mapping[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.columns = spec.columns()
        self._base = _positive_ns("FeatureStream: base_timeframe_ns", base_timeframe_ns)
        other_ns = dict(other_timeframes_ns or {})
        n_slots = len(spec.instruments) * len(spec.timeframes) * len(spec.indicators)
        self._values = np.full(n_slots * len(spec.periods), NAN)
        self._feeds: dict[str, _Feed] = {}
        slot = 0
        for inst in spec.instruments:
            bar_ns = self._base if inst == "self" else other_ns.get(inst, self._base)
            feed = _Feed(inst, _positive_ns(f"FeatureStream: {inst!r} timeframe", bar_ns))
            for tf in spec.timeframes:
                updaters = [
                    INDICATORS[ind].stream(p) for ind in spec.indicators for p in spec.periods
                ]
                source = _Source(self._values, slot, updaters)
                slot = source.stop
                size = _timeframe_ns(tf, self._base)
                if size is None:
                    feed.native = source
                else:
                    _check_bucket(inst, tf, size, bar_ns)
                    feed.buckets.append(_Bucketer(source, size))
            self._feeds[inst] = feed
        self._self = self._feeds.pop("self") if "self" in self._feeds else _Feed("self", self._base)
        self._others = list(self._feeds.values())
        self._n_ind = len(spec.shifts) * slot
        depth = max(spec.shifts, default=0) + 1
        self._history = np.full((depth, slot), NAN) if spec.shifts not in ((), (0,)) else None
        slots = np.repeat(np.arange(slot), len(spec.shifts))
        lags = np.tile(np.asarray(spec.shifts, dtype=np.intp), slot)
        self._gather = [((pos - lags) % depth, slots) for pos in range(depth)]
        self._bars = 0
        self._returns = spec.returns
        self._closes: deque[float] = deque(maxlen=max(spec.returns, default=0) + 1)
        self._ffd = None if spec.frac_diff is None else _FracDiff(spec.frac_diff_weights())
        self._limit = -(2**63)

    def push(
        self, instrument: str, time_ns: int, o: float, h: float, l: float, c: float, v: float
    ) -> None:
        """Another instrument's bar; it counts from the first self bar closing at or after it."""
        feed = self._feeds.get(instrument)
        if feed is None:
            raise ValueError(
                f"FeatureStream.push: unknown instrument {instrument!r}; the spec has "
                f"{', '.join(self._feeds) or 'no other instruments'}"
            )
        time_ns = int(time_ns)
        feed.check(time_ns, float(c))
        if time_ns + feed.bar_ns <= self._limit:
            raise ValueError(
                f"FeatureStream.push: {instrument!r} bar {time_ns} closed before the last self "
                "bar did; push other bars before the self bar that closes after them"
            )
        feed.last = time_ns
        feed.pending.append((time_ns, float(h), float(l), float(c)))

    def update(
        self, time_ns: int, o: float, h: float, l: float, c: float, v: float
    ) -> NDArray[np.float64]:
        """The self bar; returns the feature row for it (len == len(spec.columns()))."""
        time_ns = int(time_ns)
        c = float(c)
        self._self.check(time_ns, c)
        limit = time_ns + self._base
        for feed in self._others:
            feed.drain(limit)
        self._self.apply(time_ns, float(h), float(l), c)
        for feed in self._others:
            for bucketer in feed.buckets:
                bucketer.flush(limit)
        for bucketer in self._self.buckets:
            bucketer.flush(limit)
        self._self.last = time_ns
        self._limit = limit
        row = np.empty(len(self.columns))
        n_ind = self._n_ind
        if self._history is None:
            row[:n_ind] = self._values
        else:
            pos = self._bars % self._history.shape[0]
            self._history[pos] = self._values
            row[:n_ind] = self._history[self._gather[pos]]
        self._bars += 1
        closes = self._closes
        closes.append(c)
        tail = [math.log(c / closes[-1 - k]) if len(closes) > k else NAN for k in self._returns]
        if self._ffd is not None:
            tail.append(self._ffd.update(c))
        if self.spec.calendar:
            day = (time_ns % DAY_NS) / DAY_NS * TWO_PI
            week = ((time_ns // DAY_NS + 3) % 7) * (TWO_PI / 7.0)
            tail += [math.sin(day), math.cos(day), math.sin(week), math.cos(week)]
        row[n_ind:] = tail
        return row

    def replay(self, bars: Bars, others: Mapping[str, Bars] | None = None) -> FloatArray:
        """Feed history in live order (others' bars pushed as they close); the rows, stacked."""
        others = others or {}
        for name, feed in self._feeds.items():
            if name not in others:
                raise ValueError(f"FeatureStream.replay: no bars given for instrument {name!r}")
            if others[name].timeframe_ns != feed.bar_ns:
                raise ValueError(
                    f"FeatureStream.replay: {name!r} bars are {others[name].timeframe_ns} ns, "
                    f"the stream was set up for {feed.bar_ns} ns"
                )
        close_ns = bars.time + bars.timeframe_ns
        due = {
            name: np.searchsorted(others[name].time + others[name].timeframe_ns, close_ns, "right")
            for name in self._feeds
        }
        done = dict.fromkeys(due, 0)
        rows = np.empty((len(bars), len(self.columns)))
        for t in range(len(bars)):
            for name, ends in due.items():
                src = others[name]
                for j in range(done[name], int(ends[t])):
                    self.push(
                        name,
                        int(src.time[j]),
                        src.open[j],
                        src.high[j],
                        src.low[j],
                        src.close[j],
                        src.volume[j],
                    )
                done[name] = int(ends[t])
            rows[t] = self.update(
                int(bars.time[t]),
                bars.open[t],
                bars.high[t],
                bars.low[t],
                bars.close[t],
                bars.volume[t],
            )
        return rows
