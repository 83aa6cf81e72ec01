"""Turn any user table of bars into the canonical OHLCV frame (no validation)."""

from __future__ import annotations

import re
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
# Copy-on-write (always on from pandas 3) lets our frame share columns with the
# caller's safely; without it (pandas 2), the columns are copied.
_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3
#: `frame.attrs` key where a CSV reader records the delimiter it read the file with
DELIMITER_ATTR = "delimiter"

# A date written with numbers only, day and month first in either order: 05/03/2024,
# 5.3.24, 05-03-2024 10:00. Which is the day is decided for the whole column.
_NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?!\d)")
_HEADERLESS_HINT = (
    "; the first row looks like data, not a header: for a file without a header line "
    "(such as a Binance kline export) name its columns with columns (--columns "
    "open_time,open,high,low,close,volume,...)"
)


def normalize_ohlcv(
    df: pd.DataFrame, *, time_column: str | None = None, date_format: str | None = None
) -> pd.DataFrame:
    """Return the canonical OHLCV frame for any user DataFrame of bars (no validation)."""
    return normalize_with_notes(df, time_column=time_column, date_format=date_format)[0]


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


def normalize_with_notes(
    df: pd.DataFrame, *, time_column: str | None = None, date_format: str | None = None
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Canonical frame plus notes on what normalisation did (missing volume, ignored columns).

    `time_column` names the time column when it is none of `TIME_COLUMNS`; `date_format`
    (strftime) is how text times are written (see `to_utc_timestamps`).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of bars, got {type(df).__name__}")
    if is_canonical(df):
        # Shallow under copy-on-write: the caller's frame is never changed through ours.
        return df.copy(deep=not _COPY_ON_WRITE), ()
    if _has_canonical_columns(df):
        # A slice of a canonical frame: only the index needs renumbering, not the data.
        return df.reset_index(drop=True), ()
    notes: list[str] = []
    time_name, time_values = find_time(df, time_column=time_column)
    by_lower = _columns_by_lower_name(df)
    missing = [name for name in PRICE_COLUMNS if name not in by_lower]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; found columns: "
            f"{', '.join(map(str, df.columns)) or '(none)'}{reading_hint(df)}"
        )
    columns: dict[str, object] = {
        "timestamp": to_utc_timestamps(time_values, time_name, date_format=date_format)
    }
    for name in VALUE_COLUMNS:
        if name not in by_lower:
            columns[name] = pd.Series(np.zeros(len(df), dtype=FLOAT))
            notes.append(NOTE_NO_VOLUME)
        elif (values := df[by_lower[name]]).dtype == FLOAT:
            columns[name] = values.reset_index(drop=True)  # lazy: no data copied yet
        else:
            columns[name] = pd.Series(to_float(values, name))
    used = {by_lower[name] for name in VALUE_COLUMNS if name in by_lower}
    if time_name is not None:
        used.add(time_name)
    ignored = [str(column) for column in df.columns if column not in used]
    if ignored:
        notes.append(f"ignored column(s): {', '.join(ignored)}")
    # Under copy-on-write each column stays its own array, shared until either side
    # writes to it: no copy, no stacking into one 2-D block.
    return pd.DataFrame(columns, copy=not _COPY_ON_WRITE), tuple(notes)


def find_time(
    df: pd.DataFrame,
    candidates: Sequence[str] = TIME_COLUMNS,
    *,
    time_column: str | None = None,
    can_name: bool = True,
) -> tuple[str | None, pd.Series]:
    """The time column (`time_column` if given, else the first of `candidates`, any
    case) or a DatetimeIndex; `can_name`: the error tells of `time_column`."""
    by_lower = _columns_by_lower_name(df)
    found = ", ".join(map(str, df.columns)) or "(none)"
    if time_column is not None:
        name = time_column if time_column in df.columns else by_lower.get(time_column.lower())
        if name is None:
            raise DataError(f"no time column {time_column!r} (time_column); found columns: {found}")
        return name, df[name]
    for candidate in candidates:
        if candidate in by_lower:
            name = by_lower[candidate]
            return name, df[name]
    if isinstance(df.index, pd.DatetimeIndex):
        return None, pd.Series(df.index, copy=False)
    named = ", or the column named with time_column (--time-column NAME)" if can_name else ""
    raise DataError(
        f"no time column: expected one of {', '.join(candidates)} (any case) or a "
        f"DatetimeIndex{named}; found columns: {found}{reading_hint(df)}"
    )


def reading_hint(df: pd.DataFrame) -> str:
    """What may have gone wrong reading a file whose columns are not found: a data row
    taken for the header, or a delimiter that is not the file's ('' if nothing)."""
    names = [str(column) for column in df.columns]
    if names and all(_looks_numeric(name) for name in names):
        return _HEADERLESS_HINT
    delimiter = df.attrs.get(DELIMITER_ATTR)
    if delimiter is not None:
        return (
            f"; the file was read with delimiter {delimiter!r}: pass delimiter "
            "(--delimiter) if it uses another one"
        )
    return ""


