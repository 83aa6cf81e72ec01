"""Download bar and funding-rate history from any ccxt exchange into the catalog.

`download_ohlcv` pages the exchange's `fetch_ohlcv` over a time range and stores the
bars in the catalog entry of venue (the exchange id) / symbol / timeframe, every
`chunk` bars, so that an interruption loses at most one chunk. It resumes: the catalog
remembers the spans each entry was filled for (`CatalogEntry.covered`), and a download
asks the exchange only for the parts of its range that no earlier download or import
covered, before the stored bars as well as after them. A bar still forming (its close
after now) is never stored. Gaps are the missing bars among the stored bars of the
range (`sapphire.data.validate`).

`download_funding` does the same for `fetch_funding_rate_history`, into the symbol's
funding file in the catalog (`Catalog.funding_path`), which `--funding` reads.

Each page asks for one window of time (`since`, and the `until` that ccxt passes on as
the exchange's end parameter): exchanges such as Bybit answer the newest bars of a
range, not the oldest. ccxt's rate limiter spaces the requests (`enableRateLimit`, on
for the exchanges made here); a rate-limit answer or a network error is retried after
a doubling pause (`Retry`), as reading history is safe to repeat.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ccxt
import numpy as np
import pandas as pd

from sapphire.data.catalog import Catalog, CatalogEntry
from sapphire.data.errors import DataError
from sapphire.data.timeframes import format_timeframe, parse_timeframe
from sapphire.data.timerange import TimeLike, parse_range
from sapphire.data.validate import ValidationReport, validate_ohlcv

__all__ = [
    "DownloadResult",
    "FundingResult",
    "Progress",
    "Retry",
    "download_funding",
    "download_ohlcv",
    "missing_spans",
    "open_exchange",
]

T = TypeVar("T")
Span = tuple[int, int]  # [start, end) in epoch milliseconds
_HOUR_MS = 3_600_000
#: bars per page when the exchange does not say how many it gives
DEFAULT_PAGE = 500
#: funding rates per page (Bybit's and Binance's most is 200 and 1000)
FUNDING_PAGE = 200


@dataclass(frozen=True)
class Retry:
    """How often a failed read is tried (`attempts` in all) and the first pause in
    seconds, doubled after each failure; `sleep` waits (tests pass a faster one)."""

    attempts: int = 5
    delay: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


@dataclass(frozen=True)
class Progress:
    """How far a download is: `done_ms` of the `total_ms` it has to fetch, `pages`
    fetched and `rows` received so far."""

    done_ms: int
    total_ms: int
    pages: int
    rows: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class DownloadResult:
    """What a bar download did and what the catalog holds for the range afterwards.

    `start`/`end`: the range asked for (end capped at the last closed bar); `fetched`:
    the spans asked of the exchange (empty when the catalog already covered the range);
    `resumed_from`: the first time asked when the catalog covered part of the range;
    `added`: bars new to the catalog; `rows`: stored bars in the range; `report`: their
    timeframe, first/last bar and gaps (None when the range has no bars)."""

    exchange: str
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    fetched: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
    resumed_from: pd.Timestamp | None
    pages: int
    added: int
    rows: int
    report: ValidationReport | None
    entry: CatalogEntry | None


@dataclass(frozen=True)
class FundingResult:
    """What a funding download did: rates new to the catalog (`added`), rates stored in
    the range (`rows`, from `first` to `last`), and the funding file (`path`)."""

    exchange: str
    symbol: str
    start: pd.Timestamp
    end: pd.Timestamp
    pages: int
    added: int
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    path: Path


def open_exchange(exchange_id: str, url: str | None = None) -> ccxt.Exchange:
    """A ccxt exchange (public data only, rate limited); `url`: a host that speaks the
    exchange's REST API (such as the local Bybit exchange) to use instead of its own."""
    name = exchange_id.strip().lower()
    if name not in ccxt.exchanges:
        raise DataError(f"unknown exchange {exchange_id!r}{_close(name, ccxt.exchanges)}")
    exchange: ccxt.Exchange = getattr(ccxt, name)({"enableRateLimit": True})
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise DataError(f"bad url {url!r}: expected http://host:port or https://host")
        exchange.urls["api"] = _point_at(exchange.urls["api"], url.rstrip("/"))
    return exchange


