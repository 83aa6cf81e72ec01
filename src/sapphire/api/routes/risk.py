"""The /api/v1 risk routes (scope `read`): the risk profiles, the limits in force for a run
with their current usage, and the run's risk events.

Usage is read from the store as the node left it: the drawdown from the peak of the equity
snapshots, the daily loss from the equity at the start of the latest snapshot's UTC day,
the VaR and the active breaches by replaying the snapshots through the profile's
`PortfolioLimits` (as a resumed node rebuilds them), the gross exposure from the latest
snapshot, the open orders and positions from their tables. Limits checked order by order
(notional per order, price band, order rate) are listed with no usage.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.queries import (
    DecimalStr,
    Limit,
    Offset,
    RunIdQuery,
    SinceQuery,
    UntilQuery,
    page,
    parse_window,
    runs_for,
    utc,
)
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import require
from sapphire.risk import PROFILES, RiskConfig, RiskProfile, profile
from sapphire.risk.limits import NS_PER_DAY
from sapphire.store import EquityRecord, RunInfo, RunStatus, Store
from sapphire.store.models import OrderRow, RiskEventRow

router = APIRouter(tags=["risk"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No run with that id."},
    422: {"model": ErrorDetail, "description": "A bad query value (named in the message)."},
}
_READ = [Depends(require("read"))]
_TS = "2022-01-03T10:05:00Z"
_RATIO = Decimal("1e-10")  # fractions are shown to 10 places
#: what reading a run's risk profile (a name, or a YAML file) can raise
_UNREADABLE = (ValueError, TypeError, OSError, yaml.YAMLError)


def _store(request: Request) -> Store:
    store: Store = request.app.state.service.store
    return store


# -- profiles ------------------------------------------------------------------------------


class ScaledRiskOut(BaseModel):
    """Risk per trade that decays with the balance: `high` at or below `low_balance`,
    `low` at or above `high_balance`, exponential between."""

    high: DecimalStr = Field(description="Fraction risked at or below low_balance.")
    low: DecimalStr = Field(description="Fraction risked at or above high_balance.")
    low_balance: DecimalStr = Field(description="Balance where the decay starts.")
    high_balance: DecimalStr = Field(description="Balance where it ends.")


class PreTradeOut(BaseModel):
    """Pre-trade limits checked on every order (null: no limit)."""

    max_notional_per_order: DecimalStr | None = Field(description="Quote value of one order.")
    max_position_notional: DecimalStr | None = Field(description="|position| * price.")
    max_position_qty: dict[str, DecimalStr] = Field(description="Per instrument, base units.")
    max_gross_exposure: DecimalStr | None = Field(description="Σ |position notional|.")
    max_open_orders: int | None = Field(description="Open orders before a new one.")
    max_orders_per_window: int | None = Field(description="Orders per rate window.")
    rate_limit_window_s: float = Field(description="The rate window, seconds.")
    price_band: DecimalStr | None = Field(description="Max distance of a limit from the last.")
    check_balance: bool = Field(description="Free balance/margin required.")


class ProfileOut(BaseModel):
    """A risk profile: sizing risk, portfolio limits and pre-trade limits."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "conservative", "source": "builtin", "risk_per_trade": "0.01",
                    "risk_per_trade_scaled": None, "max_drawdown": "0.25",
                    "strategy_max_drawdown": "0.15", "daily_loss_limit": "0.05",
                    "daily_var_limit": "0.03", "var_confidence": 0.95,
                    "var_method": "historical", "used_by": ["paper-1"],
                    "pre_trade": {
                        "max_notional_per_order": None, "max_position_notional": None,
                        "max_position_qty": {}, "max_gross_exposure": None,
                        "max_open_orders": None, "max_orders_per_window": None,
                        "rate_limit_window_s": 1.0, "price_band": None, "check_balance": True,
                    },
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The profile's name.")
    source: Literal["builtin", "file"] = Field(description="Built in, or a running run's YAML.")
    risk_per_trade: DecimalStr | None = Field(description="Fraction risked per trade.")
    risk_per_trade_scaled: ScaledRiskOut | None = Field(description="Or balance-scaled.")
    max_drawdown: DecimalStr | None = Field(description="Portfolio drawdown that halts.")
    strategy_max_drawdown: DecimalStr | None = Field(description="A strategy's, that halts it.")
    daily_loss_limit: DecimalStr | None = Field(description="Loss in a UTC day that halts.")
    daily_var_limit: DecimalStr | None = Field(description="One-day VaR that reduces.")
    var_confidence: float = Field(description="VaR confidence.")
    var_method: str = Field(description="historical, parametric...")
    pre_trade: PreTradeOut = Field(description="Checked on every order.")
    used_by: list[str] = Field(description="The running runs trading under it.")


