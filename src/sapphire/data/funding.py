"""Perpetual-futures funding rates as a time series."""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.normalize import TIME_COLUMNS, find_time, to_float, to_utc_timestamps
from sapphire.data.readers import read_table
from sapphire.data.timeframes import timestamps_ns

FUNDING_TIME_COLUMNS: tuple[str, ...] = (*TIME_COLUMNS, "fundingtime", "funding_time")
# `open` last: freqtrade stores funding-rate history as candles with the rate in `open`.
RATE_COLUMNS: tuple[str, ...] = ("rate", "funding_rate", "fundingrate", "open")


def read_funding(path: str | PathLike[str]) -> pd.Series:
    """Read a funding-rate file (CSV, Parquet or Feather) into a rate series indexed by UTC time."""
    return normalize_funding(read_table(path))


def normalize_funding(df: pd.DataFrame) -> pd.Series:
    """Funding-rate series (float rates, strictly increasing UTC DatetimeIndex) from a table."""
    time_name, time_values = find_time(df, FUNDING_TIME_COLUMNS)
    by_lower = {str(column).lower(): column for column in df.columns}
    rate_name = next((by_lower[name] for name in RATE_COLUMNS if name in by_lower), None)
    if rate_name is None:
        raise DataError(
            f"no funding-rate column: expected one of rate, funding_rate, fundingRate or "
            f"open (any case); found columns: {', '.join(map(str, df.columns)) or '(none)'}"
        )
    times = to_utc_timestamps(time_values, time_name)
    rates = to_float(df[rate_name], str(rate_name))
    finite = np.isfinite(rates)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"row {row} ({times.iloc[row]}): funding rate is {float(rates[row])!r}")
    diffs = np.diff(timestamps_ns(times))
    if diffs.size and diffs.min() <= 0:
        row = int(np.argmax(diffs <= 0)) + 1
        what = "duplicate time" if diffs[row - 1] == 0 else "time earlier than the row before"
        raise DataError(
            f"row {row} ({times.iloc[row]}): {what}; funding times must be strictly increasing"
        )
    return pd.Series(rates, index=pd.DatetimeIndex(times, name="timestamp"), name="funding_rate")
