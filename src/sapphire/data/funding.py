"""Perpetual-futures funding rates as a time series."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
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
#: candle columns that freqtrade's funding files hold as zeros (a price file has prices)
_CANDLE_COLUMNS: tuple[str, ...] = ("high", "low", "close", "volume")
#: The largest believable funding rate per funding interval, as a fraction of notional.
#: The major exchanges (Binance, Bybit) clamp the funding rate of their perpetuals to
#: caps of a few percent per interval at most, while a price read as a rate is in the
#: thousands: a larger value means the file is not a funding file, or holds percentages
#: or basis points instead of fractions.
MAX_FUNDING_RATE = 0.05


def read_funding(path: str | PathLike[str]) -> pd.Series:
    """Read a funding-rate file (CSV, Parquet or Feather) into a rate series indexed by UTC time."""
    return normalize_funding(read_table(path))


def normalize_funding(df: pd.DataFrame) -> pd.Series:
    """Funding-rate series (float rates, strictly increasing UTC DatetimeIndex) from a table.

    The rate is the `rate`, `funding_rate` or `fundingRate` column, else `open` in
    freqtrade's funding candles (whose high, low, close and volume are zeros: a table
    with prices there is a price file, and is refused). Rates are fractions of notional
    per funding interval; one above `MAX_FUNDING_RATE` in size is refused, naming its row.
    """
    time_name, time_values = find_time(df, FUNDING_TIME_COLUMNS, can_name=False)
    by_lower = {str(column).lower(): column for column in df.columns}
    rate_name = next((by_lower[name] for name in RATE_COLUMNS if name in by_lower), None)
    if rate_name is None:
        raise DataError(
            f"no funding-rate column: expected one of rate, funding_rate, fundingRate or "
            f"open (any case); found columns: {', '.join(map(str, df.columns)) or '(none)'}"
        )
    if str(rate_name).lower() == "open":
        _refuse_price_candles(df, by_lower)
    times = to_utc_timestamps(time_values, time_name)
    rates = to_float(df[rate_name], str(rate_name))
    finite = np.isfinite(rates)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"row {row} ({times.iloc[row]}): funding rate is {float(rates[row])!r}")
    implausible = np.abs(rates) > MAX_FUNDING_RATE
    if implausible.any():
        row = int(np.argmax(implausible))
        raise DataError(
            f"row {row} ({times.iloc[row]}): funding rate {float(rates[row])!r} is not a "
            f"funding rate: expected a fraction of notional per interval within "
            f"+-{MAX_FUNDING_RATE} (e.g. 0.0001 for 0.01%); {int(implausible.sum()):,} of "
            f"{rates.size:,} rates in column {rate_name} are beyond it"
        )
    diffs = np.diff(timestamps_ns(times))
    if diffs.size and diffs.min() <= 0:
        row = int(np.argmax(diffs <= 0)) + 1
        what = "duplicate time" if diffs[row - 1] == 0 else "time earlier than the row before"
        raise DataError(
            f"row {row} ({times.iloc[row]}): {what}; funding times must be strictly increasing"
        )
    return pd.Series(rates, index=pd.DatetimeIndex(times, name="timestamp"), name="funding_rate")


def _refuse_price_candles(df: pd.DataFrame, by_lower: Mapping[str, Hashable]) -> None:
    """DataError when candles that carry the rate in `open` have prices or volume in
    their other columns: that is a price file, not freqtrade's funding candles."""
    for name in _CANDLE_COLUMNS:
        if name not in by_lower:
            continue
        values = pd.to_numeric(df[by_lower[name]], errors="coerce").to_numpy(dtype=float)
        nonzero = np.nan_to_num(values, nan=1.0) != 0
        if nonzero.any():
            row = int(np.argmax(nonzero))
            raise DataError(
                f"this is a price file, not a funding file: its {name} column holds "
                f"{float(values[row])!r} at row {row} (funding candles, as "
                "freqtrade stores them, carry the rate in open and zeros elsewhere); a "
                "funding file has a rate, funding_rate or fundingRate column"
            )
