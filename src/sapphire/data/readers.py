"""Read bar files (CSV, Parquet, Feather) by extension into tables, and into canonical frames."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sapphire.data.errors import DataError
from sapphire.data.normalize import DELIMITER_ATTR
from sapphire.data.validate import GapPolicy

if TYPE_CHECKING:
    from sapphire.data.validate import ValidationReport

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip", ".csv.zst")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
FEATHER_SUFFIXES: tuple[str, ...] = (".feather", ".arrow")
DATA_SUFFIXES: tuple[str, ...] = CSV_SUFFIXES + PARQUET_SUFFIXES + FEATHER_SUFFIXES

#: the delimiters a CSV file is sniffed for (from its first lines) when none is given
DELIMITERS = ",;\t|"
#: errors of a compressed file that ends early or is not what its extension says
_ARCHIVE_ERRORS = (EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, gzip.BadGzipFile)
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReadOptions:
    """How to read a bar file whose layout is not the usual one (all optional).

    `time_column`: the column holding the bar times, when it is not one of timestamp,
    date, time, open_time, datetime. `columns`: names for the columns of a CSV file
    without a header line, in order (a comma-separated string or a sequence; columns
    past the last name are kept as column_N and ignored), e.g. a Binance kline export:
    "open_time,open,high,low,close,volume". `date_format`: the strftime format of text
    times, e.g. "%d/%m/%Y %H:%M" (needed when day and month cannot be told apart).
    `delimiter`: the CSV field delimiter (one character; "\\t" or "tab" for tab); by
    default it is detected from the file's first lines.
    """

    time_column: str | None = None
    columns: tuple[str, ...] | str | None = None
    date_format: str | None = None
    delimiter: str | None = None

    def __post_init__(self) -> None:
        if self.time_column is not None and not str(self.time_column).strip():
            raise DataError("bad time_column '': expected a column name")
        if self.columns is not None:
            names = self.columns.split(",") if isinstance(self.columns, str) else self.columns
            names = tuple(str(name).strip() for name in names)
            if not names or any(not name for name in names):
                raise DataError(
                    f"bad columns {self.columns!r}: expected comma-separated column names "
                    "such as open_time,open,high,low,close,volume"
                )
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise DataError(f"bad columns {self.columns!r}: {', '.join(repeated)} named twice")
            object.__setattr__(self, "columns", names)
        if self.date_format is not None and "%" not in self.date_format:
            raise DataError(
                f"bad date_format {self.date_format!r}: expected strftime directives such "
                "as %d/%m/%Y %H:%M"
            )
        if self.delimiter is not None:
            delimiter = {"\\t": "\t", "tab": "\t"}.get(self.delimiter, self.delimiter)
            if len(delimiter) != 1 or delimiter in '\r\n"' or delimiter.isalnum():
                raise DataError(
                    f"bad delimiter {self.delimiter!r}: expected one character such as , ; | "
                    "or \\t for tab"
                )
            object.__setattr__(self, "delimiter", delimiter)

    @property
    def names(self) -> tuple[str, ...] | None:
        """The header names given for a headerless file (`columns`), as a tuple."""
        return self.columns if isinstance(self.columns, tuple) else None


NO_OPTIONS = ReadOptions()


def read_ohlcv(
    path: str | PathLike[str],
    *,
    gaps: GapPolicy | str = "keep",
    timeframe: str | pd.Timedelta | None = None,
    read: ReadOptions | None = None,
) -> pd.DataFrame:
    """Read a CSV (also compressed), Parquet or Feather bar file into a validated frame."""
    return read_ohlcv_with_report(path, gaps=gaps, timeframe=timeframe, read=read)[0]


def read_ohlcv_with_report(
    path: str | PathLike[str],
    *,
    gaps: GapPolicy | str = "keep",
    timeframe: str | pd.Timedelta | None = None,
    read: ReadOptions | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Like `read_ohlcv`, also returning the validation report."""
    from sapphire.data.load import load_ohlcv  # load builds on this module

    return load_ohlcv(Path(path), gaps=gaps, timeframe=timeframe, read=read)