class ProfilesOut(BaseModel):
    """The built-in profiles and those the running runs use."""

    profiles: list[ProfileOut] = Field(description="Built-in first.")
    warnings: list[str] = Field(description="Profiles of running runs that cannot be read.")


def _pre_trade(config: RiskConfig) -> PreTradeOut:
    return PreTradeOut(
        max_notional_per_order=config.max_notional_per_order,
        max_position_notional=config.max_position_notional,
        max_position_qty={str(k): v for k, v in config.max_position_qty.items()},
        max_gross_exposure=config.max_gross_exposure, max_open_orders=config.max_open_orders,
        max_orders_per_window=config.max_orders_per_window,
        rate_limit_window_s=config.rate_limit_window_s, price_band=config.price_band,
        check_balance=config.check_balance,
    )  # fmt: skip


def _profile_out(
    rp: RiskProfile, source: Literal["builtin", "file"], used_by: list[str]
) -> ProfileOut:
    rpt = rp.risk_per_trade
    scaled = None
    if not isinstance(rpt, Decimal):
        scaled = ScaledRiskOut(
            high=rpt.high, low=rpt.low, low_balance=rpt.low_balance, high_balance=rpt.high_balance
        )
    return ProfileOut(
        name=rp.name, source=source, risk_per_trade=rpt if isinstance(rpt, Decimal) else None,
        risk_per_trade_scaled=scaled, max_drawdown=rp.max_drawdown,
        strategy_max_drawdown=rp.strategy_max_drawdown, daily_loss_limit=rp.daily_loss_limit,
        daily_var_limit=rp.daily_var_limit, var_confidence=rp.var_confidence,
        var_method=rp.var_method, pre_trade=_pre_trade(rp.pre_trade), used_by=used_by,
    )  # fmt: skip


@router.get("/risk/profiles", dependencies=_READ, summary="Risk profiles")
def get_profiles(request: Request) -> ProfilesOut:
    """The built-in risk profiles, and the profile files the running runs trade under."""
    users: dict[str, list[str]] = {}
    for run in _store(request).runs(RunStatus.RUNNING):
        name = run.config.get("risk_profile")
        if isinstance(name, str):
            users.setdefault(name, []).append(run.run_id)
    out = [_profile_out(rp, "builtin", users.pop(name, [])) for name, rp in PROFILES.items()]
    warnings = []
    for name, runs in users.items():
        try:
            out.append(_profile_out(profile(name), "file", runs))
        except _UNREADABLE as exc:
            warnings.append(f"runs {', '.join(runs)}: risk profile {name!r}: {exc}")
    return ProfilesOut(profiles=out, warnings=warnings)


# -- limits and their usage ----------------------------------------------------------------


