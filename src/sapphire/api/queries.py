"""Read helpers the portfolio, risk, logs and models routes share: which runs a request
reads, strict query parameters, the JSON types of money and time, paged reads of the ledger,
the run directories, and what the store does not compute itself (round-trip trades, PnL by
period).

A request names one run (`?run_id=`) or none, which reads the runs that are RUNNING now.
A bad value is a 422 naming it; a run that does not exist is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import HTTPException, Query, status
from pydantic import PlainSerializer, WithJsonSchema

from sapphire.domain.enums import OrderSide
from sapphire.domain.identifiers import InstrumentId
from sapphire.engine.session import session_dir
from sapphire.portfolio import Position
from sapphire.store import FillRecord, RunInfo, RunStatus, Store

__all__ = [
    "MAX_PAGE",
    "RUN_ID_PATTERN",
    "DecimalStr",
    "Limit",
    "Offset",
    "Period",
    "PeriodPnl",
    "Replay",
    "RoundTrip",
    "RunIdQuery",
    "SinceQuery",
    "UntilQuery",
    "check_run_id",
    "decimal_text",
    "multipliers",
    "ns_of",
    "page",
    "parse_instant",
    "parse_window",
    "period_pnl",
    "replay",
    "run_dir",
    "runs_for",
    "unprocessable",
    "utc",
]

#: what a run id may hold in a request (the run directories' rule, `engine.session`)
RUN_ID_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
MAX_PAGE = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NS = 2**63 - 1
_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits (never an exponent: `1E+2` -> `100`)."""
    return format(value, "f")


#: a Decimal that travels as a JSON string of plain digits ("0.01", "-12.5")
DecimalStr = Annotated[
    Decimal,
    PlainSerializer(decimal_text, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_PATTERN, "examples": ["0.01"]}),
]