def is_data_file_name(path: str | PathLike[str]) -> bool:
    """Whether a name ends in a supported data-file extension."""
    return Path(path).name.lower().endswith(DATA_SUFFIXES)


def read_table(path: str | PathLike[str], read: ReadOptions | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or Feather file as it is (no normalisation), chosen by extension.

    A CSV file's delimiter is `read.delimiter`, else sniffed from its first lines among
    , ; tab | (comma when that is inconclusive); it is recorded in `frame.attrs`.
    `read.columns` names the columns of a CSV file without a header line.
    """
    options = read or NO_OPTIONS
    file = Path(path).expanduser()
    name = file.name.lower()
    if not name.endswith(DATA_SUFFIXES):
        raise DataError(
            f"{file}: unsupported file type; expected one of {', '.join(DATA_SUFFIXES)}"
        )
    if not file.is_file():
        raise DataError(f"file not found: {file}")
    is_csv = name.endswith(CSV_SUFFIXES)
    if options.names is not None and not is_csv:
        raise DataError(
            f"{file}: columns names the columns of a CSV file without a header line; "
            "this file stores its own column names"
        )
    try:
        if is_csv:
            return _read_csv(file, options)
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(file)
        return pd.read_feather(file)
    except DataError:
        raise
    except _ARCHIVE_ERRORS as exc:
        why = str(exc) or type(exc).__name__
        raise DataError(
            f"{file}: corrupt or truncated {_archive_kind(name)} file ({why}); "
            "download or copy it again"
        ) from exc
    except (OSError, ValueError, ImportError, pd.errors.ParserError) as exc:
        raise DataError(f"{file}: cannot read the file ({exc})") from exc


def _read_csv(file: Path, options: ReadOptions) -> pd.DataFrame:
    delimiter = options.delimiter or sniff_delimiter(file)
    names = options.names
    try:
        if names is None:
            frame = pd.read_csv(file, sep=delimiter)
        else:
            frame = pd.read_csv(file, sep=delimiter, header=None)
            if len(names) > frame.shape[1]:
                raise DataError(
                    f"{file}: columns gives {len(names)} names but the file has "
                    f"{frame.shape[1]} column(s) with delimiter {delimiter!r}"
                )
            extra = [f"column_{i + 1}" for i in range(len(names), frame.shape[1])]
            frame.columns = pd.Index([*names, *extra])
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{file}: cannot read the file with delimiter {delimiter!r} ({exc}); "
            "pass the delimiter (--delimiter) if it is another one"
        ) from exc
    frame.attrs[DELIMITER_ATTR] = delimiter
    return frame


def sniff_delimiter(file: Path) -> str:
    """The delimiter of a CSV file (also compressed), guessed from its first lines among
    , ; tab | (comma when the lines do not tell)."""
    head = _read_head(file)
    lines = head.decode("utf-8", errors="replace").splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle
    sample = "\n".join(lines[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _read_head(file: Path) -> bytes:
    """The first bytes of a file's (decompressed) content."""
    name = file.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(file) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if not members:
                raise DataError(f"{file}: the zip archive holds no file")
            with archive.open(members[0]) as fh:
                return fh.read(_SNIFF_BYTES)
    with _open_binary(file, name) as fh:
        head: bytes = fh.read(_SNIFF_BYTES)
    return head


def _open_binary(file: Path, name: str) -> io.BufferedIOBase:
    if name.endswith(".gz"):
        return gzip.open(file, "rb")
    if name.endswith(".bz2"):
        return bz2.open(file, "rb")
    if name.endswith(".xz"):
        return lzma.open(file, "rb")
    if name.endswith(".zst"):
        import zstandard  # optional, as for pandas itself

        return zstandard.open(file, "rb")  # type: ignore[no-any-return,unused-ignore]
    return open(file, "rb")


def _archive_kind(name: str) -> str:
    for suffix, kind in ((".gz", "gzip"), (".bz2", "bzip2"), (".xz", "xz"), (".zip", "zip")):
        if name.endswith(suffix):
            return kind
    return "compressed" if name.endswith(".zst") else "data"
