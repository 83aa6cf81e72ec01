"""Check a bar frame for broken data and gaps; report, fill or refuse gaps.

Definitions used throughout Sapphire:

- timeframe: the most common spacing between consecutive bars (or the one given).
- gap: two consecutive bars further apart than one timeframe.
- missing bars of a gap: the bar slots that fit strictly between the two bars,
  i.e. ceil(distance / timeframe) - 1 (4 for 1m bars at 10:00 and 10:05).
- largest_gap: the longest stretch of time that no bar covers, i.e. the largest
  distance between consecutive bar open times minus one timeframe (10:00 and 10:05
  with 1m bars: the bar at 10:00 covers up to 10:01, so the gap is 4 minutes).
  It is None when there are no gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.normalize import VALUE_COLUMNS, normalize_with_notes
from sapphire.data.timeframes import (
    format_duration,
    format_timeframe,
    parse_timeframe,
    timeframe_from_diffs,
    timestamps_ns,
)

GapPolicy = Literal["keep", "ffill", "fail"]
GAP_POLICIES: tuple[str, ...] = ("keep", "ffill", "fail")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ValidationReport:
    """What validation found: size, timeframe, range and gaps of a bar frame.

    `rows` counts the bars of the returned frame (after any filling); `start` and `end`
    are the open times of its first and last bars; gap figures describe the data as
    given (before filling); `filled_bars` is how many bars `gaps="ffill"` inserted.
    """

    rows: int
    timeframe: pd.Timedelta
    gap_count: int
    largest_gap: pd.Timedelta | None
    missing_bars: int
    filled_bars: int
    start: pd.Timestamp
    end: pd.Timestamp
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for people: bars, timeframe, range, gaps, fills and notes."""
        text = (
            f"{self.rows:,} bars of {format_timeframe(self.timeframe)}, "
            f"{format_time(self.start)} to {format_time(self.end)} UTC; "
        )
        if self.gap_count == 0:
            text += "no gaps"
        else:
            largest = format_duration(self.largest_gap) if self.largest_gap else "?"
            text += (
                f"{self.gap_count:,} gap{'s' if self.gap_count != 1 else ''} "
                f"({self.missing_bars:,} missing bars, largest {largest})"
            )
        if self.filled_bars:
            text += f"; {self.filled_bars:,} bars filled with the previous close"
        for note in self.notes:
            text += f"; {note}"
        return text