class LimitOut(BaseModel):
    """A limit in force and how much of it the run uses now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "max_drawdown", "strategy_id": None, "instrument_id": None,
                    "unit": "fraction", "limit": "0.25", "used": "0.0123", "utilisation":
                    "0.0492", "breached": False,
                    "detail": "portfolio drawdown from the peak equity 10150 (halts)",
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The limit's field in the profile.")
    strategy_id: str | None = Field(description="The strategy it applies to (null: all).")
    instrument_id: str | None = Field(description="The instrument (max_position_qty).")
    unit: Literal["fraction", "money", "quantity", "count", "seconds"] = Field(
        description="What `limit` and `used` measure."
    )
    limit: DecimalStr = Field(description="The limit.")
    used: DecimalStr | None = Field(description="Usage now (null: checked per order only).")
    utilisation: DecimalStr | None = Field(description="used / limit.")
    breached: bool = Field(description="used has reached the limit.")
    detail: str = Field(description="What is measured and what a breach does.")


class BreachOut(BaseModel):
    """An active breach, as replaying the equity snapshots through the limits leaves it."""

    kind: str = Field(description="drawdown, daily_loss, var, strategy_drawdown...")
    action: str = Field(description="The trading state it imposes (HALTED, REDUCING).")
    reason: str = Field(description="The values that breached.")
    strategy_id: str | None = Field(description="The strategy (null: the portfolio).")


class RunLimitsOut(BaseModel):
    """One run's risk profile, its limits and their usage."""

    run_id: str = Field(description="The run.")
    mode: str = Field(description="BACKTEST, PAPER, TESTNET or LIVE.")
    status: str = Field(description="RUNNING, FINISHED or FAILED.")
    profile: str | None = Field(description="The risk profile (null: none).")
    trading_state: str = Field(description="The node's recorded state: ACTIVE, REDUCING...")
    as_of: datetime | None = Field(description="The latest equity snapshot read.")
    currency: str | None = Field(description="Currency of the money figures.")
    equity: DecimalStr | None = Field(description="Equity at as_of.")
    peak_equity: DecimalStr | None = Field(description="Highest equity of the run.")
    day_start_equity: DecimalStr | None = Field(description="Equity as as_of's UTC day began.")
    open_orders: int = Field(description="Open orders now.")
    limits: list[LimitOut] = Field(description="The limits in force.")
    breaches: list[BreachOut] = Field(description="Active breaches.")
    warnings: list[str] = Field(description="What could not be read.")


class LimitsOut(BaseModel):
    """The limits of the runs read."""

    runs: list[RunLimitsOut] = Field(description="By start time.")


@router.get(
    "/risk/limits", dependencies=_READ, responses=_ANSWERS, summary="Limits and their usage"
)
def get_limits(request: Request, run_id: RunIdQuery = None) -> LimitsOut:
    """The limits in force for the run (or each running run) and their current usage."""
    store = _store(request)
    return LimitsOut(runs=[_run_limits(store, run) for run in runs_for(store, run_id)])


def _ratio(value: Decimal) -> Decimal:
    return value.quantize(_RATIO).normalize() + 0  # `+ 0`: no "-0"


def _limit(
    name: str,
    unit: Any,
    limit: Decimal | int | float,
    used: Decimal | int | None,
    detail: str,
    strategy_id: str | None = None,
) -> LimitOut:
    cap = Decimal(str(limit))
    use = None if used is None else Decimal(used)
    if use is not None and unit == "fraction":
        use = _ratio(use)
    utilisation = None if use is None else _ratio(use / cap)
    return LimitOut(
        name=name, strategy_id=strategy_id, instrument_id=None, unit=unit, limit=cap,
        used=use, utilisation=utilisation, breached=use is not None and use >= cap,
        detail=detail,
    )  # fmt: skip


def _capital(run: RunInfo) -> Decimal | None:
    """The capital of a run's one strategy (the node's builder gives it the run's cash)."""
    cash = run.config.get("start_cash", run.config.get("cash"))
    if len(run.strategy_ids) != 1 or cash is None:
        return None
    try:
        return Decimal(str(cash))
    except ArithmeticError:
        return None


