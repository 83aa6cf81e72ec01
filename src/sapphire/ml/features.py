"""Model features: a declarative spec, a vectorised builder and its bar-by-bar streaming twin.

A `FeatureSpec` names indicators x periods x timeframes x shifts x instruments. Every
indicator is scale-free (ratios, oscillators, z-scores), so models transfer across price
levels and instruments. `build_features` computes the whole table at once with the Numba
indicators of `sapphire.indicators`; `FeatureStream` feeds their streaming twins one bar at
a time and returns the same rows (to float rounding), for paper and live trading.

Rules, shared by both:

- Column names: `{indicator}_{period}_{timeframe}` for the base instrument, prefixed with
  `{instrument}.` for another instrument and suffixed `_lag{k}` for a shift of k > 0 base
  bars; then `ret_{k}` (log return over k base bars) and `hour_sin`, `hour_cos`,
  `dow_sin`, `dow_cos` (time of day and day of week of the bar's open time, UTC).
- Timeframes: "1x" is each instrument's own bars; "Nx" is N base bars; "15m", "1h", ...
  are fixed sizes. Higher-timeframe bars are epoch-aligned buckets of the instrument's
  bars; a bucket counts once it has closed (bucket end <= the base bar's close time) and
  the leading bucket is dropped when the data start inside it (it would be partial).
- Other instruments are joined as of the base bar's close time: the row of base bar t uses
  only their bars that closed at or before bar t closed.
- Shifts and returns count base bars (rows), not time.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.data.errors import DataError
from sapphire.data.timeframes import format_timeframe, parse_timeframe
from sapphire.indicators import (
    ADX,
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    BBands,
    Donchian,
    Stoch,
    ZScore,
    adx,
    atr,
    bbands,
    donchian,
    ema,
    macd,
    rsi,
    sma,
    stoch,
    zscore,
)
from sapphire.indicators._rolling import RollingMeanStd
from sapphire.indicators.statistics import rolling_mean_std
from sapphire.strategy.base import Bars

FloatArray = NDArray[np.float64]
Updater = Callable[[float, float, float], float]

NAN = math.nan
DAY_NS = 86_400_000_000_000
TWO_PI = 2.0 * math.pi
CALENDAR_COLUMNS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_MULTIPLE = re.compile(r"^([1-9]\d*)x$")


# --- the indicator families: vectorised form, streaming form, warm-up ------------------


def _ratio(num: FloatArray, den: FloatArray, offset: float = 0.0) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num / den - offset, dtype=np.float64)


def _position(x: FloatArray, lower: FloatArray, upper: FloatArray, flat: float) -> FloatArray:
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span == 0.0, flat, (x - lower) / span)


def _log_returns(close: FloatArray) -> FloatArray:
    out = np.full_like(close, NAN)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(close[1:] / close[:-1], out=out[1:])
    return out


def _macd_periods(period: int) -> tuple[int, int, int]:
    """MACD (fast, slow, signal) scaled from 12/26/9 so that `period` is the slow EMA."""
    return max(1, (12 * period + 13) // 26), period, max(1, (9 * period + 13) // 26)


def _on_close(make: Callable[[int], Callable[[float], float]]) -> Callable[[int], Updater]:
    def factory(period: int) -> Updater:
        update = make(period)
        return lambda h, lo, c: update(c)

    return factory


def _natr(p: int) -> Updater:
    update = ATR(p).update
    return lambda h, lo, c: update(h, lo, c) / c


def _sma_ratio(p: int) -> Callable[[float], float]:
    update = SMA(p).update
    return lambda c: c / update(c) - 1.0


def _ema_ratio(p: int) -> Callable[[float], float]:
    update = EMA(p).update
    return lambda c: c / update(c) - 1.0


def _bb_pctb(p: int) -> Callable[[float], float]:
    update = BBands(p, 2.0).update

    def pctb(c: float) -> float:
        upper, _, lower = update(c)
        span = upper - lower
        return NAN if span == 0.0 else (c - lower) / span

    return pctb


def _bb_pctb_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    upper, _, lower = bbands(c, p, 2.0)
    return _position(c, lower, upper, NAN)


def _macd_hist(p: int) -> Callable[[float], float]:
    update = MACD(*_macd_periods(p)).update
    return lambda c: update(c)[2] / c


def _stoch_k(p: int) -> Updater:
    update = Stoch(p, 3, 3).update
    return lambda h, lo, c: update(h, lo, c)[0]


def _vol(p: int) -> Updater:
    stats = RollingMeanStd(p)
    prev = [NAN]

    def vol(h: float, lo: float, c: float) -> float:
        r = math.log(c / prev[0]) if prev[0] == prev[0] and c == c else NAN
        prev[0] = c
        return stats.update(r)[1]

    return vol


def _roc_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    out = np.full_like(c, NAN)
    out[p:] = _ratio(c[p:], c[:-p], 1.0)
    return out


def _roc(p: int) -> Callable[[float], float]:
    closes: deque[float] = deque(maxlen=p + 1)

    def roc(c: float) -> float:
        closes.append(c)
        return c / closes[0] - 1.0 if len(closes) > p else NAN

    return roc


def _donchian_pos_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    upper, _, lower = donchian(h, lo, p)
    return _position(c, lower, upper, 0.5)


def _donchian_pos(p: int) -> Updater:
    update = Donchian(p).update

    def position(h: float, lo: float, c: float) -> float:
        upper, _, lower = update(h, lo)
        span = upper - lower
        return 0.5 if span == 0.0 else (c - lower) / span

    return position


@dataclass(frozen=True)
class Indicator:
    """One scale-free feature family: vectorised and streaming forms of the same numbers."""

    batch: Callable[[FloatArray, FloatArray, FloatArray, int], FloatArray]
    stream: Callable[[int], Updater]  # period -> update(high, low, close) -> value
    lookback: Callable[[int], int]  # index of the first defined value on clean data
    min_period: int
    doc: str


INDICATORS: dict[str, Indicator] = {
    "rsi": Indicator(
        lambda h, lo, c, p: rsi(c, p),
        _on_close(lambda p: RSI(p).update),
        lambda p: p,
        1,
        "Wilder RSI of the close, 0..100",
    ),
    "zscore": Indicator(
        lambda h, lo, c, p: zscore(c, p),
        _on_close(lambda p: ZScore(p).update),
        lambda p: p - 1,
        2,
        "z-score of the close over p bars",
    ),
    "natr": Indicator(
        lambda h, lo, c, p: _ratio(atr(h, lo, c, p), c),
        _natr,
        lambda p: p,
        1,
        "Wilder ATR / close",
    ),
    "sma_ratio": Indicator(
        lambda h, lo, c, p: _ratio(c, sma(c, p), 1.0),
        _on_close(_sma_ratio),
        lambda p: p - 1,
        1,
        "close / SMA - 1",
    ),
    "ema_ratio": Indicator(
        lambda h, lo, c, p: _ratio(c, ema(c, p), 1.0),
        _on_close(_ema_ratio),
        lambda p: p - 1,
        1,
        "close / EMA - 1",
    ),
    "bb_pctb": Indicator(
        _bb_pctb_batch,
        _on_close(_bb_pctb),
        lambda p: p - 1,
        2,
        "Bollinger %B of 2-std bands (0 lower, 1 upper), NaN on a flat window",
    ),
    "macd_hist": Indicator(
        lambda h, lo, c, p: _ratio(macd(c, *_macd_periods(p))[2], c),
        _on_close(_macd_hist),
        lambda p: p + _macd_periods(p)[2] - 2,
        2,
        "MACD histogram / close; slow EMA p, fast and signal scaled from 12/26/9",
    ),
    "adx": Indicator(
        lambda h, lo, c, p: adx(h, lo, c, p),
        lambda p: ADX(p).update,
        lambda p: 2 * p - 1,
        1,
        "Wilder ADX, 0..100",
    ),
    "stoch_k": Indicator(
        lambda h, lo, c, p: stoch(h, lo, c, p, 3, 3)[0],
        _stoch_k,
        lambda p: p + 3,
        1,
        "slow stochastic %K (fastk p, slowk 3, slowd 3), 0..100",
    ),
    "vol": Indicator(
        lambda h, lo, c, p: rolling_mean_std(_log_returns(c), p)[1],
        _vol,
        lambda p: p,
        2,
        "population std of 1-bar log returns over p bars",
    ),
    "roc": Indicator(_roc_batch, _on_close(_roc), lambda p: p, 1, "close / close p bars ago - 1"),
    "donchian_pos": Indicator(
        _donchian_pos_batch,
        _donchian_pos,
        lambda p: p - 1,
        1,
        "close within the p-bar high-low channel, 0..1 (0.5 when flat)",
    ),
}


# --- the spec -------------------------------------------------------------------------

_TUPLES = ("indicators", "periods", "timeframes", "shifts", "instruments", "returns")


def _canonical_timeframe(text: Any) -> str:
    """'1x', 'Nx' or a fixed size in its shortest form ('60m' -> '1h')."""
    if isinstance(text, str) and _MULTIPLE.match(text.strip()):
        return f"{int(text.strip()[:-1])}x"
    try:
        return format_timeframe(parse_timeframe(text))
    except (DataError, TypeError) as exc:
        raise ValueError(
            f"FeatureSpec.timeframes: bad timeframe {text!r}: expected '1x' (each instrument's "
            "own bars), 'Nx' (N base bars) or a size such as '5m', '15m', '1h', '4h', '1d'"
        ) from exc


def _int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"FeatureSpec.{field}: expected integers >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FeatureSpec:
    """Declarative feature set: indicators x periods x timeframes x shifts x instruments."""

    indicators: tuple[str, ...] = ("rsi", "zscore", "natr")
    periods: tuple[int, ...] = (14, 50)
    timeframes: tuple[str, ...] = ("1x",)
    shifts: tuple[int, ...] = (0,)
    instruments: tuple[str, ...] = ("self",)
    returns: tuple[int, ...] = (1, 5, 15)
    calendar: bool = True

    def __post_init__(self) -> None:
        for name in _TUPLES:
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ValueError(f"FeatureSpec.{name}: expected a list, got {value!r}")
            items = list(value)
            if name == "indicators":
                for item in items:
                    if item not in INDICATORS:
                        raise ValueError(
                            f"FeatureSpec.indicators: unknown indicator {item!r}; expected "
                            f"one of {', '.join(INDICATORS)}"
                        )
            elif name == "periods":
                items = [_int(name, p, 1) for p in items]
                for ind in self.indicators:
                    need = INDICATORS[ind].min_period if ind in INDICATORS else 1
                    for p in items:
                        if p < need:
                            raise ValueError(
                                f"FeatureSpec.periods: period {p} is too short for {ind!r} "
                                f"(needs >= {need})"
                            )
            elif name == "timeframes":
                items = [_canonical_timeframe(tf) for tf in items]
            elif name == "shifts":
                items = [_int(name, k, 0) for k in items]
            elif name == "returns":
                items = [_int(name, k, 1) for k in items]
            else:
                for inst in items:
                    if not isinstance(inst, str) or not _NAME.match(inst):
                        raise ValueError(
                            f"FeatureSpec.instruments: bad name {inst!r}; expected 'self' or "
                            "letters, digits, '_', '-' and inner '.'"
                        )
            dupes = sorted({str(x) for x in items if items.count(x) > 1})
            if dupes:
                raise ValueError(f"FeatureSpec.{name}: duplicate values {', '.join(dupes)}")
            object.__setattr__(self, name, tuple(items))
        if not isinstance(self.calendar, bool):
            raise ValueError(f"FeatureSpec.calendar: expected true or false, got {self.calendar!r}")
        for name in ("periods", "timeframes", "shifts", "instruments"):
            if self.indicators and not getattr(self, name):
                raise ValueError(f"FeatureSpec.{name}: must not be empty when indicators are set")
        if not self.columns():
            raise ValueError("FeatureSpec: no columns (no indicators, returns or calendar)")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> FeatureSpec:
        """Build a spec from a dict (e.g. parsed YAML); unknown keys and bad values are named."""
        if not isinstance(m, Mapping):
            raise ValueError(f"FeatureSpec: expected a mapping, got {type(m).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in m if k not in known)
        if unknown:
            raise ValueError(
                f"FeatureSpec: unknown key(s) {', '.join(unknown)}; expected {', '.join(known)}"
            )
        kwargs: dict[str, Any] = {
            k: (v,) if k in _TUPLES and isinstance(v, str | int) and not isinstance(v, bool) else v
            for k, v in m.items()
        }
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeatureSpec:
        """Read a spec from a YAML file holding the mapping of `from_mapping`."""
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return cls.from_mapping({} if data is None else data)

    def to_mapping(self) -> dict[str, Any]:
        """The spec as a JSON-able dict; `from_mapping` rebuilds an equal spec."""
        return {
            f.name: list(getattr(self, f.name)) if f.name in _TUPLES else getattr(self, f.name)
            for f in fields(self)
        }

    def indicator_columns(self) -> list[str]:
        """Indicator column names in order: instrument, timeframe, indicator, period, shift."""
        return [
            f"{'' if inst == 'self' else inst + '.'}{ind}_{p}_{tf}" + (f"_lag{k}" if k else "")
            for inst in self.instruments
            for tf in self.timeframes
            for ind in self.indicators
            for p in self.periods
            for k in self.shifts
        ]

    def columns(self) -> list[str]:
        """All column names, in the order of the feature rows (names are unique)."""
        cols = self.indicator_columns() + [f"ret_{k}" for k in self.returns]
        return cols + list(CALENDAR_COLUMNS) if self.calendar else cols

    def warmup(
        self, base_timeframe_ns: int, other_timeframes_ns: Mapping[str, int] | None = None
    ) -> int:
        """Base bars before rows are complete, for gap-free data starting together.

        Other instruments are assumed to have the base timeframe unless given in
        `other_timeframes_ns`; a higher timeframe counts the worst case of data starting
        just after a bucket boundary (that partial leading bucket is dropped).
        """
        base = _positive_ns("base_timeframe_ns", base_timeframe_ns)
        bars = max(self.returns, default=0)
        lag = max(self.shifts, default=0)
        for inst in self.instruments:
            bar_ns = base if inst == "self" else (other_timeframes_ns or {}).get(inst, base)
            for tf in self.timeframes:
                size = _timeframe_ns(tf, base)
                for ind in self.indicators:
                    for p in self.periods:
                        first = INDICATORS[ind].lookback(p)
                        span = (first + 1) * bar_ns if size is None else (first + 2) * size - bar_ns
                        bars = max(bars, -(-span // base) - 1 + lag)
        return bars


def _positive_ns(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name}: expected a positive number of nanoseconds, got {value!r}")
    return int(value)


def _timeframe_ns(tf: str, base_ns: int) -> int | None:
    """Bucket size of a canonical timeframe; None for '1x' (each instrument's own bars)."""
    if tf == "1x":
        return None
    if tf.endswith("x"):
        return int(tf[:-1]) * base_ns
    return int(parse_timeframe(tf).value)


# --- the vectorised builder -----------------------------------------------------------


def _check_bars(inst: str, bars: Bars) -> None:
    if len(bars) == 0:
        raise ValueError(f"build_features: instrument {inst!r} has no bars")
    _positive_ns(f"build_features: {inst!r} timeframe_ns", bars.timeframe_ns)
    bad = np.flatnonzero(np.diff(bars.time) <= 0)
    if bad.size:
        when = pd.Timestamp(int(bars.time[bad[0] + 1]), tz="UTC")
        raise ValueError(f"build_features: {inst!r} bar times must increase; bar {when} does not")
    bad = np.flatnonzero(bars.close <= 0.0)
    if bad.size:
        when = pd.Timestamp(int(bars.time[bad[0]]), tz="UTC")
        raise ValueError(f"build_features: {inst!r} close {bars.close[bad[0]]} <= 0 at {when}")


def _check_bucket(inst: str, tf: str, size: int, bar_ns: int) -> None:
    if size < bar_ns or size % bar_ns:
        raise ValueError(
            f"timeframe {tf!r} ({size} ns) is not a whole multiple of {inst!r}'s bars "
            f"({format_timeframe(pd.Timedelta(bar_ns, unit='ns'))})"
        )


def _resample(
    bars: Bars, size: int
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.int64]]:
    """High, low, close and close time of each whole epoch-aligned bucket of `size` ns."""
    time = bars.time
    bucket = time - time % size
    starts = np.concatenate(([0], np.flatnonzero(bucket[1:] != bucket[:-1]) + 1))
    if time[0] != bucket[0]:
        starts = starts[1:]
    if starts.size == 0:
        empty = np.empty(0)
        return empty, empty, empty, np.empty(0, dtype=np.int64)
    ends = np.append(starts[1:], time.shape[0]) - 1
    high = np.maximum.reduceat(bars.high, starts)
    low = np.minimum.reduceat(bars.low, starts)
    return high, low, bars.close[ends], bucket[starts] + size