def download_ohlcv(
    exchange_id: str,
    symbol: str,
    timeframe: str,
    start: TimeLike,
    end: TimeLike = None,
    *,
    catalog: Catalog | None = None,
    exchange: ccxt.Exchange | None = None,
    progress: ProgressCallback | None = None,
    chunk: int = 10_000,
    retry: Retry | None = None,
    now: Callable[[], int] | None = None,
) -> DownloadResult:
    """Fill the catalog with `symbol`'s `timeframe` bars from `start` to `end` (default:
    now) from the ccxt exchange `exchange_id` (or the given `exchange` instance), resuming
    where earlier downloads stopped; `now`: the time in ms (default the exchange's clock)."""
    if chunk < 1:
        raise DataError(f"bad chunk {chunk!r}: expected a number of bars >= 1")
    catalog = catalog if catalog is not None else Catalog()
    exchange = exchange if exchange is not None else open_exchange(exchange_id)
    retry = retry or Retry()
    venue = exchange_id.strip().lower()
    if timeframe not in (exchange.timeframes or {}):
        offered = list(exchange.timeframes or {})
        raise DataError(
            f"timeframe {timeframe!r} is not offered by {venue}{_close(timeframe, offered)}; "
            f"it offers {', '.join(offered) or 'none'}"
        )
    tf_text = format_timeframe(parse_timeframe(timeframe))
    tf_ms = int(exchange.parse_timeframe(timeframe) * 1000)
    cap = (now or exchange.milliseconds)() - tf_ms + 1  # bars opened before this have closed
    lo, hi = _range(start, end, cap)
    market = _market(exchange, symbol, retry)
    entry = _existing(catalog, symbol, venue, tf_text)
    covered = [(_ms(a), _ms(b)) for a, b in entry.covered] if entry is not None else []
    todo = missing_spans((lo, hi), covered)
    resumed = _stamp(todo[0][0]) if todo and todo != [(lo, hi)] else None
    pager = _BarPager(
        exchange, catalog, symbol, venue, timeframe, tf_ms, _page_limit(exchange, market),
        chunk, retry, progress, total=sum(b - a for a, b in todo),
    )  # fmt: skip
    for a, b in todo:
        # Up to now, only what the exchange has sent counts as covered: the bar that
        # just closed may not be published yet.
        pager.fetch(a, b, recent=b == hi == cap)
    entry = _existing(catalog, symbol, venue, tf_text)
    report, rows = None, 0
    if entry is not None:
        stored = catalog.load(symbol, venue=venue, timeframe=tf_text)
        stamps = stored["timestamp"]
        inside = stored[(stamps >= _stamp(lo)) & (stamps < _stamp(hi))].reset_index(drop=True)
        rows = len(inside)
        if rows:
            _frame, report = validate_ohlcv(inside, timeframe=tf_text)
    return DownloadResult(
        exchange=venue,
        symbol=symbol,
        timeframe=tf_text,
        start=_stamp(lo),
        end=_stamp(hi),
        fetched=tuple((_stamp(a), _stamp(b)) for a, b in todo),
        resumed_from=resumed,
        pages=pager.pages,
        added=pager.added,
        rows=rows,
        report=report,
        entry=entry,
    )