def _run_limits(store: Store, run: RunInfo) -> RunLimitsOut:
    warnings: list[str] = []
    name = run.config.get("risk_profile")
    rp = None
    if isinstance(name, str):
        try:
            rp = profile(name)
        except _UNREADABLE as exc:
            warnings.append(f"risk profile {name!r} cannot be read: {exc}")
    snaps = store.equity_snapshots(run.run_id)
    with store.engine.connect() as conn:
        open_orders = conn.execute(
            sa.select(sa.func.count())
            .select_from(OrderRow)
            .where(OrderRow.run_id == run.run_id, OrderRow.is_open.is_(True))
        ).scalar_one()
    last = snaps[-1] if snaps else None
    peak = max(s.equity for s in snaps) if snaps else None
    day_start = None
    if last is not None:
        earlier = [s for s in snaps if s.ts_ns // NS_PER_DAY < last.ts_ns // NS_PER_DAY]
        day_start = (earlier[-1] if earlier else snaps[0]).equity
    limits: list[LimitOut] = []
    breaches: list[BreachOut] = []
    if rp is not None:
        limits, breaches = _usage(store, run, rp, snaps, open_orders, day_start)
    return RunLimitsOut(
        run_id=run.run_id, mode=run.mode.value, status=run.status.value,
        profile=rp.name if rp is not None else None,
        trading_state=store.trading_state(run.run_id).value,
        as_of=None if last is None else utc(last.ts_ns),
        currency=None if last is None else last.currency,
        equity=None if last is None else last.equity, peak_equity=peak,
        day_start_equity=day_start, open_orders=open_orders, limits=limits, breaches=breaches,
        warnings=warnings,
    )  # fmt: skip


def _drop(equity: Decimal, peak: Decimal | None) -> Decimal | None:
    """The fraction `equity` is below `peak` (0 above it; None without a positive peak)."""
    if peak is None or peak <= 0:
        return None
    return max(1 - equity / peak, Decimal(0))


def _usage(
    store: Store,
    run: RunInfo,
    rp: RiskProfile,
    snaps: list[EquityRecord],
    open_orders: int,
    day_start: Decimal | None,
) -> tuple[list[LimitOut], list[BreachOut]]:
    """The profile's limits with the run's usage, and the breaches its limits hold."""
    capital = _capital(run)
    limits = rp.portfolio_limits()
    strategy_peak: dict[str, Decimal] = {}
    for s in snaps:  # as a resumed node rebuilds its limits (engine.session)
        own = {}
        if capital is not None:
            for sid, pnl in s.strategies.items():
                own[sid] = capital + pnl.total
                strategy_peak[str(sid)] = max(strategy_peak.get(str(sid), own[sid]), own[sid])
        limits.evaluate(s.ts_ns, s.equity, own)
    last = snaps[-1] if snaps else None
    equity = None if last is None else last.equity
    out: list[LimitOut] = []
    if rp.max_drawdown is not None:
        peak = max((s.equity for s in snaps), default=None)
        used = None if equity is None else _drop(equity, peak)
        detail = "portfolio drawdown from the peak equity (halts the node)"
        out.append(_limit("max_drawdown", "fraction", rp.max_drawdown, used, detail))
    if rp.daily_loss_limit is not None:
        used = None if equity is None else _drop(equity, day_start)
        detail = "loss since the start of the UTC day (halts until the next day)"
        out.append(_limit("daily_loss_limit", "fraction", rp.daily_loss_limit, used, detail))
    if rp.daily_var_limit is not None:
        var = None if limits.last_var is None else Decimal(repr(limits.last_var))
        detail = (
            f"one-day {rp.var_method} VaR at {rp.var_confidence:g} of the daily returns "
            "(null until enough days; reduces only)"
        )
        out.append(_limit("daily_var_limit", "fraction", rp.daily_var_limit, var, detail))
    if rp.strategy_max_drawdown is not None and last is not None:
        detail = (
            "the strategy's drawdown from its peak equity, capital + PnL (null when the "
            "capital is not known; halts the strategy)"
        )
        for sid, pnl in last.strategies.items():
            used = None
            if capital is not None:
                used = _drop(capital + pnl.total, strategy_peak.get(str(sid)))
            cap = rp.strategy_max_drawdown
            out.append(_limit("strategy_max_drawdown", "fraction", cap, used, detail, str(sid)))
    out += _pre_trade_usage(store, run, rp.pre_trade, last, open_orders)
    breaches = [
        BreachOut(
            kind=b.kind,
            action=b.state.value,
            reason=b.reason,
            strategy_id=None if b.strategy_id is None else str(b.strategy_id),
        )
        for b in limits.breaches
    ]
    return out, breaches


def _pre_trade_usage(
    store: Store, run: RunInfo, pre: RiskConfig, last: EquityRecord | None, open_orders: int
) -> list[LimitOut]:
    out = []
    if pre.max_gross_exposure is not None:
        used = None if last is None else last.gross_exposure
        detail = "Σ |position notional| at the latest snapshot (refuses orders beyond)"
        out.append(_limit("max_gross_exposure", "money", pre.max_gross_exposure, used, detail))
    if pre.max_open_orders is not None:
        detail = "open orders (a new order needs fewer)"
        out.append(_limit("max_open_orders", "count", pre.max_open_orders, open_orders, detail))
    if pre.max_position_qty:
        held: dict[str, Decimal] = {}
        for p in store.positions(run.run_id, open_only=True):
            iid = str(p.instrument_id)
            held[iid] = held.get(iid, Decimal(0)) + p.quantity
        detail = "|net position| of the instrument (refuses orders beyond)"
        for instrument, cap in pre.max_position_qty.items():
            used = abs(held.get(str(instrument), Decimal(0)))
            item = _limit("max_position_qty", "quantity", cap, used, detail)
            out.append(item.model_copy(update={"instrument_id": str(instrument)}))
    per_order: list[tuple[str, str, Decimal | int | None, str]] = [
        ("max_notional_per_order", "money", pre.max_notional_per_order, "one order's notional"),
        (
            "max_position_notional",
            "money",
            pre.max_position_notional,
            "|position after an order| * price, per instrument",
        ),
        ("price_band", "fraction", pre.price_band, "a limit or trigger's distance from the last"),
        (
            "max_orders_per_window",
            "count",
            pre.max_orders_per_window,
            f"orders in {pre.rate_limit_window_s:g} s",
        ),
    ]
    for name, unit, value, what in per_order:
        if value is not None:
            out.append(_limit(name, unit, value, None, f"{what} (checked on each order)"))
    return out


# -- risk events ---------------------------------------------------------------------------


class RiskEventOut(BaseModel):
    """A risk event (a limit breached, an order denied, the kill switch) or a change of the
    trading state."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 12, "run_id": "paper-1", "event_type": "RiskEvent", "ts": _TS,
                    "strategy_id": None, "kind": "drawdown", "state": None, "previous": None,
                    "reason": "portfolio drawdown 25.1 % reached max_drawdown 25 %",
                    "detail": {"drawdown": "0.251", "limit": "0.25"},
                }
            ]
        }
    )  # fmt: skip

    id: int = Field(description="Its place in the store.")
    run_id: str = Field(description="The run.")
    event_type: Literal["RiskEvent", "TradingStateChanged"] = Field(description="Its type.")
    ts: datetime = Field(description="When (UTC).")
    strategy_id: str | None = Field(description="The strategy (null: the whole node).")
    kind: str | None = Field(description="A RiskEvent's kind (drawdown, daily_loss...).")
    state: str | None = Field(description="A state change's new state.")
    previous: str | None = Field(description="A state change's previous state.")
    reason: str = Field(description="Why, naming the values.")
    detail: dict[str, Any] = Field(description="A RiskEvent's figures (decimals as strings).")


class RiskEventsOut(BaseModel):
    """A page of risk events, by time."""

    events: list[RiskEventOut] = Field(description="By time.")
    next_offset: int | None = Field(description="`offset` of the next page (null: last page).")


@router.get("/risk/events", dependencies=_READ, responses=_ANSWERS, summary="Risk events")
def get_events(
    request: Request,
    run_id: RunIdQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: Limit = 500,
    offset: Offset = 0,
) -> RiskEventsOut:
    """The risk events and trading-state changes of the run(s) in [since, until)."""
    start, end = parse_window(since, until)
    store = _store(request)
    runs = [r.run_id for r in runs_for(store, run_id)]
    rows, more = page(
        store, RiskEventRow, runs, start_ns=start, end_ns=end, limit=limit, offset=offset
    )
    return RiskEventsOut(events=[_event_out(r) for r in rows], next_offset=more)


def _event_out(r: Any) -> RiskEventOut:
    payload = dict(r.payload)
    detail = payload.get("detail")
    return RiskEventOut(
        id=r.id, run_id=r.run_id, event_type=r.event_type, ts=utc(r.ts_ns),
        strategy_id=r.strategy_id, kind=r.kind, state=r.state, previous=payload.get("previous"),
        reason=r.reason, detail=detail if isinstance(detail, dict) else {},
    )  # fmt: skip