def _source(
    inst: str, src: Bars, tf: str, base: int, close_ns: NDArray[np.int64]
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.intp] | None]:
    """The bars an (instrument, timeframe) pair computes on, and which one each base row sees."""
    size = _timeframe_ns(tf, base)
    if size is None:
        if inst == "self":
            return src.high, src.low, src.close, None
        high, low, close = src.high, src.low, src.close
        ends = src.time + src.timeframe_ns
    else:
        _check_bucket(inst, tf, size, src.timeframe_ns)
        bad = np.flatnonzero(src.time % src.timeframe_ns)
        if bad.size:
            when = pd.Timestamp(int(src.time[bad[0]]), tz="UTC")
            raise ValueError(f"{inst!r} bar at {when} is not aligned to its timeframe")
        high, low, close, ends = _resample(src, size)
    return high, low, close, np.searchsorted(ends, close_ns, side="right") - 1


def build_features(
    spec: FeatureSpec, bars: Bars, others: Mapping[str, Bars] | None = None
) -> pd.DataFrame:
    """The feature table of `bars`: one float64 row per bar, NaN during warm-up (see module)."""
    others = others or {}
    _check_bars("self", bars)
    missing = [i for i in spec.instruments if i != "self" and i not in others]
    if missing:
        raise ValueError(
            f"build_features: no bars given for instrument(s) {', '.join(missing)} "
            f"(others has {', '.join(others) or 'none'})"
        )
    base = bars.timeframe_ns
    n = len(bars)
    close_ns = bars.time + base
    columns = spec.columns()
    out = np.empty((len(columns), n))
    row = 0
    for inst in spec.instruments:
        src = bars if inst == "self" else others[inst]
        if inst != "self":
            _check_bars(inst, src)
        for tf in spec.timeframes:
            high, low, close, seen = _source(inst, src, tf, base, close_ns)
            for ind in spec.indicators:
                for p in spec.periods:
                    values = INDICATORS[ind].batch(high, low, close, p)
                    if seen is not None:
                        values = np.append(values, NAN)[seen]  # -1 (nothing closed yet) -> NaN
                    for k in spec.shifts:
                        out[row, :k] = NAN
                        out[row, k:] = values[: max(n - k, 0)]
                        row += 1
    close = bars.close
    for k in spec.returns:
        out[row, :k] = NAN
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log(close[k:] / close[:-k], out=out[row, k:])
        row += 1
    if spec.calendar:
        day = (bars.time % DAY_NS) / DAY_NS * TWO_PI
        week = ((bars.time // DAY_NS + 3) % 7) * (TWO_PI / 7.0)  # 1970-01-01 was a Thursday
        out[row : row + 4] = np.sin(day), np.cos(day), np.sin(week), np.cos(week)
    index = pd.DatetimeIndex(pd.to_datetime(bars.time, unit="ns", utc=True), name="time")
    return pd.DataFrame(out.T, index=index, columns=columns, copy=False)


# --- the streaming twin ---------------------------------------------------------------


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
