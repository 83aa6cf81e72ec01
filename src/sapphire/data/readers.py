"""Read bar files (CSV, Parquet, Feather) by extension into canonical frames."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.validate import GapPolicy, ValidationReport, validate_ohlcv

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".csv.zst")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
FEATHER_SUFFIXES: tuple[str, ...] = (".feather", ".arrow")
DATA_SUFFIXES: tuple[str, ...] = CSV_SUFFIXES + PARQUET_SUFFIXES + FEATHER_SUFFIXES


def read_ohlcv(
    path: str | PathLike[str],
    *,
    gaps: GapPolicy | str = "keep",
    timeframe: str | pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Read a CSV (also compressed), Parquet or Feather bar file into a validated frame."""
    return read_ohlcv_with_report(path, gaps=gaps, timeframe=timeframe)[0]


def read_ohlcv_with_report(
    path: str | PathLike[str],
    *,
    gaps: GapPolicy | str = "keep",
    timeframe: str | pd.Timedelta | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Like `read_ohlcv`, also returning the validation report."""
    table = read_table(path)
    try:
        return validate_ohlcv(table, gaps=gaps, timeframe=timeframe)
    except DataError as exc:
        raise DataError(f"{Path(path).name}: {exc}") from exc


def is_data_file_name(path: str | PathLike[str]) -> bool:
    """Whether a name ends in a supported data-file extension."""
    return Path(path).name.lower().endswith(DATA_SUFFIXES)


def read_table(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a CSV, Parquet or Feather file as it is (no normalisation), chosen by extension."""
    file = Path(path).expanduser()
    name = file.name.lower()
    if not name.endswith(DATA_SUFFIXES):
        raise DataError(
            f"{file}: unsupported file type; expected one of {', '.join(DATA_SUFFIXES)}"
        )
    if not file.is_file():
        raise DataError(f"file not found: {file}")
    try:
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(file)
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(file)
        return pd.read_feather(file)
    except DataError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{file}: cannot read the file ({exc})") from exc
