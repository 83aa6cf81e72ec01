"""Start/end arguments: parse them (naive means UTC) and cut frames to [start, end)."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.timeframes import timestamps_ns

TimeLike = str | int | float | date | datetime | np.datetime64 | pd.Timestamp | None


def parse_time(value: TimeLike, what: str = "time") -> pd.Timestamp | None:
    """Anything `pd.Timestamp` accepts as a UTC Timestamp (naive means UTC); None stays None."""
    if value is None:
        return None
    problem = f"bad {what} {value!r}: expected a date or time such as 2022-01-03"
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(problem) from exc
    if stamp is pd.NaT:
        raise DataError(problem)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_range(start: TimeLike, end: TimeLike) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Parse start (inclusive) and end (exclusive); DataError unless start < end."""
    lower, upper = parse_time(start, "start"), parse_time(end, "end")
    if lower is not None and upper is not None and lower >= upper:
        raise DataError(f"start {lower} is not before end {upper}")
    return lower, upper


def filter_range(
    frame: pd.DataFrame,
    lower: pd.Timestamp | None,
    upper: pd.Timestamp | None,
    *,
    covers: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Bars with lower <= timestamp < upper; DataError if that leaves none."""
    if lower is None and upper is None:
        return frame
    ts = timestamps_ns(frame["timestamp"])
    keep = np.ones(ts.size, dtype=bool)
    if lower is not None:
        keep &= ts >= lower.value
    if upper is not None:
        keep &= ts < upper.value
    if not keep.all():
        frame = frame.loc[keep].reset_index(drop=True)
    if len(frame) == 0:
        if covers is None and ts.size:
            covers = (frame_bound(ts[0]), frame_bound(ts[-1]))
        span = f"; the data covers {covers[0]} to {covers[1]}" if covers else ""
        raise DataError(f"no bars from {lower or 'the start'} to {upper or 'the end'}{span}")
    return frame


def frame_bound(ns: int | np.int64) -> pd.Timestamp:
    """A nanosecond epoch value as a UTC Timestamp."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")
