"""Bar sizes: parse "5m"-style text, format it back, infer it from timestamps."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.normalize import to_utc_timestamps

_UNITS_NS: dict[str, int] = {
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
    "w": 7 * 86_400 * 1_000_000_000,
}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_timeframe(text: str | pd.Timedelta) -> pd.Timedelta:
    """Parse a bar size such as "1m", "5m", "1h", "4h", "1d" or "1w" into a Timedelta."""
    if isinstance(text, pd.Timedelta):
        if text <= pd.Timedelta(0):
            raise DataError(f"timeframe {text} is not positive")
        return text
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise DataError(
            f"bad timeframe {text!r}: expected a positive whole number and a unit "
            "s, m, h, d or w, such as '1m', '5m', '1h', '4h', '1d', '1w' "
            "(months are not a fixed length and are not supported)"
        )
    return pd.Timedelta(int(match.group(1)) * _UNITS_NS[match.group(2)], unit="ns")


def format_timeframe(timeframe: pd.Timedelta) -> str:
    """Write a Timedelta as the shortest bar-size text ("1m", "4h", "1w"; "1500ms" if needed)."""
    ns = int(timeframe.value)
    if ns <= 0:
        raise DataError(f"timeframe {timeframe} is not positive")
    for unit in ("w", "d", "h", "m", "s"):
        if ns % _UNITS_NS[unit] == 0:
            return f"{ns // _UNITS_NS[unit]}{unit}"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    return f"{ns}ns"


def format_duration(duration: pd.Timedelta) -> str:
    """A duration for people: "4m", "2h45m", "2d2m" (sub-second parts as pandas writes them)."""
    ns = int(duration.value)
    if ns <= 0 or ns % _UNITS_NS["s"]:
        return str(duration)
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, ns = divmod(ns, _UNITS_NS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def infer_timeframe(timestamps: pd.Series | pd.DatetimeIndex | npt.ArrayLike) -> pd.Timedelta:
    """Return the most common positive spacing between consecutive timestamps (ties: smallest)."""
    return timeframe_from_diffs(np.diff(timestamps_ns(timestamps)))


def timeframe_from_diffs(diffs: npt.NDArray[np.int64]) -> pd.Timedelta:
    """The mode of the positive nanosecond differences between consecutive timestamps."""
    if not (diffs > 0).all():
        diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise DataError(
            "cannot infer the timeframe: need at least two distinct, increasing timestamps"
        )
    return pd.Timedelta(int(mode_int64(diffs)), unit="ns")


def mode_int64(values: npt.NDArray[np.int64]) -> np.int64:
    """Most common value of a non-empty int64 array (ties: the smallest)."""
    candidate = values[0]
    # A strict majority is the mode; regular bar data almost always has one, and this
    # check is a single vectorised pass instead of a sort.
    if np.count_nonzero(values == candidate) * 2 > values.size:
        return np.int64(candidate)
    uniques, counts = np.unique(values, return_counts=True)
    return np.int64(uniques[int(np.argmax(counts))])


def timestamps_ns(
    timestamps: pd.Series | pd.DatetimeIndex | npt.ArrayLike,
) -> npt.NDArray[np.int64]:
    """Timestamps as int64 nanoseconds since the epoch (a view, no copy, when already ns)."""
    if isinstance(timestamps, pd.DatetimeIndex):
        index = timestamps
    elif isinstance(timestamps, pd.Series) and timestamps.dtype.kind == "M":
        index = pd.DatetimeIndex(timestamps.array, copy=False)
    else:
        index = pd.DatetimeIndex(to_utc_timestamps(pd.Series(np.asarray(timestamps))))
    if index.unit != "ns":
        index = index.as_unit("ns")
    return np.asarray(index.asi8)