class _BarPager:
    """Fetches spans of bars page by page and stores them a chunk at a time."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        catalog: Catalog,
        symbol: str,
        venue: str,
        timeframe: str,
        tf_ms: int,
        limit: int,
        chunk: int,
        retry: Retry,
        progress: ProgressCallback | None,
        total: int,
    ) -> None:
        self.exchange, self.catalog, self.symbol, self.venue = exchange, catalog, symbol, venue
        self.timeframe, self.tf_text = timeframe, format_timeframe(parse_timeframe(timeframe))
        self.tf_ms, self.limit, self.chunk, self.retry = tf_ms, limit, chunk, retry
        self.progress, self.total = progress, total
        self.done = self.pages = self.rows = self.added = 0

    def fetch(self, a: int, b: int, *, recent: bool) -> None:
        """Fetch [a, b) forward and store it; with `recent`, the span after the last bar
        received is not recorded as covered."""
        since, chunk_from, bars_end, pending = a, a, a, []
        while since < b:
            window_end = min(since + self.limit * self.tf_ms, b)
            raw = _retrying(
                self.retry,
                f"{self.venue} fetch_ohlcv {self.symbol} {self.timeframe}",
                self.exchange.fetch_ohlcv,
                self.symbol,
                self.timeframe,
                since=since,
                limit=self.limit,
                params={"until": window_end - 1},
            )
            page = sorted(r for r in raw if since <= int(r[0]) < window_end)
            self.pages, self.rows = self.pages + 1, self.rows + len(page)
            pending.extend(page)
            step_end = window_end
            if page:
                bars_end = int(page[-1][0]) + self.tf_ms
                step_end = min(bars_end, window_end)  # the exchange may give fewer bars
            self.done += step_end - since
            since = step_end
            if len(pending) >= self.chunk:
                self._store(pending, chunk_from, since)
                chunk_from, pending = since, []
            if self.progress is not None:
                self.progress(Progress(self.done, self.total, self.pages, self.rows))
        end = bars_end if recent else b
        if pending:
            self._store(pending, chunk_from, end)
        elif chunk_from < end and self._entry() is not None:
            span = (_stamp(chunk_from), _stamp(end))
            self.catalog.add_covered(
                self.symbol, venue=self.venue, timeframe=self.tf_text, span=span
            )

    def _entry(self) -> CatalogEntry | None:
        return _existing(self.catalog, self.symbol, self.venue, self.tf_text)

    def _store(self, rows: list[Any], start: int, end: int) -> None:
        """Store downloaded bars (ccxt rows) that cover [start, end)."""
        table = np.array([r[:6] for r in rows], dtype=object)
        times, index = np.unique(table[:, 0].astype(np.int64), return_index=True)
        columns = ("open", "high", "low", "close", "volume")
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(times, unit="ms", utc=True).as_unit("ns"),
                **{name: table[index, i + 1].astype(np.float64) for i, name in enumerate(columns)},
            }
        )
        entry = self.catalog.import_frame(
            frame, symbol=self.symbol, venue=self.venue, timeframe=self.tf_text,
            source=f"ccxt {self.venue} fetch_ohlcv", covered=(_stamp(start), _stamp(end)),
        )  # fmt: skip
        assert entry.last_import is not None
        self.added += entry.last_import.added


def download_funding(
    exchange_id: str,
    symbol: str,
    start: TimeLike,
    end: TimeLike = None,
    *,
    catalog: Catalog | None = None,
    exchange: ccxt.Exchange | None = None,
    progress: ProgressCallback | None = None,
    retry: Retry | None = None,
    now: Callable[[], int] | None = None,
) -> FundingResult:
    """Fill the catalog's funding file of `symbol` (a perpetual swap) with its funding
    rates from `start` to `end` (default: now), fetching only times before the first and
    after the last stored rate."""
    catalog = catalog if catalog is not None else Catalog()
    exchange = exchange if exchange is not None else open_exchange(exchange_id)
    retry = retry or Retry()
    venue = exchange_id.strip().lower()
    if not exchange.has.get("fetchFundingRateHistory"):
        raise DataError(f"{venue} offers no funding-rate history through ccxt")
    lo, hi = _range(start, end, (now or exchange.milliseconds)() + 1)
    market = _market(exchange, symbol, retry)
    if not market.get("swap"):
        raise DataError(
            f"{symbol!r} is a {market.get('type')} market on {venue}: funding rates exist only "
            "for perpetual swaps (e.g. BTC/USDT:USDT)"
        )
    path = catalog.funding_path(symbol, venue=venue)
    stored = catalog.load_funding(symbol, venue=venue) if path.is_file() else None
    have = []
    if stored is not None and len(stored):
        have = [(_ms(stored.index[0]), _ms(stored.index[-1]) + 1)]
    todo = missing_spans((lo, hi), have)
    total, done, pages, seen, added = sum(b - a for a, b in todo), 0, 0, 0, 0
    for a, b in todo:
        since, pending = a, []
        # Before the stored rates, keep every page until the span is whole: stored rates
        # must stay one run without holes, as resuming only looks at their first and last.
        per_page = not have or a >= have[0][1]
        while since < b:
            window_end = min(since + FUNDING_PAGE * _HOUR_MS, b)
            raw = _retrying(
                retry,
                f"{venue} fetch_funding_rate_history {symbol}",
                exchange.fetch_funding_rate_history,
                symbol,
                since=since,
                limit=FUNDING_PAGE,
                params={"until": window_end - 1},
            )
            page = sorted(
                (int(r["timestamp"]), float(r["fundingRate"]))
                for r in raw
                if since <= int(r["timestamp"]) < window_end
            )
            pages, seen = pages + 1, seen + len(page)
            pending.extend(page)
            full = len(raw) >= FUNDING_PAGE and page
            next_since = page[-1][0] + 1 if full else window_end
            done += next_since - since
            since = next_since
            if per_page and pending:
                added += _store_funding(catalog, pending, symbol, venue)
                pending = []
            if progress is not None:
                progress(Progress(done, total, pages, seen))
        if pending:
            added += _store_funding(catalog, pending, symbol, venue)
    rows, first, last = 0, None, None
    if path.is_file():
        rates = catalog.load_funding(symbol, venue=venue)
        inside = rates[(rates.index >= _stamp(lo)) & (rates.index < _stamp(hi))]
        rows = len(inside)
        if rows:
            first, last = inside.index[0], inside.index[-1]
    return FundingResult(
        exchange=venue, symbol=symbol, start=_stamp(lo), end=_stamp(hi), pages=pages,
        added=added, rows=rows, first=first, last=last, path=path,
    )  # fmt: skip


def missing_spans(wanted: Span, covered: Sequence[Span]) -> list[Span]:
    """The parts of `wanted` that no span of `covered` holds, in time order."""
    lo, hi = wanted
    out: list[Span] = []
    for a, b in sorted(covered):
        if b <= lo or a >= hi:
            continue
        if a > lo:
            out.append((lo, a))
        lo = max(lo, b)
        if lo >= hi:
            return out
    if lo < hi:
        out.append((lo, hi))
    return out


# ---------------------------------------------------------------------------- helpers
def _range(start: TimeLike, end: TimeLike, cap: int) -> Span:
    """[start, end) in ms from the user's times, end defaulting to and capped at `cap`."""
    if start is None:
        raise DataError("a download needs a start time, such as 2024-01-01")
    lower, upper = parse_range(start, end)
    assert lower is not None
    lo, hi = _ms(lower), min(_ms(upper) if upper is not None else cap, cap)
    if lo >= hi:
        raise DataError(f"nothing to download: start {lower} is not before {_stamp(hi)}")
    return lo, hi


