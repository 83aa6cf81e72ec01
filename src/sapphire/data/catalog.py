"""A local Parquet catalog of bars: one folder per venue / symbol / timeframe.

Layout under `$SAPPHIRE_HOME/catalog` (or the root given):
`<venue>/<symbol made safe>/<timeframe>/data.parquet` holds the canonical bars and
`meta.json` beside it describes them (symbol as given, venue, timeframe, rows, range,
gaps, tick and lot size, and every import: source file, time, rows added/replaced).
In folder names every character other than letters, digits, `.`, `_` and `-` becomes
`_` ("BTC/USDT:USDT" -> "BTC_USDT_USDT"); venues are stored in lower case.

Re-importing into an existing entry merges: bars at new timestamps are added, and on
equal timestamps the newly imported bar wins (fresh data corrects old data and real
bars replace earlier filled ones). Nothing is dropped silently: each import records
how many existing bars it replaced and how many of those had different values.

`meta.json` also keeps `covered`: the time spans the entry has been filled for, merged
(a file import covers its first bar to the end of its last; a download the span it
asked the exchange for, bars or not), so that `sapphire.data.download` resumes where
it stopped and fills only what no earlier import or download covered.

Funding rates live beside the timeframes, in `<venue>/<symbol made safe>/funding.parquet`
(columns `timestamp`, `rate`), a file `--funding` reads as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sapphire.config import home_subdir
from sapphire.data.errors import DataError
from sapphire.data.funding import normalize_funding, read_funding
from sapphire.data.normalize import VALUE_COLUMNS, normalize_ohlcv
from sapphire.data.readers import ReadOptions, read_ohlcv_with_report
from sapphire.data.timeframes import format_timeframe, parse_timeframe, timestamps_ns
from sapphire.data.timerange import TimeLike, filter_range, parse_range
from sapphire.data.validate import (
    GapPolicy,
    ValidationReport,
    check_gap_policy,
    validate_ohlcv,
)

DATA_FILE = "data.parquet"
META_FILE = "meta.json"
FUNDING_FILE = "funding.parquet"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ImportStats:
    """What one import did to a catalog entry.

    `rows_read`: bars in the file; `added`: bars at timestamps the entry did not have
    (file bars filled by gaps="ffill" included); `replaced`: existing bars overwritten
    by the file's bars at equal timestamps, `changed` of them with different values;
    `filled`: bars inserted by gaps="ffill"; `notes`: what normalising the file did.
    """

    source: str
    imported_at: pd.Timestamp
    rows_read: int
    added: int
    replaced: int
    changed: int
    filled: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogEntry:
    """One venue/symbol/timeframe series in the catalog, as its metadata describes it."""

    symbol: str
    venue: str
    timeframe: str
    rows: int
    start: pd.Timestamp
    end: pd.Timestamp
    path: Path
    tick_size: float | None = None
    lot_size: float | None = None
    gap_count: int = 0
    missing_bars: int = 0
    largest_gap: pd.Timedelta | None = None
    last_import: ImportStats | None = None
    covered: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()

    def describe(self) -> str:
        """Short label: 'symbol (venue timeframe)'."""
        return f"{self.symbol} ({self.venue} {self.timeframe})"


class Catalog:
    """The local store of imported bars, queried by symbol, venue, timeframe and time."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else home_subdir("catalog")

    def import_file(
        self,
        path: str | PathLike[str],
        *,
        symbol: str,
        venue: str,
        timeframe: str | None = None,
        gaps: GapPolicy | str = "keep",
        tick_size: float | None = None,
        lot_size: float | None = None,
        read: ReadOptions | None = None,
    ) -> CatalogEntry:
        """Validate a bar file and store it, merging with the entry's existing bars
        (`read`: how to read an unusual file, see `ReadOptions`)."""
        check_gap_policy(gaps)
        if timeframe is not None:
            parse_timeframe(timeframe)  # bad text is the caller's mistake, not the file's
        symbol, venue = _clean_name(symbol, "symbol"), _clean_name(venue, "venue").lower()
        tick_size = _positive_or_none(tick_size, "tick size")
        lot_size = _positive_or_none(lot_size, "lot size")
        frame, file_report = read_ohlcv_with_report(path, gaps=gaps, timeframe=timeframe, read=read)
        source = str(Path(path).expanduser().resolve())
        return self._store(
            frame, file_report, symbol=symbol, venue=venue, gaps=gaps, source=source,
            tick_size=tick_size, lot_size=lot_size,
        )  # fmt: skip

    def import_frame(
        self,
        frame: pd.DataFrame,
        *,
        symbol: str,
        venue: str,
        timeframe: str,
        source: str,
        covered: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    ) -> CatalogEntry:
        """Validate bars already in memory (e.g. downloaded) and store them as `import_file`
        does; `covered`: the span [start, end) they were asked for, when wider than the bars."""
        symbol, venue = _clean_name(symbol, "symbol"), _clean_name(venue, "venue").lower()
        frame, report = validate_ohlcv(frame, timeframe=timeframe)
        return self._store(
            frame, report, symbol=symbol, venue=venue, gaps="keep", source=source, covered=covered
        )

    def add_covered(
        self, symbol: str, *, venue: str, timeframe: str, span: tuple[pd.Timestamp, pd.Timestamp]
    ) -> CatalogEntry:
        """Record that an existing entry was filled for `span` (a download that found no bars
        there), so the span is not asked for again."""
        entry = self.entry(symbol, venue=venue, timeframe=timeframe)
        folder = entry.path.parent
        meta = _read_meta(folder)
        assert meta is not None  # `entry` found it
        meta["covered"] = _add_span(meta, span)
        text = json.dumps(meta, indent=2)
        _write_atomic(folder / META_FILE, lambda tmp: tmp.write_text(text))
        return _entry(folder, meta)

    def funding_path(self, symbol: str, *, venue: str) -> Path:
        """Where the funding rates of `symbol` on `venue` are kept (whether or not they exist)."""
        symbol, venue = _clean_name(symbol, "symbol"), _clean_name(venue, "venue").lower()
        return self.root / _safe(venue) / _safe(symbol) / FUNDING_FILE

    def store_funding(self, rates: pd.Series, *, symbol: str, venue: str) -> tuple[Path, int]:
        """Merge funding rates (a series indexed by UTC time) into the symbol's funding file,
        new rates winning on equal times; the file's path and how many times were new."""
        path = self.funding_path(symbol, venue=venue)
        new = normalize_funding(
            pd.DataFrame({"timestamp": rates.index, "rate": np.asarray(rates, dtype=float)})
        )
        added = len(new)
        if path.is_file():
            old = read_funding(path)
            added = int((~new.index.isin(old.index)).sum())
            new = pd.concat([old[~old.index.isin(new.index)], new]).sort_index()
        table = pd.DataFrame({"timestamp": new.index, "rate": new.to_numpy()})
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))
        return path, added

    def load_funding(self, symbol: str, *, venue: str) -> pd.Series:
        """The stored funding rates of `symbol` on `venue`; DataError if there are none."""
        path = self.funding_path(symbol, venue=venue)
        if not path.is_file():
            raise DataError(f"no funding rates for {symbol!r} on {venue!r} in the catalog")
        return read_funding(path)

    def _store(
        self,
        frame: pd.DataFrame,
        file_report: ValidationReport,
        *,
        symbol: str,
        venue: str,
        gaps: GapPolicy | str,
        source: str,
        tick_size: float | None = None,
        lot_size: float | None = None,
        covered: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    ) -> CatalogEntry:
        """Merge validated bars into their entry and write data and metadata."""
        tf_text = format_timeframe(file_report.timeframe)
        span = covered or (file_report.start, file_report.end + file_report.timeframe)
        folder = self.root / _safe(venue) / _safe(symbol) / tf_text
        meta = _read_meta(folder)
        if meta is not None and meta["symbol"] != symbol:
            raise DataError(
                f"symbol {symbol!r} would share the folder {folder} with {meta['symbol']!r}; "
                "use a symbol spelling that differs in letters or digits"
            )
        report, added, replaced, changed, filled = file_report, len(frame), 0, 0, 0
        if meta is not None:
            frame, added, replaced, changed = _merge(pd.read_parquet(folder / DATA_FILE), frame)
            frame, report = validate_ohlcv(frame, gaps=gaps, timeframe=file_report.timeframe)
            filled = report.filled_bars
        stats = ImportStats(
            source=source,
            imported_at=pd.Timestamp.now(tz="UTC"),
            rows_read=file_report.rows - file_report.filled_bars,
            added=added,
            replaced=replaced,
            changed=changed,
            filled=file_report.filled_bars + filled,
            notes=file_report.notes,
        )
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / DATA_FILE, lambda tmp: frame.to_parquet(tmp, index=False))
        old = meta or {}
        new_meta = _meta(
            symbol,
            venue,
            tf_text,
            report,
            tick_size if tick_size is not None else old.get("tick_size"),
            lot_size if lot_size is not None else old.get("lot_size"),
            [*old.get("imports", []), _stats_to_json(stats)],
            _add_span(old, span),
        )
        text = json.dumps(new_meta, indent=2)
        _write_atomic(folder / META_FILE, lambda tmp: tmp.write_text(text))
        return _entry(folder, new_meta)

    def entries(self, symbol: str | None = None) -> list[CatalogEntry]:
        """All entries (or those of one symbol), sorted by symbol, venue and timeframe."""
        found = []
        for meta_path in self.root.glob(f"*/*/*/{META_FILE}"):
            meta = _read_meta(meta_path.parent)
            if meta is not None:
                found.append(_entry(meta_path.parent, meta))
        if symbol is not None:
            # An exact spelling wins; otherwise match regardless of case ("btc/usdt").
            asked = symbol.strip()
            exact = [e for e in found if e.symbol == asked]
            found = exact or [e for e in found if e.symbol.lower() == asked.lower()]
        return sorted(
            found, key=lambda e: (e.symbol, e.venue, parse_timeframe(e.timeframe), e.timeframe)
        )

    def entry(
        self, symbol: str, *, venue: str | None = None, timeframe: str | None = None
    ) -> CatalogEntry:
        """The one entry matching symbol (and venue/timeframe); DataError if none or several."""
        candidates = self.entries(symbol)
        if not candidates:
            everything = self.entries()
            if not everything:
                raise DataError(
                    f"{symbol!r} is not in the catalog: the catalog at {self.root} is empty; "
                    "add data with `sapphire data import FILE --symbol S --venue V`"
                )
            listing = ", ".join(e.describe() for e in everything)
            raise DataError(f"{symbol!r} is not in the catalog; it has: {listing}")
        matches = candidates
        if venue is not None:
            matches = [e for e in matches if e.venue == venue.strip().lower()]
        if timeframe is not None:
            wanted = format_timeframe(parse_timeframe(timeframe))
            matches = [e for e in matches if e.timeframe == wanted]
        listing = ", ".join(f"{e.venue} {e.timeframe}" for e in candidates)
        if not matches:
            asked = " ".join(x for x in (venue, timeframe) if x is not None)
            raise DataError(f"{symbol!r} has no {asked} entry in the catalog; it has: {listing}")
        if len(matches) > 1:
            raise DataError(
                f"{symbol!r} is in the catalog more than once ({listing}); choose one with "
                "venue/timeframe (--venue/--timeframe on the command line)"
            )
        return matches[0]

    def load(
        self,
        symbol: str,
        *,
        venue: str | None = None,
        timeframe: str | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
    ) -> pd.DataFrame:
        """Canonical bars of one entry, from `start` (inclusive) to `end` (exclusive)."""
        entry = self.entry(symbol, venue=venue, timeframe=timeframe)
        lower, upper = parse_range(start, end)
        filters: list[tuple[str, str, Any]] = []
        if lower is not None:
            filters.append(("timestamp", ">=", lower))
        if upper is not None:
            filters.append(("timestamp", "<", upper))
        frame = normalize_ohlcv(pd.read_parquet(entry.path, filters=filters or None))
        return filter_range(frame, lower, upper, covers=(entry.start, entry.end))


