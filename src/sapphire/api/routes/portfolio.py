"""The /api/v1 portfolio routes (scope `read`): balances, positions, open orders, fills,
round-trip trades, PnL by day/week/month/strategy and the equity curve, of one run
(`?run_id=`) or of the runs RUNNING now. Money is a string of digits, time ISO-8601 UTC."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.queries import (
    DecimalStr,
    Limit,
    Offset,
    Period,
    RoundTrip,
    RunIdQuery,
    SinceQuery,
    UntilQuery,
    multipliers,
    ns_of,
    page,
    parse_window,
    period_pnl,
    replay,
    runs_for,
    unprocessable,
    utc,
)
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import require
from sapphire.domain.orders import Order
from sapphire.store import PositionState, RunInfo, Store
from sapphire.store.models import EquitySnapshotRow, FillRow

router = APIRouter(tags=["portfolio"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No run with that id."},
    422: {"model": ErrorDetail, "description": "A bad query value (named in the message)."},
}
_READ = [Depends(require("read"))]
_TS = "2022-01-03T10:05:00Z"


def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


def _runs(request: Request, run_id: str | None) -> list[RunInfo]:
    return runs_for(_store(request), run_id)


def _example(**fields: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [fields]})


# -- balances ------------------------------------------------------------------------------


class BalanceOut(BaseModel):
    """One currency of an account's latest saved balances."""

    model_config = _example(
        run_id="paper-1", account_id="paper", currency="USDT", total="10012.5", locked="0",
        free="10012.5", reported=False, ts=_TS,
    )  # fmt: skip

    run_id: str = Field(description="The run the account belongs to.")
    account_id: str = Field(description="The account.")
    currency: str = Field(description="The currency of this balance.")
    total: DecimalStr = Field(description="Total balance.")
    locked: DecimalStr = Field(description="Locked by open orders or margin.")
    free: DecimalStr = Field(description="total - locked.")
    reported: bool = Field(description="True when the venue reported it (else computed).")
    ts: datetime = Field(description="When the balances were saved (UTC).")


class BalancesOut(BaseModel):
    """The balances of the runs read."""

    balances: list[BalanceOut] = Field(description="One entry per run, account and currency.")


@router.get(
    "/portfolio/balances", dependencies=_READ, responses=_ANSWERS, summary="Account balances"
)
def get_balances(request: Request, run_id: RunIdQuery = None) -> BalancesOut:
    """The latest balances of each account of the run (or of every running run)."""
    store = _store(request)
    out = []
    for run in _runs(request, run_id):
        for account, state in store.balances(run.run_id).items():
            for b in state.balances:
                item = BalanceOut(
                    run_id=run.run_id, account_id=str(account), currency=b.currency,
                    total=b.total, locked=b.locked, free=b.free, reported=state.reported,
                    ts=utc(state.ts_ns),
                )  # fmt: skip
                out.append(item)
    return BalancesOut(balances=out)


# -- positions -----------------------------------------------------------------------------