def validate_ohlcv(
    df: pd.DataFrame,
    *,
    gaps: GapPolicy | str = "keep",
    timeframe: str | pd.Timedelta | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check bars (normalising first); raise DataError on bad data, report and handle gaps.

    Problems raise DataError naming the first offending row and how many rows share
    the problem: duplicate or decreasing timestamps, NaN/inf values, high < low,
    high < max(open, close), low > min(open, close), negative volume. `gaps` decides
    what happens to gaps: "keep" leaves them, "ffill" inserts the missing bars with
    open = high = low = close = previous close and volume 0, "fail" raises.
    `timeframe` (optional) must agree with the data's most common bar spacing.
    """
    check_gap_policy(gaps)
    frame, notes = normalize_with_notes(df)
    if len(frame) == 0:
        raise DataError("no bars: the data has no rows")
    ts = timestamps_ns(frame["timestamp"])
    diffs = np.diff(ts)
    low_diff, high_diff = (int(diffs.min()), int(diffs.max())) if diffs.size else (1, 1)
    if low_diff <= 0:
        _raise_order(frame, diffs)
    o, h, low, c, v = (frame[name].to_numpy() for name in VALUE_COLUMNS)
    _check_values(frame, o, h, low, c, v)
    tf = _resolve_timeframe(_infer(diffs, low_diff, high_diff), timeframe)
    tf_ns = int(tf.value)
    gap_at = np.flatnonzero(diffs > tf_ns) if high_diff > tf_ns else np.empty(0, dtype=np.intp)
    gap_sizes = diffs[gap_at]
    missing = (gap_sizes - 1) // tf_ns  # slots strictly between the two bars
    largest = pd.Timedelta(int(gap_sizes.max()) - tf_ns, unit="ns") if gap_at.size else None
    filled = 0
    if gap_at.size and gaps == "fail":
        row = int(gap_at[0]) + 1
        raise DataError(
            f"{_where(frame, row)}: gap of {int(missing[0]):,} missing {format_timeframe(tf)} "
            f"bar(s) after {frame['timestamp'].iloc[row - 1]} ({gap_at.size:,} gaps, "
            f"{int(missing.sum()):,} missing bars in all); use gaps='keep' or 'ffill'"
        )
    if gap_at.size and gaps == "ffill":
        frame = _fill(ts, (o, h, low, c, v), gap_at, missing, tf_ns)
        filled = int(missing.sum())
    report = ValidationReport(
        rows=len(frame),
        timeframe=tf,
        gap_count=int(gap_at.size),
        largest_gap=largest,
        missing_bars=int(missing.sum()),
        filled_bars=filled,
        start=frame["timestamp"].iloc[0],
        end=frame["timestamp"].iloc[-1],
        notes=notes,
    )
    return frame, report


def check_gap_policy(gaps: str) -> None:
    """DataError unless `gaps` is one of keep, ffill, fail."""
    if gaps not in GAP_POLICIES:
        raise DataError(f"bad gaps policy {gaps!r}: expected one of {', '.join(GAP_POLICIES)}")


def format_time(ts: pd.Timestamp) -> str:
    """A UTC time as 'YYYY-MM-DD HH:MM', with seconds and fractions only when present."""
    if ts.second == 0 and ts.microsecond == 0 and ts.nanosecond == 0:
        return ts.strftime("%Y-%m-%d %H:%M")
    return ts.tz_localize(None).isoformat(sep=" ")


def _where(frame: pd.DataFrame, row: int) -> str:
    return f"row {row} ({frame['timestamp'].iloc[row]})"


def _count_text(count: int) -> str:
    return "the only such row" if count == 1 else f"first of {count:,} such rows"


def _raise_order(frame: pd.DataFrame, diffs: npt.NDArray[np.int64]) -> None:
    same = diffs == 0
    if same.any():
        row = int(np.argmax(same)) + 1
        raise DataError(
            f"{_where(frame, row)}: duplicate timestamp, same as row {row - 1} "
            f"({_count_text(int(same.sum()))})"
        )
    back = diffs < 0
    row = int(np.argmax(back)) + 1
    raise DataError(
        f"{_where(frame, row)}: timestamp is earlier than row {row - 1} "
        f"({frame['timestamp'].iloc[row - 1]}); timestamps must be strictly increasing "
        f"({_count_text(int(back.sum()))})"
    )


def _check_values(
    frame: pd.DataFrame, o: FloatArray, h: FloatArray, low: FloatArray, c: FloatArray, v: FloatArray
) -> None:
    # Cheap passes decide clean data; the precise checks below only run on bad data.
    # NaN fails every `>=`/`<=` below, and with low <= open, close <= high finite,
    # only high, low and volume need an explicit infinity check.
    with np.errstate(invalid="ignore"):
        clean = (
            h.max() < np.inf
            and low.min() > -np.inf
            and v.max() < np.inf
            and (h >= o).all()
            and (h >= c).all()
            and (low <= o).all()
            and (low <= c).all()
            and (v >= 0).all()
            and low.min() > 0
        )
    if clean:
        return
    finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(low) & np.isfinite(c) & np.isfinite(v)
    if not finite.all():
        row = int(np.argmin(finite))
        name, value = next(
            (name, arr[row])
            for name, arr in zip(VALUE_COLUMNS, (o, h, low, c, v), strict=True)
            if not np.isfinite(arr[row])
        )
        raise DataError(
            f"{_where(frame, row)}: {name} is {float(value)!r} "
            f"({_count_text(int((~finite).sum()))})"
        )
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    checks: tuple[tuple[npt.NDArray[np.bool_], str], ...] = (
        (h < low, "high {h!r} < low {low!r}"),
        (h < top, "high {h!r} < max(open, close) {top!r}"),
        (low > bottom, "low {low!r} > min(open, close) {bottom!r}"),
        (v < 0, "volume {v!r} is negative"),
        (low <= 0, "low {low!r} is not a price (prices must be > 0)"),
    )
    for bad, template in checks:
        if bad.any():
            row = int(np.argmax(bad))
            values = {
                "h": float(h[row]),
                "low": float(low[row]),
                "top": float(top[row]),
                "bottom": float(bottom[row]),
                "v": float(v[row]),
            }
            raise DataError(
                f"{_where(frame, row)}: {template.format(**values)} ({_count_text(int(bad.sum()))})"
            )


def _infer(diffs: npt.NDArray[np.int64], low_diff: int, high_diff: int) -> pd.Timedelta | None:
    if diffs.size == 0:
        return None
    if low_diff == high_diff:  # regular bars: the two reductions already give the answer
        return pd.Timedelta(low_diff, unit="ns")
    return timeframe_from_diffs(diffs)


def _resolve_timeframe(
    inferred: pd.Timedelta | None, timeframe: str | pd.Timedelta | None
) -> pd.Timedelta:
    given = parse_timeframe(timeframe) if timeframe is not None else None
    if inferred is None:
        if given is None:
            raise DataError("cannot infer the timeframe of a single bar; pass the timeframe")
        return given
    if given is not None and given != inferred:
        raise DataError(
            f"timeframe {format_timeframe(given)} was given but the bars are "
            f"{format_timeframe(inferred)} apart (their most common spacing); "
            "pass the data's own timeframe, or resample it with resample_ohlcv"
        )
    return inferred


def _fill(
    ts: npt.NDArray[np.int64],
    values: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray],
    gap_at: npt.NDArray[np.intp],
    missing: npt.NDArray[np.int64],
    tf_ns: int,
) -> pd.DataFrame:
    o, h, low, c, v = values
    counts = np.ones(ts.size, dtype=np.int64)
    counts[gap_at] += missing
    source = np.repeat(np.arange(ts.size), counts)
    first = np.cumsum(counts) - counts
    step = np.arange(source.size) - first[source]
    inserted = step > 0
    close = c[source]
    return pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(ts[source] + step * tf_ns, tz="UTC").as_unit("ns"),
            "open": np.where(inserted, close, o[source]),
            "high": np.where(inserted, close, h[source]),
            "low": np.where(inserted, close, low[source]),
            "close": close,
            "volume": np.where(inserted, 0.0, v[source]),
        }
    )