def _merge(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, int, int, int]:
    """Existing bars plus new ones, new winning on equal timestamps; with the counts."""
    old = normalize_ohlcv(old)
    old_ts, new_ts = timestamps_ns(old["timestamp"]), timestamps_ns(new["timestamp"])
    overlap = np.isin(old_ts, new_ts)
    replaced = int(overlap.sum())
    changed = 0
    if replaced:
        before = old.loc[overlap, list(VALUE_COLUMNS)].to_numpy()
        after = new.iloc[np.searchsorted(new_ts, old_ts[overlap])][list(VALUE_COLUMNS)].to_numpy()
        same = (before == after) | (np.isnan(before) & np.isnan(after))
        changed = int((~same.all(axis=1)).sum())
    merged = pd.concat([old.loc[~overlap], new], ignore_index=True)
    merged = merged.sort_values("timestamp", kind="stable", ignore_index=True)
    return merged, len(new) - replaced, replaced, changed


def _meta(
    symbol: str,
    venue: str,
    timeframe: str,
    report: ValidationReport,
    tick_size: float | None,
    lot_size: float | None,
    imports: list[dict[str, Any]],
    covered: list[list[str]],
) -> dict[str, Any]:
    last = imports[-1]
    return {
        "format": 1,
        "symbol": symbol,
        "venue": venue,
        "timeframe": timeframe,
        "rows": report.rows,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        # The stored bars' gaps: none are left once gaps="ffill" has filled them.
        "gap_count": 0 if report.filled_bars else report.gap_count,
        "missing_bars": 0 if report.filled_bars else report.missing_bars,
        "largest_gap": (
            report.largest_gap.isoformat()
            if report.largest_gap is not None and not report.filled_bars
            else None
        ),
        "source": last["source"],
        "imported_at": last["imported_at"],
        "tick_size": tick_size,
        "lot_size": lot_size,
        "imports": imports,
        "covered": covered,
    }


