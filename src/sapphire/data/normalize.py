"""Turn any user table of bars into the canonical OHLCV frame (no validation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from sapphire.data.errors import DataError

OHLCV_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TIME_COLUMNS: tuple[str, ...] = ("timestamp", "date", "time", "open_time", "datetime")
TIMESTAMP_DTYPE = pd.DatetimeTZDtype(unit="ns", tz="UTC")
FLOAT = np.dtype("float64")

# Epoch numbers: the largest magnitude decides the unit. 1e11 s is the year 5138 while
# 1e11 ms is 1973, so each unit owns three decades of realistic market-data dates.
EpochUnit = Literal["s", "ms", "us", "ns"]
_EPOCH_UNIT_LIMITS: tuple[tuple[float, EpochUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))

NOTE_NO_VOLUME = "no volume column: volume set to 0.0"


def normalize_ohlcv(df: pd.DataFrame) -> pd.DataFrame:
    """Return the canonical OHLCV frame for any user DataFrame of bars (no validation)."""
    return normalize_with_notes(df)[0]


def is_canonical(df: pd.DataFrame) -> bool:
    """Whether a frame already has the canonical columns, dtypes and RangeIndex."""
    index = df.index
    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and _has_canonical_columns(df)
    )


def _has_canonical_columns(df: pd.DataFrame) -> bool:
    return (
        tuple(df.columns) == OHLCV_COLUMNS
        and df.dtypes.iloc[0] == TIMESTAMP_DTYPE
        and all(dtype == FLOAT for dtype in df.dtypes.iloc[1:])
    )


def normalize_with_notes(df: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Canonical frame plus notes on what normalisation did (missing volume, ignored columns)."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of bars, got {type(df).__name__}")
    if is_canonical(df):
        # Shallow: under copy-on-write the caller's frame is never changed through ours.
        return df.copy(deep=False), ()
    if _has_canonical_columns(df):
        # A slice of a canonical frame: only the index needs renumbering, not the data.
        return df.reset_index(drop=True), ()
    notes: list[str] = []
    time_name, time_values = find_time(df)
    by_lower = _columns_by_lower_name(df)
    missing = [name for name in PRICE_COLUMNS if name not in by_lower]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; found columns: "
            f"{', '.join(map(str, df.columns)) or '(none)'}"
        )
    columns: dict[str, object] = {"timestamp": to_utc_timestamps(time_values, time_name)}
    for name in VALUE_COLUMNS:
        if name in by_lower:
            columns[name] = to_float(df[by_lower[name]], name)
        else:
            columns[name] = np.zeros(len(df), dtype=FLOAT)
            notes.append(NOTE_NO_VOLUME)
    used = {by_lower[name] for name in VALUE_COLUMNS if name in by_lower}
    if time_name is not None:
        used.add(time_name)
    ignored = [str(column) for column in df.columns if column not in used]
    if ignored:
        notes.append(f"ignored column(s): {', '.join(ignored)}")
    return pd.DataFrame(columns), tuple(notes)


def find_time(
    df: pd.DataFrame, candidates: Sequence[str] = TIME_COLUMNS
) -> tuple[str | None, pd.Series]:
    """The time column (first of `candidates`, case-insensitive) or a DatetimeIndex."""
    by_lower = _columns_by_lower_name(df)
    for candidate in candidates:
        if candidate in by_lower:
            name = by_lower[candidate]
            return name, df[name]
    if isinstance(df.index, pd.DatetimeIndex):
        return None, pd.Series(df.index, copy=False)
    raise DataError(
        f"no time column: expected one of {', '.join(candidates)} (any case) or a "
        f"DatetimeIndex; found columns: {', '.join(map(str, df.columns)) or '(none)'}"
    )


def to_utc_timestamps(values: pd.Series, name: str | None = "timestamp") -> pd.Series:
    """Convert times (ISO text, datetimes, epoch s/ms/us/ns numbers) to datetime64[ns, UTC]."""
    label = name if name is not None else "index"
    values = values.reset_index(drop=True)
    dtype = values.dtype
    try:
        if isinstance(dtype, pd.DatetimeTZDtype):
            result = values.dt.tz_convert("UTC")
        elif dtype.kind == "M":
            result = values.dt.tz_localize("UTC")
        elif pd.api.types.is_bool_dtype(dtype):
            raise DataError(f"time column {label!r} holds booleans, not times")
        elif pd.api.types.is_numeric_dtype(dtype):
            result = _from_epoch(values)
        else:
            result = _from_text(values, label)
        result = result.astype(TIMESTAMP_DTYPE)
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise DataError(f"time column {label!r}: value out of range ({exc})") from exc
    missing = result.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"row {row}: {label} is missing ({values.iloc[row]!r})")
    return result.rename("timestamp")


def to_float(values: pd.Series, name: str) -> np.ndarray:
    """A column as float64 (a view when it already is); text that is not a number -> DataError."""
    if values.dtype == FLOAT:
        return values.to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=FLOAT, na_value=np.nan)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=FLOAT, na_value=np.nan)
    bad = np.isnan(numbers) & values.notna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"row {row}: {name} {values.iloc[row]!r} is not a number")
    return numbers


def _from_epoch(values: pd.Series) -> pd.Series:
    numbers = values.to_numpy(dtype=FLOAT, na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    unit: EpochUnit = next((u for limit, u in _EPOCH_UNIT_LIMITS if largest < limit), "ns")
    return pd.to_datetime(values, unit=unit, utc=True)


def _from_text(values: pd.Series, label: str) -> pd.Series:
    for fmt in ("ISO8601", "mixed"):
        try:
            return pd.Series(pd.to_datetime(values, utc=True, format=fmt))
        except (ValueError, TypeError):
            continue
    parsed = pd.to_datetime(values, utc=True, format="mixed", errors="coerce")
    bad = (parsed.isna() & values.notna()).to_numpy()
    row = int(np.argmax(bad)) if bad.any() else 0
    raise DataError(
        f"row {row}: cannot read {label} {values.iloc[row]!r} as a time (expected ISO 8601 "
        "text such as 2022-01-03T10:05:00Z, a datetime, or epoch seconds/ms/us/ns)"
    )


def _columns_by_lower_name(df: pd.DataFrame) -> dict[str, str]:
    """Lower-case name -> actual column; an exact lower-case match beats other spellings."""
    mapping: dict[str, str] = {}
    for column in df.columns:
        if not isinstance(column, str):
            continue
        lower = column.lower()
        if lower not in mapping or column == lower:
            mapping[lower] = column
    return mapping
