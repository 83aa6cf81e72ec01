"""Aggregate bars to a coarser timeframe on epoch-aligned bins.

Rules:

- The target must be a whole multiple of the data's own timeframe (5m -> 1h, never
  5m -> 7m or 1h -> 5m), and every source bar must start on a multiple of its own
  timeframe, so no source bar straddles two target bins.
- Bins are aligned to the Unix epoch (1970-01-01 00:00 UTC): 1h bins start on the
  hour, 4h bins at 00, 04, 08... UTC, 1d bins at 00:00 UTC. Multiples of a week
  start on Monday 00:00 UTC, as exchanges' weekly bars do (the epoch is a Thursday).
- Each bin is labelled by its open time; open = first open, high = max, low = min,
  close = last close, volume = sum.
- Bins with no source bar are not invented: they stay gaps, as in the source.
- A partial first or last bin (the data starts or ends mid-bin) is kept and
  aggregates the bars that exist; drop it yourself if you need complete bins only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.timeframes import format_timeframe, parse_timeframe, timestamps_ns
from sapphire.data.validate import validate_ohlcv

_WEEK_NS = 7 * 86_400 * 1_000_000_000
_FIRST_MONDAY_NS = 4 * 86_400 * 1_000_000_000  # 1970-01-05 00:00 UTC


def resample_ohlcv(df: pd.DataFrame, timeframe: str | pd.Timedelta) -> pd.DataFrame:
    """Aggregate a bar frame to a whole multiple of its timeframe (see the module rules)."""
    frame, report = validate_ohlcv(df)
    target = parse_timeframe(timeframe)
    base_ns, target_ns = int(report.timeframe.value), int(target.value)
    if target_ns % base_ns:
        raise DataError(
            f"cannot resample {format_timeframe(report.timeframe)} bars to "
            f"{format_timeframe(target)}: the target must be a whole multiple of "
            f"{format_timeframe(report.timeframe)}"
        )
    origin = _FIRST_MONDAY_NS if target_ns % _WEEK_NS == 0 else 0
    ts = timestamps_ns(frame["timestamp"])
    offset = (ts - origin) % base_ns
    if offset.any():
        row = int(np.argmax(offset != 0))
        raise DataError(
            f"row {row} ({frame['timestamp'].iloc[row]}): bar does not start on a "
            f"{format_timeframe(report.timeframe)} boundary, so it would straddle "
            f"{format_timeframe(target)} bins"
        )
    if target_ns == base_ns:
        return frame
    bins = (ts - origin) // target_ns
    starts = np.flatnonzero(np.diff(bins, prepend=bins[0] - 1))
    ends = np.append(starts[1:], ts.size) - 1
    label_ns = bins[starts] * target_ns + origin
    return pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(label_ns.view("M8[ns]")).tz_localize("UTC"),
            "open": frame["open"].to_numpy()[starts],
            "high": np.maximum.reduceat(frame["high"].to_numpy(), starts),
            "low": np.minimum.reduceat(frame["low"].to_numpy(), starts),
            "close": frame["close"].to_numpy()[ends],
            "volume": np.add.reduceat(frame["volume"].to_numpy(), starts),
        }
    )