RunIdQuery = Annotated[
    str | None,
    Query(
        description="One run (letters, digits, '.', '_', '-'); default: the runs RUNNING now.",
        json_schema_extra={"pattern": RUN_ID_PATTERN},
    ),
]
_INSTANT = "ISO-8601 date or date-time, e.g. 2022-01-03 or 2022-01-03T10:00:00Z (UTC if no offset)"
_TIME_SCHEMA = {"format": "date-time"}
SinceQuery = Annotated[
    str | None,
    Query(
        description=f"From this time on (inclusive): {_INSTANT}.", json_schema_extra=_TIME_SCHEMA
    ),
]
UntilQuery = Annotated[
    str | None,
    Query(description=f"Before this time (exclusive): {_INSTANT}.", json_schema_extra=_TIME_SCHEMA),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Rows to skip (paging).")]


def unprocessable(detail: str) -> HTTPException:
    """A 422 for a bad request value (the message names it)."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def check_run_id(value: str) -> str:
    """`value` if it is a well-formed run id, else 422 naming it."""
    if not _RUN_ID.fullmatch(value):
        raise unprocessable(
            f"run_id {value!r} is invalid: expected 1..100 letters, digits, '.', '_' or '-'"
        )
    return value


def runs_for(store: Store, run_id: str | None) -> list[RunInfo]:
    """The run `run_id` (422 if malformed, 404 if unknown), or the RUNNING runs."""
    if run_id is None:
        return store.runs(RunStatus.RUNNING)
    run = check_run_id(run_id)
    try:
        return [store.run(run)]
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no run {run!r}") from None


#: the folder of `$SAPPHIRE_HOME` each mode's sessions keep their run directories in
_SESSION_FOLDERS = {"PAPER": "paper", "LIVE": "live", "TESTNET": "live"}


def run_dir(home: Path, run: RunInfo) -> Path | None:
    """The run's directory (a paper or live session's venue state, logs and drift files):
    the one the run recorded if it lies inside `home`, else where sessions put it under
    `home`; None for a mode without one (a backtest). Never a path outside `home`."""
    root = home.resolve()
    recorded = run.config.get("run_dir")
    if isinstance(recorded, str):
        path = Path(recorded).resolve()
        if path.is_relative_to(root):
            return path
    folder = _SESSION_FOLDERS.get(run.mode.value)
    if folder is None:
        return None
    try:
        return session_dir(folder, run.run_id, root)
    except ValueError:  # a run id a session could not have made
        return None


def utc(ts_ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def ns_of(moment: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch (microsecond precision)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def parse_instant(value: str | None, name: str) -> int | None:
    """An ISO-8601 date or date-time (UTC when it has no offset) as nanoseconds, or 422
    naming the value; times before 1970 or after 2262 (beyond int64 nanoseconds) are
    clamped to those bounds."""
    if value is None:
        return None
    text = value.strip().upper()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or not text[:4].isdigit():
        raise unprocessable(
            f"{name} {value!r} is not a date: expected ISO-8601 such as 2022-01-03 or "
            "2022-01-03T10:00:00Z"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max(ns_of(moment), 0), _MAX_NS)


def parse_window(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """`since` and `until` as nanoseconds, 422 if either is bad (until at or before since
    is an empty window)."""
    return parse_instant(since, "since"), parse_instant(until, "until")


def page(
    store: Store,
    table: Any,
    run_ids: Sequence[str],
    *,
    start_ns: int | None,
    end_ns: int | None,
    limit: int,
    offset: int,
) -> tuple[list[Any], int | None]:
    """Rows of a ledger table (`FillRow`, `EquitySnapshotRow`, `RiskEventRow`: a run_id,
    ts_ns and id each) of the runs, by time, in [start_ns, end_ns); and the offset of the
    next page (None on the last)."""
    if not run_ids:
        return [], None
    query = sa.select(table).where(table.run_id.in_(list(run_ids)))
    if start_ns is not None:
        query = query.where(table.ts_ns >= start_ns)
    if end_ns is not None:
        query = query.where(table.ts_ns < end_ns)
    query = query.order_by(table.ts_ns, table.id).offset(offset).limit(limit + 1)
    with store.engine.connect() as conn:
        rows = list(conn.execute(query).all())
    more = len(rows) > limit
    return rows[:limit], (offset + limit if more else None)


# -- round trips ---------------------------------------------------------------------------


@dataclass
class RoundTrip:
    """One trade: a position of a strategy in an instrument from flat back to flat (or
    through zero, a flip, which closes it and opens the next); open while `closed_ns` is
    None. `realized_pnl` is the price PnL (the portfolio's accounting), fees apart;
    funding is not attributed to trades."""

    run_id: str
    strategy_id: str
    instrument_id: str
    side: Literal["LONG", "SHORT"]
    opened_ns: int
    entry_qty: Decimal = Decimal(0)
    entry_value: Decimal = Decimal(0)
    exit_qty: Decimal = Decimal(0)
    exit_value: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    fills: int = 0
    closed_ns: int | None = None

    @property
    def entry_px(self) -> Decimal:
        return self.entry_value / self.entry_qty

    @property
    def exit_px(self) -> Decimal | None:
        return None if self.exit_qty == 0 else self.exit_value / self.exit_qty


@dataclass
class Replay:
    """The fills replayed: the trades they make (in the order they opened) and the price
    PnL each fill realised (in the fills' order)."""

    trades: list[RoundTrip]
    realized: list[Decimal]


def replay(fills: Sequence[FillRecord], multipliers: dict[str, Decimal] | None = None) -> Replay:
    """Replay the fills (by time) through `sapphire.portfolio.Position`, one per run,
    strategy and instrument (the portfolio's accounting), cutting them into trades."""
    positions: dict[tuple[str, str, str], Position] = {}
    current: dict[tuple[str, str, str], RoundTrip] = {}
    out = Replay([], [])
    for fill in fills:
        key = (fill.run_id, str(fill.strategy_id), str(fill.instrument_id))
        pos = positions.get(key)
        if pos is None:
            multiplier = (multipliers or {}).get(key[2], Decimal(1))
            pos = positions[key] = Position(fill.instrument_id, multiplier=multiplier)
        before = pos.quantity
        realized = pos.apply_fill(fill.side, fill.last_qty, fill.last_px, fill.fee, fill.ts_ns)
        out.realized.append(realized)
        sign = 1 if fill.side is OrderSide.BUY else -1
        qty, px, fee = fill.last_qty, fill.last_px, fill.fee
        trade = current.get(key)
        if before == 0 or (before > 0) == (sign > 0):  # opens or adds
            if trade is None:
                trade = current[key] = _open(key, sign, fill.ts_ns, out.trades)
            trade.entry_qty += qty
            trade.entry_value += qty * px
            trade.fees += fee
            trade.fills += 1
            continue
        assert trade is not None  # a position is open, so is its trade
        closed = min(qty, abs(before))
        share = fee if closed == qty else fee * closed / qty
        trade.exit_qty += closed
        trade.exit_value += closed * px
        trade.realized_pnl += realized
        trade.fees += share
        trade.fills += 1
        if pos.quantity == 0 or (pos.quantity > 0) != (before > 0):
            trade.closed_ns = fill.ts_ns
            del current[key]
        rest = qty - closed
        if rest > 0:  # a flip: the rest of the fill opens the other side
            flipped = current[key] = _open(key, sign, fill.ts_ns, out.trades)
            flipped.entry_qty = rest
            flipped.entry_value = rest * px
            flipped.fees = fee - share
            flipped.fills = 1
    return out


def _open(key: tuple[str, str, str], sign: int, ts_ns: int, trades: list[RoundTrip]) -> RoundTrip:
    trade = RoundTrip(key[0], key[1], key[2], "LONG" if sign > 0 else "SHORT", ts_ns)
    trades.append(trade)
    return trade


def multipliers(store: Store, instrument_ids: Iterable[str]) -> dict[str, Decimal]:
    """The contract multiplier of each stored instrument (1 for those not stored)."""
    out: dict[str, Decimal] = {}
    for iid in set(instrument_ids):
        try:
            out[iid] = store.instrument(InstrumentId.parse(iid)).multiplier
        except ValueError:
            out[iid] = Decimal(1)
    return out


# -- PnL by period -------------------------------------------------------------------------

Period = Literal["day", "week", "month"]


def period_start(ts_ns: int, by: Period) -> datetime:
    """The UTC start of the day, ISO week (Monday) or month holding `ts_ns`."""
    day = utc(ts_ns).replace(hour=0, minute=0, second=0, microsecond=0)
    if by == "day":
        return day
    if by == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(start: datetime, by: Period) -> datetime:
    """The start of the period after the one starting at `start`."""
    if by == "day":
        return start + timedelta(days=1)
    if by == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_label(start: datetime, by: Period) -> str:
    """`2022-01-03`, `2022-W01` (ISO week) or `2022-01`."""
    if by == "day":
        return start.date().isoformat()
    if by == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year}-{start.month:02d}"


@dataclass
class PeriodPnl:
    """One period of a run: the equity change (from the last snapshot before the period to
    its last snapshot; None without snapshots) and the fills' realised PnL and fees."""

    run_id: str
    label: str
    start: datetime
    end: datetime
    currency: str | None = None
    equity_open: Decimal | None = None
    equity_close: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    fills: int = 0
    trades_closed: int = 0

    @property
    def pnl(self) -> Decimal | None:
        if self.equity_open is None or self.equity_close is None:
            return None
        return self.equity_close - self.equity_open


def period_pnl(
    run_id: str,
    equity: Sequence[tuple[int, str, Decimal]],
    fills: Sequence[FillRecord],
    replayed: Replay,
    by: Period,
) -> list[PeriodPnl]:
    """A run's PnL per day, week or month from its equity snapshots `(ts_ns, currency,
    equity)` (in time order), its fills (by time) and their `replay`."""
    periods: dict[datetime, PeriodPnl] = {}

    def at(ts_ns: int) -> PeriodPnl:
        start = period_start(ts_ns, by)
        found = periods.get(start)
        if found is None:
            found = periods[start] = PeriodPnl(
                run_id, period_label(start, by), start, period_end(start, by)
            )
        return found

    previous: Decimal | None = None
    for ts_ns, currency, value in equity:
        item = at(ts_ns)
        if item.equity_open is None:
            item.equity_open = value if previous is None else previous
        item.equity_close = value
        item.currency = currency
        previous = value
    for fill, pnl in zip(fills, replayed.realized, strict=True):
        item = at(fill.ts_ns)
        item.realized_pnl += pnl
        item.fees += fill.fee
        item.fills += 1
        if item.currency is None:
            item.currency = fill.fee_currency
    for trade in replayed.trades:
        if trade.closed_ns is not None:
            at(trade.closed_ns).trades_closed += 1
    return [periods[k] for k in sorted(periods)]