Span = tuple[pd.Timestamp, pd.Timestamp]


def _spans(meta: dict[str, Any]) -> list[Span]:
    """An entry's covered spans; its first bar to the end of its last when the entry
    predates `covered`."""
    spans = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in meta.get("covered") or []]
    if not spans and "start" in meta:
        step = parse_timeframe(meta["timeframe"])
        spans = [(pd.Timestamp(meta["start"]), pd.Timestamp(meta["end"]) + step)]
    return spans


def _add_span(meta: dict[str, Any], span: Span) -> list[list[str]]:
    """The entry's covered spans with `span` added, overlapping and touching spans merged,
    as ISO text."""
    merged: list[Span] = []
    for lo, hi in sorted([*_spans(meta), span]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return [[lo.isoformat(), hi.isoformat()] for lo, hi in merged]


def _stats_to_json(stats: ImportStats) -> dict[str, Any]:
    return {
        "source": stats.source,
        "imported_at": stats.imported_at.isoformat(),
        "rows_read": stats.rows_read,
        "added": stats.added,
        "replaced": stats.replaced,
        "changed": stats.changed,
        "filled": stats.filled,
        "notes": list(stats.notes),
    }


def _entry(folder: Path, meta: dict[str, Any]) -> CatalogEntry:
    imports = meta.get("imports") or []
    last = imports[-1] if imports else None
    return CatalogEntry(
        symbol=meta["symbol"],
        venue=meta["venue"],
        timeframe=meta["timeframe"],
        rows=int(meta["rows"]),
        start=pd.Timestamp(meta["start"]),
        end=pd.Timestamp(meta["end"]),
        path=folder / DATA_FILE,
        tick_size=meta.get("tick_size"),
        lot_size=meta.get("lot_size"),
        gap_count=int(meta.get("gap_count", 0)),
        missing_bars=int(meta.get("missing_bars", 0)),
        largest_gap=pd.Timedelta(meta["largest_gap"]) if meta.get("largest_gap") else None,
        covered=tuple(_spans(meta)),
        last_import=(
            ImportStats(
                source=last["source"],
                imported_at=pd.Timestamp(last["imported_at"]),
                rows_read=int(last["rows_read"]),
                added=int(last["added"]),
                replaced=int(last["replaced"]),
                changed=int(last["changed"]),
                filled=int(last.get("filled", 0)),
                notes=tuple(last.get("notes", ())),
            )
            if last
            else None
        ),
    )


def _read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"catalog metadata {path} is unreadable ({exc})") from exc
    return meta


def _write_atomic(path: Path, write: Any) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def _clean_name(value: str, what: str) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned or cleaned in {".", ".."}:
        raise DataError(f"bad {what} {value!r}: expected a non-empty name")
    return cleaned


def _positive_or_none(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise DataError(f"bad {what} {value!r}: expected a positive number")
    return number