def _market(exchange: ccxt.Exchange, symbol: str, retry: Retry) -> dict[str, Any]:
    markets = _retrying(retry, f"{exchange.id} load_markets", exchange.load_markets)
    if symbol not in markets:
        raise DataError(
            f"unknown symbol {symbol!r} on {exchange.id}{_close(symbol, list(markets))}"
        )
    market: dict[str, Any] = markets[symbol]
    return market


def _page_limit(exchange: ccxt.Exchange, market: dict[str, Any]) -> int:
    """The most bars one fetch_ohlcv gives for this market, as ccxt's features say."""
    features: Any = (exchange.features or {}).get(market.get("type"), {})
    if isinstance(features, dict) and ("linear" in features or "inverse" in features):
        features = features.get("linear" if market.get("linear") else "inverse") or {}
    limit = ((features or {}).get("fetchOHLCV") or {}).get("limit")
    return int(limit) if isinstance(limit, int) and limit > 0 else DEFAULT_PAGE


def _retrying(retry: Retry, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, retried on rate-limit answers and network errors;
    DataError when it keeps failing or fails otherwise."""
    for attempt in range(retry.attempts):
        try:
            return call(*args, **kwargs)
        except ccxt.NetworkError as exc:  # rate limits, timeouts, exchange unavailable
            if attempt + 1 == retry.attempts:
                raise DataError(f"{what} failed {retry.attempts} times; last: {exc}") from exc
            retry.sleep(retry.delay * 2**attempt)
        except ccxt.BaseError as exc:
            raise DataError(f"{what} failed: {exc}") from exc
    raise DataError(f"{what}: attempts={retry.attempts!r}, expected >= 1")


def _store_funding(catalog: Catalog, rows: list[tuple[int, float]], symbol: str, venue: str) -> int:
    times, rates = zip(*dict(rows).items(), strict=True)
    series = pd.Series(rates, index=pd.to_datetime(list(times), unit="ms", utc=True))
    return catalog.store_funding(series, symbol=symbol, venue=venue)[1]


def _existing(catalog: Catalog, symbol: str, venue: str, timeframe: str) -> CatalogEntry | None:
    """The catalog entry of exactly this symbol, venue and timeframe, if there is one."""
    for entry in catalog.entries(symbol):
        if (entry.symbol, entry.venue, entry.timeframe) == (symbol, venue, timeframe):
            return entry
    return None


def _point_at(urls: Any, url: str) -> Any:
    """ccxt's REST URL tree with every URL replaced by `url`."""
    if isinstance(urls, dict):
        return {key: _point_at(value, url) for key, value in urls.items()}
    return url if isinstance(urls, str) else urls


def _close(word: str, choices: Sequence[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=5, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else ""


def _ms(stamp: pd.Timestamp) -> int:
    return math.floor(stamp.value / 1_000_000)


def _stamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")