def _looks_numeric(name: str) -> bool:
    # pandas renames a repeated header name x to x.1, x.2...: 42000.5.1 is 42000.5 again
    return _is_number(name) or _is_number(name.rpartition(".")[0])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_utc_timestamps(
    values: pd.Series, name: str | None = "timestamp", *, date_format: str | None = None
) -> pd.Series:
    """Convert times (ISO text, datetimes, epoch s/ms/us/ns numbers) to datetime64[ns, UTC].

    Text times are read with `date_format` (strftime) when given. Otherwise ISO 8601 text
    is read as such; dates written day and month first in numbers (05/03/2024) are read
    day-first when some first field is above 12 anywhere in the column, month-first when
    some second field is, and refused when nothing in the column tells (pass
    `date_format`): never guessed row by row.
    """
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
        elif date_format is not None:
            result = _from_format(values, label, date_format)
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
        value = values.iloc[row]
        comma = isinstance(value, str) and _is_number(value.replace(",", ".", 1))
        hint = " (a decimal comma: numbers must use a decimal point)" if comma else ""
        raise DataError(f"row {row}: {name} {value!r} is not a number{hint}")
    return numbers


def _from_epoch(values: pd.Series) -> pd.Series:
    numbers = values.to_numpy(dtype=FLOAT, na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    unit: EpochUnit = next((u for limit, u in _EPOCH_UNIT_LIMITS if largest < limit), "ns")
    return pd.to_datetime(values, unit=unit, utc=True)


def _from_format(values: pd.Series, label: str, date_format: str) -> pd.Series:
    text = values.astype("string")
    parsed = pd.to_datetime(text, utc=True, format=date_format, errors="coerce")
    bad = (parsed.isna() & values.notna()).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"row {row}: {label} {values.iloc[row]!r} does not match date_format "
            f"{date_format!r} ({int(bad.sum()):,} such rows)"
        )
    return pd.Series(parsed)


def _from_text(values: pd.Series, label: str) -> pd.Series:
    try:
        return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601"))
    except (ValueError, TypeError):
        pass
    day_first = _day_first(values, label)
    if day_first is not None:
        first = str(values.dropna().iloc[0])
        guessed = pd.tseries.api.guess_datetime_format(first, dayfirst=day_first)
        if guessed is not None:
            try:
                return pd.Series(pd.to_datetime(values, utc=True, format=guessed))
            except (ValueError, TypeError):
                pass
    try:
        return pd.Series(pd.to_datetime(values, utc=True, format="mixed", dayfirst=bool(day_first)))
    except (ValueError, TypeError):
        pass
    parsed = pd.to_datetime(values, utc=True, format="mixed", errors="coerce")
    bad = (parsed.isna() & values.notna()).to_numpy()
    row = int(np.argmax(bad)) if bad.any() else 0
    raise DataError(
        f"row {row}: cannot read {label} {values.iloc[row]!r} as a time (expected ISO 8601 "
        "text such as 2022-01-03T10:05:00Z, a datetime, or epoch seconds/ms/us/ns)"
    )


def _day_first(values: pd.Series, label: str) -> bool | None:
    """Whether numeric day/month dates in `values` are day-first, decided for the whole
    column; None when the column is not written that way. DataError when it cannot tell."""
    text = values.astype("string")
    parts = text.str.extract(_NUMERIC_DATE)
    matched = parts[0].notna().to_numpy()
    if not matched.any():
        return None
    present = values.notna().to_numpy()
    odd = present & ~matched
    if odd.any():
        row = int(np.argmax(odd))
        raise DataError(
            f"row {row}: {label} {values.iloc[row]!r} is not written like row "
            f"{int(np.argmax(matched))} ({values.iloc[int(np.argmax(matched))]!r}); pass "
            "date_format (--date-format, e.g. '%d/%m/%Y %H:%M') for one format throughout"
        )
    first = parts[0].astype("Int64").to_numpy(dtype=np.int64, na_value=0)
    second = parts[1].astype("Int64").to_numpy(dtype=np.int64, na_value=0)
    day_first, month_first = first > 12, second > 12
    if day_first.any() and month_first.any():
        a, b = int(np.argmax(day_first)), int(np.argmax(month_first))
        raise DataError(
            f"{label}: row {a} ({values.iloc[a]!r}) is day-first but row {b} "
            f"({values.iloc[b]!r}) is month-first; pass date_format (--date-format)"
        )
    if day_first.any():
        return True
    if month_first.any():
        return False
    raise DataError(
        f"{label}: dates such as {values.iloc[int(np.argmax(matched))]!r} could be day-first "
        "or month-first and no value in the column tells which; pass date_format "
        "(--date-format '%d/%m/%Y %H:%M' or '%m/%d/%Y %H:%M')"
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
