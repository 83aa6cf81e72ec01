"""Model features: a declarative spec, a vectorised builder and its bar-by-bar streaming twin.

A `FeatureSpec` names indicators x periods x timeframes x shifts x instruments. Every
indicator is scale-free (ratios, oscillators, z-scores), so models transfer across price
levels and instruments. `build_features` computes the whole table at once with the Numba
indicators of `sapphire.indicators`; `FeatureStream` feeds their streaming twins one bar at
a time and returns the same rows (to float rounding), for paper and live trading.

Rules, shared by both:

- Column names: `{indicator}_{period}_{timeframe}` for the base instrument, prefixed with
  `{instrument}.` for another instrument and suffixed `_lag{k}` for a shift of k > 0 base
  bars; then `ret_{k}` (log return over k base bars), `ffd_{d}` (the fixed-width-window
  fractional difference of order d of the log close, when `frac_diff` is set; unlike the
  indicators it keeps the memory of the price level, which is its point) and
  `hour_sin`, `hour_cos`, `dow_sin`, `dow_cos` (time of day and day of week of the bar's
  open time, UTC).
- Timeframes: "1x" is each instrument's own bars; "Nx" is N base bars; "15m", "1h", ...
  are fixed sizes. Higher-timeframe bars are epoch-aligned buckets of the instrument's
  bars; a bucket counts once it has closed (bucket end <= the base bar's close time) and
  the leading bucket is dropped when the data start inside it (it would be partial).
- Other instruments are joined as of the base bar's close time: the row of base bar t uses
  only their bars that closed at or before bar t closed.
- Shifts, returns and the fractional difference count base bars (rows), not time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.data.errors import DataError
from sapphire.data.timeframes import format_timeframe, parse_timeframe
from sapphire.ml.feature_indicators import INDICATORS, NAN, FloatArray, Indicator
from sapphire.ml.fracdiff import ffd_weights, frac_diff, min_frac_order
from sapphire.strategy.base import Bars

if TYPE_CHECKING:
    from sapphire.ml.feature_stream import FeatureStream

__all__ = [
    "CALENDAR_COLUMNS",
    "FFD_THRESHOLD",
    "INDICATORS",
    "FeatureSpec",
    "FeatureStream",
    "Indicator",
    "build_features",
]

DAY_NS = 86_400_000_000_000
TWO_PI = 2.0 * math.pi
CALENDAR_COLUMNS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
FFD_THRESHOLD = 1e-4  # weight cut-off of the `frac_diff` column's fixed-width window
_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_MULTIPLE = re.compile(r"^([1-9]\d*)x$")


def __getattr__(name: str) -> Any:
    """`FeatureStream` lives in `sapphire.ml.feature_stream` (which imports this module)."""
    if name == "FeatureStream":
        from sapphire.ml.feature_stream import FeatureStream

        return FeatureStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    frac_diff: float | None = None  # FFD order d in (0, 1] of the log close; None: no column

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
        d = self.frac_diff
        if d is not None:
            if isinstance(d, bool) or not isinstance(d, int | float | np.number) or not 0 < d <= 1:
                raise ValueError(
                    f"FeatureSpec.frac_diff: expected an order d in (0, 1] or null (off), got {d!r}"
                )
            object.__setattr__(self, "frac_diff", float(d))
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
        if self.frac_diff is not None:
            cols.append(self.frac_diff_column())
        return cols + list(CALENDAR_COLUMNS) if self.calendar else cols

    def frac_diff_column(self) -> str:
        """Name of the fractional-difference column, e.g. 'ffd_0.35' (ValueError when off)."""
        if self.frac_diff is None:
            raise ValueError("FeatureSpec.frac_diff_column: frac_diff is not set")
        return f"ffd_{self.frac_diff!r}"

    def frac_diff_weights(self) -> FloatArray:
        """FFD weights of the `frac_diff` column (index k weighs the log close k bars back)."""
        if self.frac_diff is None:
            raise ValueError("FeatureSpec.frac_diff_weights: frac_diff is not set")
        return ffd_weights(self.frac_diff, FFD_THRESHOLD)

    def with_frac_diff(
        self,
        bars: Bars,
        *,
        p_value: float = 0.05,
        step: float = 0.05,
        segments: Sequence[tuple[int, int]] | None = None,
    ) -> FeatureSpec:
        """This spec with `frac_diff` = the least order whose FFD of the bars' log close
        passes ADF at `p_value` (`fracdiff.min_frac_order`); None when d = 0 (the log
        close is already stationary), 1 when no order passes. The choice sees every bar, or
        only the bar ranges `segments` ((first, last) positions, inclusive): pass training
        bars only."""
        _check_bars("self", bars, "FeatureSpec.with_frac_diff")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_close = np.log(bars.close)
        pieces = [log_close] if segments is None else [log_close[a : b + 1] for a, b in segments]
        result = min_frac_order(pieces, p_value=p_value, step=step, threshold=FFD_THRESHOLD)
        return replace(self, frac_diff=result.d if result.d > 0 else None)

    def refit_frac_diff(
        self,
        X: pd.DataFrame,
        bars: Bars,
        at: NDArray[np.int64],
        segments: Sequence[tuple[int, int]],
    ) -> tuple[pd.DataFrame, float | None]:
        """`X` (feature rows of the bars at positions `at`) with its fractional-difference
        column remade with the order chosen on the bar ranges `segments` only (a training
        window: a CV split's training bars, a walk-forward block's), and that order."""
        fold = self.with_frac_diff(bars, segments=segments)
        out = X.drop(columns=[c for c in X.columns if c.startswith("ffd_")])
        if fold.frac_diff is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                column = frac_diff(np.log(bars.close), fold.frac_diff, FFD_THRESHOLD)
            out[fold.frac_diff_column()] = column[np.asarray(at, dtype=np.int64)]
        return out, fold.frac_diff

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
        if self.frac_diff is not None:
            bars = max(bars, len(self.frac_diff_weights()) - 1)
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


def _check_bars(inst: str, bars: Bars, func: str = "build_features") -> None:
    if len(bars) == 0:
        raise ValueError(f"{func}: instrument {inst!r} has no bars")
    _positive_ns(f"{func}: {inst!r} timeframe_ns", bars.timeframe_ns)
    bad = np.flatnonzero(np.diff(bars.time) <= 0)
    if bad.size:
        when = pd.Timestamp(int(bars.time[bad[0] + 1]), tz="UTC")
        raise ValueError(f"{func}: {inst!r} bar times must increase; bar {when} does not")
    bad = np.flatnonzero(bars.close <= 0.0)
    if bad.size:
        when = pd.Timestamp(int(bars.time[bad[0]]), tz="UTC")
        raise ValueError(f"{func}: {inst!r} close {bars.close[bad[0]]} <= 0 at {when}")


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
    if spec.frac_diff is not None:
        out[row] = frac_diff(np.log(close), spec.frac_diff, FFD_THRESHOLD)
        row += 1
    if spec.calendar:
        day = (bars.time % DAY_NS) / DAY_NS * TWO_PI
        week = ((bars.time // DAY_NS + 3) % 7) * (TWO_PI / 7.0)  # 1970-01-01 was a Thursday
        out[row : row + 4] = np.sin(day), np.cos(day), np.sin(week), np.cos(week)
    index = pd.DatetimeIndex(pd.to_datetime(bars.time, unit="ns", utc=True), name="time")
    return pd.DataFrame(out.T, index=index, columns=columns, copy=False)