class PositionOut(BaseModel):
    """A position's latest saved state."""

    model_config = _example(
        run_id="paper-1", strategy_id="s", instrument_id="BTCUSDT@BYBIT", leg="NET",
        side="LONG", quantity="0.01", avg_px="46210.5", realized_pnl="12.5", fees="0.46",
        funding="0", buy_qty="0.05", sell_qty="0.04", fill_count=9, opened=_TS, closed=None,
        last=_TS,
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    strategy_id: str | None = Field(description="The strategy (null: account-wide).")
    instrument_id: str = Field(description="The instrument.")
    leg: Literal["NET", "LONG", "SHORT"] = Field(description="NET, or a hedge-mode leg.")
    side: Literal["LONG", "SHORT", "FLAT"] = Field(description="The sign of the quantity.")
    quantity: DecimalStr = Field(description="Signed quantity (negative: short).")
    avg_px: DecimalStr | None = Field(description="Average entry price (null while flat).")
    realized_pnl: DecimalStr = Field(description="Price PnL realised (fees apart).")
    fees: DecimalStr = Field(description="Fees paid.")
    funding: DecimalStr = Field(description="Funding received (negative: paid).")
    buy_qty: DecimalStr = Field(description="Quantity bought in all.")
    sell_qty: DecimalStr = Field(description="Quantity sold in all.")
    fill_count: int = Field(description="Fills booked.")
    opened: datetime | None = Field(description="When it last opened.")
    closed: datetime | None = Field(description="When it last went flat.")
    last: datetime | None = Field(description="Its last change.")


class PositionsOut(BaseModel):
    """The positions of the runs read."""

    positions: list[PositionOut] = Field(description="By run, strategy and instrument.")


def _opt_time(ts_ns: int | None) -> datetime | None:
    return None if ts_ns is None else utc(ts_ns)


@router.get("/portfolio/positions", dependencies=_READ, responses=_ANSWERS, summary="Positions")
def get_positions(
    request: Request,
    run_id: RunIdQuery = None,
    include_flat: Annotated[bool, Query(description="Flat positions too.")] = False,
) -> PositionsOut:
    """The open positions (and flat ones with `include_flat=true`) of the run(s)."""
    store = _store(request)
    positions = [
        _position_out(run.run_id, p)
        for run in _runs(request, run_id)
        for p in store.positions(run.run_id, open_only=not include_flat)
    ]
    return PositionsOut(positions=positions)


def _position_out(run_id: str, p: PositionState) -> PositionOut:
    return PositionOut(
        run_id=run_id, strategy_id=None if p.strategy_id is None else str(p.strategy_id),
        instrument_id=str(p.instrument_id),
        leg="NET" if p.leg is None else p.leg.value,  # type: ignore[arg-type]
        side="LONG" if p.quantity > 0 else "SHORT" if p.quantity < 0 else "FLAT",
        quantity=p.quantity, avg_px=p.avg_px, realized_pnl=p.realized_pnl, fees=p.fees,
        funding=p.funding, buy_qty=p.buy_qty, sell_qty=p.sell_qty, fill_count=p.fill_count,
        opened=_opt_time(p.opened_ts_ns), closed=_opt_time(p.closed_ts_ns),
        last=_opt_time(p.last_ts_ns),
    )  # fmt: skip


# -- open orders ---------------------------------------------------------------------------


class OrderOut(BaseModel):
    """An open order, rebuilt from its stored events."""

    model_config = _example(
        run_id="paper-1", client_order_id="O-s-17", venue_order_id="PAPER-1-17",
        strategy_id="s", instrument_id="BTCUSDT@BYBIT", side="BUY", type="LIMIT",
        quantity="0.01", price="46000", trigger_price=None, time_in_force="GTC",
        status="ACCEPTED", filled_qty="0", avg_px=None, reduce_only=False, post_only=False,
        parent_order_id=None, created=_TS, updated=_TS,
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    client_order_id: str = Field(description="The node's id of the order.")
    venue_order_id: str | None = Field(description="The venue's id (null until accepted).")
    strategy_id: str = Field(description="The strategy that placed it.")
    instrument_id: str = Field(description="The instrument.")
    side: str = Field(description="BUY or SELL.")
    type: str = Field(description="MARKET, LIMIT, STOP_MARKET, ...")
    quantity: DecimalStr = Field(description="Ordered quantity.")
    price: DecimalStr | None = Field(description="Limit price.")
    trigger_price: DecimalStr | None = Field(description="Stop trigger price.")
    time_in_force: str = Field(description="GTC, IOC, FOK, GTD...")
    status: str = Field(description="SUBMITTED, ACCEPTED, PARTIALLY_FILLED or PENDING_CANCEL.")
    filled_qty: DecimalStr = Field(description="Quantity filled so far.")
    avg_px: DecimalStr | None = Field(description="Average fill price (null before a fill).")
    reduce_only: bool = Field(description="May only reduce a position.")
    post_only: bool = Field(description="Maker only.")
    parent_order_id: str | None = Field(description="The bracket entry of an exit leg.")
    created: datetime = Field(description="When the node created it.")
    updated: datetime = Field(description="Its last event.")


class OrdersOut(BaseModel):
    """The open orders of the runs read."""

    orders: list[OrderOut] = Field(description="Oldest first, per run.")


@router.get("/portfolio/orders", dependencies=_READ, responses=_ANSWERS, summary="Open orders")
def get_orders(request: Request, run_id: RunIdQuery = None) -> OrdersOut:
    """The open orders (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL) of the run(s)."""
    store = _store(request)
    orders = [
        _order_out(run.run_id, o)
        for run in _runs(request, run_id)
        for o in store.open_orders(run.run_id)
    ]
    return OrdersOut(orders=orders)


def _opt_text(value: object) -> str | None:
    return None if value is None else str(value)


def _order_out(run_id: str, o: Order) -> OrderOut:
    return OrderOut(
        run_id=run_id, client_order_id=str(o.client_order_id),
        venue_order_id=_opt_text(o.venue_order_id), strategy_id=str(o.strategy_id),
        instrument_id=str(o.instrument_id), side=o.side.value, type=o.type.value,
        quantity=o.quantity, price=o.price, trigger_price=o.trigger_price,
        time_in_force=o.time_in_force.value, status=o.status.value, filled_qty=o.filled_qty,
        avg_px=o.avg_px, reduce_only=o.reduce_only, post_only=o.post_only,
        parent_order_id=_opt_text(o.parent_order_id), created=utc(o.ts_init),
        updated=utc(o.ts_last),
    )  # fmt: skip


# -- fills ---------------------------------------------------------------------------------


class FillOut(BaseModel):
    """One fill (an execution of an order)."""

    model_config = _example(
        run_id="paper-1", client_order_id="O-s-17", venue_order_id="PAPER-1-17",
        trade_id="T-88", strategy_id="s", instrument_id="BTCUSDT@BYBIT", side="BUY",
        last_qty="0.01", last_px="46010.5", fee="0.23", fee_currency="USDT",
        liquidity="TAKER", ts=_TS,
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    client_order_id: str = Field(description="The order filled.")
    venue_order_id: str | None = Field(description="The venue's id of the order.")
    trade_id: str = Field(description="The venue's id of the execution.")
    strategy_id: str = Field(description="The order's strategy.")
    instrument_id: str = Field(description="The instrument.")
    side: str = Field(description="BUY or SELL.")
    last_qty: DecimalStr = Field(description="Quantity filled.")
    last_px: DecimalStr = Field(description="Price filled at.")
    fee: DecimalStr = Field(description="Fee (negative: a rebate).")
    fee_currency: str = Field(description="The fee's currency.")
    liquidity: str = Field(description="MAKER or TAKER.")
    ts: datetime = Field(description="When it filled (UTC).")


class FillsOut(BaseModel):
    """A page of fills, by time."""

    fills: list[FillOut] = Field(description="By time.")
    next_offset: int | None = Field(description="`offset` of the next page (null: last page).")


@router.get("/portfolio/fills", dependencies=_READ, responses=_ANSWERS, summary="Fills")
def get_fills(
    request: Request,
    run_id: RunIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: Limit = 500,
    offset: Offset = 0,
) -> FillsOut:
    """The fills of the run(s) in [since, until), by time, a page at a time."""
    start, end = parse_window(since, until)
    runs = [r.run_id for r in _runs(request, run_id)]
    rows, more = page(
        _store(request), FillRow, runs, start_ns=start, end_ns=end, limit=limit, offset=offset
    )
    return FillsOut(fills=[_fill_out(r) for r in rows], next_offset=more)


def _fill_out(r: Any) -> FillOut:
    return FillOut(
        run_id=r.run_id, client_order_id=r.client_order_id, venue_order_id=r.venue_order_id,
        trade_id=r.trade_id, strategy_id=r.strategy_id, instrument_id=r.instrument_id,
        side=r.side, last_qty=r.last_qty, last_px=r.last_px, fee=r.fee,
        fee_currency=r.fee_currency, liquidity=r.liquidity, ts=utc(r.ts_ns),
    )  # fmt: skip


# -- trades --------------------------------------------------------------------------------


class TradeOut(BaseModel):
    """A round trip: a strategy's position in an instrument from flat to flat."""

    model_config = _example(
        run_id="paper-1", strategy_id="s", instrument_id="BTCUSDT@BYBIT", side="LONG",
        status="closed", quantity="0.01", entry_px="46010.5", exit_qty="0.01",
        exit_px="46240", realized_pnl="2.295", fees="0.4625", net_pnl="1.8325", fills=2,
        opened=_TS, closed="2022-01-03T11:40:00Z",
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    strategy_id: str = Field(description="The strategy.")
    instrument_id: str = Field(description="The instrument.")
    side: Literal["LONG", "SHORT"] = Field(description="The position's side.")
    status: Literal["open", "closed"] = Field(description="closed once back to flat.")
    quantity: DecimalStr = Field(description="Quantity entered in all.")
    entry_px: DecimalStr = Field(description="Average entry price.")
    exit_qty: DecimalStr = Field(description="Quantity closed so far.")
    exit_px: DecimalStr | None = Field(description="Average exit price (null: none yet).")
    realized_pnl: DecimalStr = Field(description="Price PnL of the closed quantity.")
    fees: DecimalStr = Field(description="Fees of its fills (a flip's fee is shared).")
    net_pnl: DecimalStr = Field(description="realized_pnl - fees (funding apart).")
    fills: int = Field(description="Fills it took.")
    opened: datetime = Field(description="Its first fill.")
    closed: datetime | None = Field(description="The fill that made it flat (null: open).")


class TradesOut(BaseModel):
    """Round trips, in the order they opened."""

    trades: list[TradeOut] = Field(description="In the order they opened.")


@router.get(
    "/portfolio/trades", dependencies=_READ, responses=_ANSWERS, summary="Round-trip trades"
)
def get_trades(
    request: Request,
    run_id: RunIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> TradesOut:
    """The round trips the run(s) made (those open at some time in [since, until))."""
    start, end = parse_window(since, until)
    store = _store(request)
    out = []
    for run in _runs(request, run_id):
        fills = store.fills(run.run_id)
        for t in replay(fills, multipliers(store, (str(f.instrument_id) for f in fills))).trades:
            if end is not None and t.opened_ns >= end:
                continue
            if start is not None and t.closed_ns is not None and t.closed_ns < start:
                continue
            out.append(_trade_out(t))
    return TradesOut(trades=out)


def _trade_out(t: RoundTrip) -> TradeOut:
    return TradeOut(
        run_id=t.run_id, strategy_id=t.strategy_id, instrument_id=t.instrument_id,
        side=t.side, status="open" if t.closed_ns is None else "closed", quantity=t.entry_qty,
        entry_px=t.entry_px, exit_qty=t.exit_qty, exit_px=t.exit_px,
        realized_pnl=t.realized_pnl, fees=t.fees, net_pnl=t.realized_pnl - t.fees,
        fills=t.fills, opened=utc(t.opened_ns), closed=_opt_time(t.closed_ns),
    )  # fmt: skip


# -- PnL -----------------------------------------------------------------------------------


class PnlPeriodOut(BaseModel):
    """A run's PnL over one day, ISO week or month (UTC)."""

    model_config = _example(
        run_id="paper-1", period="2022-01-03", start="2022-01-03T00:00:00Z",
        end="2022-01-04T00:00:00Z", currency="USDT", equity_open="10000",
        equity_close="10012.5", pnl="12.5", realized_pnl="13.1", fees="0.6", fills=8,
        trades_closed=4,
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    period: str = Field(description="2022-01-03, 2022-W01 (ISO week) or 2022-01.")
    start: datetime = Field(description="The period's start (inclusive).")
    end: datetime = Field(description="The period's end (exclusive).")
    currency: str | None = Field(description="Currency of the figures.")
    equity_open: DecimalStr | None = Field(
        description="Equity at the last snapshot before the period (or its first)."
    )
    equity_close: DecimalStr | None = Field(description="Equity at its last snapshot.")
    pnl: DecimalStr | None = Field(
        description="equity_close - equity_open: everything (marks, fees, funding); null "
        "without equity snapshots."
    )
    realized_pnl: DecimalStr = Field(description="Price PnL its fills realised.")
    fees: DecimalStr = Field(description="Fees of its fills.")
    fills: int = Field(description="Fills in the period.")
    trades_closed: int = Field(description="Round trips closed in the period.")


class PnlStrategyOut(BaseModel):
    """A strategy's PnL in a run, as the latest equity snapshot attributes it (or, with no
    snapshot, as its positions hold it)."""

    model_config = _example(
        run_id="paper-1", strategy_id="s", currency="USDT", realized_pnl="13.1",
        unrealized_pnl="-0.4", fees="0.6", funding="0", total="12.1", as_of=_TS,
        source="equity_snapshot",
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    strategy_id: str = Field(description="The strategy.")
    currency: str | None = Field(description="Currency of the figures.")
    realized_pnl: DecimalStr = Field(description="Realised price PnL.")
    unrealized_pnl: DecimalStr | None = Field(description="At the marks (null: no snapshot).")
    fees: DecimalStr = Field(description="Fees paid.")
    funding: DecimalStr = Field(description="Funding received.")
    total: DecimalStr = Field(description="realized + unrealized - fees + funding.")
    as_of: datetime | None = Field(description="The snapshot's time (null: positions).")
    source: Literal["equity_snapshot", "positions"] = Field(description="Where it comes from.")


class PnlOut(BaseModel):
    """PnL by period (`periods`) or by strategy (`strategies`), the other list empty."""

    by: Literal["day", "week", "month", "strategy"] = Field(description="The grouping.")
    periods: list[PnlPeriodOut] = Field(description="by=day|week|month: per run, by time.")
    strategies: list[PnlStrategyOut] = Field(description="by=strategy: per run and strategy.")


_BY = ("day", "week", "month", "strategy")


@router.get("/portfolio/pnl", dependencies=_READ, responses=_ANSWERS, summary="PnL")
def get_pnl(
    request: Request,
    by: Annotated[
        str,
        Query(description="day, week, month or strategy.", json_schema_extra={"enum": _BY}),
    ] = "day",
    run_id: RunIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> PnlOut:
    """The run(s)' PnL by UTC day, ISO week or month (the periods overlapping [since,
    until)), or by strategy."""
    if by not in _BY:
        raise unprocessable(f"by {by!r} is unknown: expected day, week, month or strategy")
    start, end = parse_window(since, until)
    store = _store(request)
    runs = _runs(request, run_id)
    if by == "strategy":
        return PnlOut(by="strategy", periods=[], strategies=_by_strategy(store, runs))
    period: Period = by  # type: ignore[assignment]
    out = []
    for run in runs:
        fills = store.fills(run.run_id)
        replayed = replay(fills, multipliers(store, (str(f.instrument_id) for f in fills)))
        equity = [(e.ts_ns, e.currency, e.equity) for e in _equity(store, run.run_id)]
        for p in period_pnl(run.run_id, equity, fills, replayed, period):
            if (end is not None and ns_of(p.start) >= end) or (
                start is not None and ns_of(p.end) <= start
            ):
                continue
            item = PnlPeriodOut(
                run_id=p.run_id, period=p.label, start=p.start, end=p.end, currency=p.currency,
                equity_open=p.equity_open, equity_close=p.equity_close, pnl=p.pnl,
                realized_pnl=p.realized_pnl, fees=p.fees, fills=p.fills,
                trades_closed=p.trades_closed,
            )  # fmt: skip
            out.append(item)
    return PnlOut(by=by, periods=out, strategies=[])  # type: ignore[arg-type]


def _equity(store: Store, run_id: str) -> list[Any]:
    """The run's equity snapshots (ts_ns, currency, equity), by time, without attribution."""
    query = (
        sa.select(EquitySnapshotRow.ts_ns, EquitySnapshotRow.currency, EquitySnapshotRow.equity)
        .where(EquitySnapshotRow.run_id == run_id)
        .order_by(EquitySnapshotRow.ts_ns, EquitySnapshotRow.id)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())


def _by_strategy(store: Store, runs: list[RunInfo]) -> list[PnlStrategyOut]:
    out = []
    for run in runs:
        last = _last_snapshot(store, run.run_id)
        if last is not None and last.strategies:
            for sid, pnl in last.strategies.items():
                item = PnlStrategyOut(
                    run_id=run.run_id, strategy_id=str(sid), currency=pnl.currency,
                    realized_pnl=pnl.realized, unrealized_pnl=pnl.unrealized, fees=pnl.fees,
                    funding=pnl.funding, total=pnl.total, as_of=utc(last.ts_ns),
                    source="equity_snapshot",
                )  # fmt: skip
                out.append(item)
            continue
        sums: dict[str, list[Decimal]] = {}
        for p in store.positions(run.run_id):
            if p.strategy_id is None:
                continue
            acc = sums.setdefault(str(p.strategy_id), [Decimal(0)] * 3)
            acc[0] += p.realized_pnl
            acc[1] += p.fees
            acc[2] += p.funding
        for sid, (realized, fees, funding) in sorted(sums.items()):
            item = PnlStrategyOut(
                run_id=run.run_id, strategy_id=sid, currency=None, realized_pnl=realized,
                unrealized_pnl=None, fees=fees, funding=funding, total=realized - fees + funding,
                as_of=None, source="positions",
            )  # fmt: skip
            out.append(item)
    return out


def _last_snapshot(store: Store, run_id: str) -> Any:
    """The run's newest equity snapshot with its attribution (None without one)."""
    query = (
        sa.select(EquitySnapshotRow.ts_ns)
        .where(EquitySnapshotRow.run_id == run_id)
        .order_by(EquitySnapshotRow.ts_ns.desc(), EquitySnapshotRow.id.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        ts = conn.execute(query).scalar()
    if ts is None:
        return None
    return store.equity_snapshots(run_id, start_ns=ts)[-1]


# -- equity --------------------------------------------------------------------------------


class EquityPointOut(BaseModel):
    """One equity snapshot: `equity = balance + unrealized_pnl`."""

    model_config = _example(
        run_id="paper-1", ts=_TS, currency="USDT", equity="10012.5", balance="10010",
        unrealized_pnl="2.5", margin_used="46.2", gross_exposure="462.1", net_exposure="462.1",
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    ts: datetime = Field(description="When (UTC).")
    currency: str = Field(description="Currency of the figures.")
    equity: DecimalStr = Field(description="balance + unrealized_pnl.")
    balance: DecimalStr = Field(description="The account balances, converted.")
    unrealized_pnl: DecimalStr = Field(description="Open positions' PnL at the marks.")
    margin_used: DecimalStr = Field(description="Margin held.")
    gross_exposure: DecimalStr = Field(description="Σ |position notional|.")
    net_exposure: DecimalStr = Field(description="Σ position notional.")


class EquityOut(BaseModel):
    """A page of the equity curve, by time."""

    points: list[EquityPointOut] = Field(description="By time.")
    next_offset: int | None = Field(description="`offset` of the next page (null: last page).")


@router.get("/portfolio/equity", dependencies=_READ, responses=_ANSWERS, summary="Equity curve")
def get_equity(
    request: Request,
    run_id: RunIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> EquityOut:
    """The equity snapshots of the run(s) in [since, until), by time, a page at a time."""
    start, end = parse_window(since, until)
    runs = [r.run_id for r in _runs(request, run_id)]
    rows, more = page(
        _store(request), EquitySnapshotRow, runs, start_ns=start, end_ns=end, limit=limit,
        offset=offset,
    )  # fmt: skip
    return EquityOut(points=[_point_out(r) for r in rows], next_offset=more)


def _point_out(r: Any) -> EquityPointOut:
    return EquityPointOut(
        run_id=r.run_id, ts=utc(r.ts_ns), currency=r.currency, equity=r.equity,
        balance=r.balance, unrealized_pnl=r.unrealized_pnl, margin_used=r.margin_used,
        gross_exposure=r.gross_exposure, net_exposure=r.net_exposure,
    )  # fmt: skip
