"""Market data: read, normalise, validate, resample and catalogue OHLCV bars.

The canonical bar frame used everywhere in Sapphire has a RangeIndex and exactly the
columns `timestamp` (datetime64[ns, UTC], bar open time, strictly increasing), `open`,
`high`, `low`, `close` and `volume` (float64).
"""

from __future__ import annotations

from sapphire.data.catalog import Catalog, CatalogEntry, ImportStats
from sapphire.data.errors import DataError
from sapphire.data.funding import normalize_funding, read_funding
from sapphire.data.load import is_file_source, load_ohlcv, resolve_source
from sapphire.data.normalize import OHLCV_COLUMNS, normalize_ohlcv
from sapphire.data.readers import ReadOptions, read_ohlcv
from sapphire.data.resample import resample_ohlcv
from sapphire.data.timeframes import format_timeframe, infer_timeframe, parse_timeframe
from sapphire.data.validate import ValidationReport, validate_ohlcv

__all__ = [
    "OHLCV_COLUMNS",
    "Catalog",
    "CatalogEntry",
    "DataError",
    "ImportStats",
    "ReadOptions",
    "ValidationReport",
    "format_timeframe",
    "infer_timeframe",
    "is_file_source",
    "load_ohlcv",
    "normalize_funding",
    "normalize_ohlcv",
    "parse_timeframe",
    "read_funding",
    "read_ohlcv",
    "resample_ohlcv",
    "resolve_source",
    "validate_ohlcv",
]
