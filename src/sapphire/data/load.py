"""One entry point for bars: a DataFrame, a file, or a catalog symbol."""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from pathlib import Path

import pandas as pd

from sapphire.data.catalog import Catalog
from sapphire.data.errors import DataError
from sapphire.data.normalize import normalize_with_notes
from sapphire.data.readers import NO_OPTIONS, ReadOptions, is_data_file_name, read_table
from sapphire.data.samples import SAMPLE, SAMPLE_PATH
from sapphire.data.timeframes import format_timeframe
from sapphire.data.timerange import TimeLike, filter_range, parse_range
from sapphire.data.validate import (
    GapPolicy,
    ValidationReport,
    check_gap_policy,
    validate_ohlcv,
)


def load_ohlcv(
    source: pd.DataFrame | str | PathLike[str],
    *,
    gaps: GapPolicy | str = "keep",
    start: TimeLike = None,
    end: TimeLike = None,
    venue: str | None = None,
    timeframe: str | pd.Timedelta | None = None,
    catalog: Catalog | None = None,
    read: ReadOptions | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validated canonical bars and their report, from a DataFrame, a file or a catalog symbol.

    A `Path`, or a string naming an existing file or ending in a data-file extension
    (.csv, .csv.gz, .parquet, .feather...), is read as a file; any other string is a
    catalog symbol such as "BTC/USDT:USDT", picked by `venue`/`timeframe` when the
    catalog holds several. `start` is inclusive and `end` exclusive (naive times are
    UTC); the cut happens before validation, so gaps are counted inside the range only.
    For a DataFrame or file, `timeframe` must agree with the data; `venue` is unused.
    `read` says how to read an unusual file or frame (`ReadOptions`: time column,
    column names of a headerless CSV, date format, delimiter).
    `"sample"` is the bundled BTC-PERP month (`resolve_source`).
    """
    check_gap_policy(gaps)
    options = read or NO_OPTIONS
    source = resolve_source(source)  # type: ignore[assignment]
    lower, upper = parse_range(start, end)
    if isinstance(source, pd.DataFrame):
        label, table = "", source
    elif is_file_source(source):
        label, table = f"{Path(source).name}: ", read_table(source, options)
    elif isinstance(source, str):
        chosen = catalog if catalog is not None else Catalog()
        wanted = format_timeframe(timeframe) if isinstance(timeframe, pd.Timedelta) else timeframe
        table = chosen.load(source, venue=venue, timeframe=wanted, start=lower, end=upper)
        label = f"{source}: "
    else:
        raise DataError(
            f"cannot load bars from a {type(source).__name__}: expected a DataFrame, a file "
            "path or a catalog symbol"
        )
    try:
        frame, notes = normalize_with_notes(
            table, time_column=options.time_column, date_format=options.date_format
        )
        frame = filter_range(frame, lower, upper)
        frame, report = validate_ohlcv(frame, gaps=gaps, timeframe=timeframe)
    except DataError as exc:
        raise DataError(f"{label}{exc}") from exc
    return frame, replace(report, notes=notes + report.notes)


def resolve_source(source: object) -> object:
    """`source` with the name `"sample"` replaced by the bundled sample's path (the one
    place that name is resolved)."""
    return SAMPLE_PATH if isinstance(source, str) and source == SAMPLE else source


def is_file_source(source: object) -> bool:
    """True when `load_ohlcv` reads `source` as a file rather than a catalog symbol."""
    source = resolve_source(source)
    if isinstance(source, PathLike):
        return True
    return isinstance(source, str) and (is_data_file_name(source) or Path(source).is_file())
