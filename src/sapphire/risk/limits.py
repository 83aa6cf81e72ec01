"""Portfolio limits (daily loss, drawdown, VaR) and the kill switch.

`PortfolioLimits` is fed the equity stream (`evaluate(ts_ns, equity, strategy_equity)`)
and answers with events: a `RiskEvent` when a limit is breached and a
`TradingStateChanged` whenever the node's (or one strategy's) trading state moves. The
state is the most severe of the active breaches (ACTIVE < REDUCING < HALTED):

- ``max_drawdown``: 1 - equity / peak equity >= limit -> HALTED until `reset()`.
- ``strategy_max_drawdown``: the same per strategy -> that strategy HALTED until `reset()`.
- ``daily_loss_limit``: 1 - equity / equity at the UTC day's start >= limit -> HALTED
  until the next UTC day.
- ``var_limit``: 1-day VaR of daily returns > limit -> REDUCING while it holds.
- kill switch (`halt()`, `KillSwitch.trip`): HALTED until `reset()`.

(The actions are the defaults; each limit's action can be REDUCING or HALTED.)

Daily returns for VaR come from the last equity of each UTC day (the day's close), so
VaR is re-evaluated once per UTC day, when the first snapshot of a new day arrives.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    Order,
    OrderSide,
    OrderStatus,
    RiskEvent,
    StrategyId,
    TradingState,
    TradingStateChanged,
)
from sapphire.risk.checks import fmt, pct
from sapphire.risk.config import decimal_value, fraction_value
from sapphire.risk.var import VAR_METHODS, value_at_risk

if TYPE_CHECKING:
    from sapphire.portfolio import EquitySnapshot
    from sapphire.risk.profiles import RiskProfile

__all__ = [
    "CloseIntent",
    "KillSwitch",
    "KillSwitchActions",
    "PortfolioLimits",
    "PositionLike",
    "severity",
]

NS_PER_DAY = 86_400 * 1_000_000_000
LimitEvent = RiskEvent | TradingStateChanged

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def severity(state: TradingState) -> int:
    """0 for ACTIVE, 1 for REDUCING, 2 for HALTED."""
    return _SEVERITY[TradingState(state)]


def most_severe(states: Iterable[TradingState]) -> TradingState:
    return max(states, key=severity, default=TradingState.ACTIVE)


def _day_label(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def _action(value: object, name: str) -> TradingState:
    try:
        state = TradingState(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{name} must be REDUCING or HALTED, got {value!r}") from None
    if state is TradingState.ACTIVE:
        raise ValueError(f"{name} must be REDUCING or HALTED, got {value!r}")
    return state


@dataclass(frozen=True)
class Breach:
    """An active limit breach: what, for whom, the state it imposes, and why."""

    kind: str
    state: TradingState
    reason: str
    strategy_id: StrategyId | None = None
    latched: bool = True


class PortfolioLimits:
    """Daily loss, drawdown (portfolio and per strategy) and VaR limits on an equity stream.

    Fractions may be Decimals, floats or strings (``0.25`` = 25 %); ``None`` disables a
    limit. ``var_window`` daily returns at most (and ``var_min_observations`` at least)
    feed the VaR. Feed snapshots in time order; equity in the reporting currency.
    """

    def __init__(
        self,
        *,
        max_drawdown: Decimal | float | str | None = None,
        strategy_max_drawdown: Decimal | float | str | None = None,
        daily_loss_limit: Decimal | float | str | None = None,
        var_limit: float | Decimal | str | None = None,
        var_confidence: float = 0.95,
        var_method: str = "historical",
        var_window: int = 250,
        var_min_observations: int = 20,
        drawdown_action: TradingState = TradingState.HALTED,
        strategy_drawdown_action: TradingState = TradingState.HALTED,
        daily_loss_action: TradingState = TradingState.HALTED,
        var_action: TradingState = TradingState.REDUCING,
    ) -> None:
        def opt(v: object, name: str) -> Decimal | None:
            return None if v is None else fraction_value(v, name)

        self.max_drawdown = opt(max_drawdown, "max_drawdown")
        self.strategy_max_drawdown = opt(strategy_max_drawdown, "strategy_max_drawdown")
        self.daily_loss_limit = opt(daily_loss_limit, "daily_loss_limit")
        limit = opt(var_limit, "var_limit")
        self.var_limit = None if limit is None else float(limit)
        c = var_confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.5 <= c < 1:
            raise ValueError(f"var_confidence must be in [0.5, 1), got {c!r}")
        self.var_confidence = float(c)
        if var_method not in VAR_METHODS:
            raise ValueError(
                f"unknown var_method {var_method!r}; expected one of {', '.join(VAR_METHODS)}"
            )
        self.var_method = var_method
        for name, n, lowest in (
            ("var_window", var_window, 2),
            ("var_min_observations", var_min_observations, 2),
        ):
            if isinstance(n, bool) or not isinstance(n, int) or n < lowest:
                raise ValueError(f"{name} must be an integer >= {lowest}, got {n!r}")
        if var_min_observations > var_window:
            raise ValueError(
                f"var_min_observations {var_min_observations} exceeds var_window {var_window}"
            )
        self.var_window = var_window
        self.var_min_observations = var_min_observations
        self.drawdown_action = _action(drawdown_action, "drawdown_action")
        self.strategy_drawdown_action = _action(
            strategy_drawdown_action, "strategy_drawdown_action"
        )
        self.daily_loss_action = _action(daily_loss_action, "daily_loss_action")
        self.var_action = _action(var_action, "var_action")

        self._last_ts: int | None = None
        self._day: int | None = None
        self._equity: Decimal | None = None
        self._peak: Decimal | None = None
        self._day_start: Decimal | None = None
        self._closes: deque[float] = deque(maxlen=var_window + 1)
        self._strategy_equity: dict[StrategyId, Decimal] = {}
        self._strategy_peak: dict[StrategyId, Decimal] = {}
        self._breaches: dict[tuple[str, StrategyId | None], Breach] = {}
        self._state = TradingState.ACTIVE
        self._strategy_states: dict[StrategyId, TradingState] = {}
        self.last_var: float | None = None

    @classmethod
    def from_profile(cls, profile: RiskProfile, **overrides: object) -> PortfolioLimits:
        """The limits of a `RiskProfile` (``daily_var_limit`` becomes ``var_limit``)."""
        kwargs: dict[str, object] = {
            "max_drawdown": profile.max_drawdown,
            "strategy_max_drawdown": profile.strategy_max_drawdown,
            "daily_loss_limit": profile.daily_loss_limit,
            "var_limit": profile.daily_var_limit,
            "var_confidence": profile.var_confidence,
            "var_method": profile.var_method,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        """The node-wide trading state."""
        return self._state

    def state_for(self, strategy_id: StrategyId) -> TradingState:
        """The trading state a strategy's orders are checked under (node's or its own)."""
        own = self._strategy_states.get(strategy_id, TradingState.ACTIVE)
        return most_severe((self._state, own))

    @property
    def breaches(self) -> tuple[Breach, ...]:
        """The active breaches, portfolio-wide first."""
        return tuple(
            sorted(self._breaches.values(), key=lambda b: (b.strategy_id is not None, b.kind))
        )

    # -- input ----------------------------------------------------------------------

    def evaluate(
        self,
        ts_ns: int,
        equity: Decimal | float | int | str,
        strategy_equity: Mapping[StrategyId, Decimal | float | int | str] | None = None,
    ) -> list[LimitEvent]:
        """Take one equity snapshot; return the events it causes (often none).

        ``strategy_equity`` maps each strategy to its own equity (allocated capital plus
        its PnL) for the per-strategy drawdown limit.
        """
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise ValueError(f"ts_ns must be int nanoseconds, got {ts_ns!r}")
        if self._last_ts is not None and ts_ns < self._last_ts:
            raise ValueError(
                f"equity snapshot at ts_ns {ts_ns} is before the previous one at {self._last_ts}"
            )
        eq = decimal_value(equity, "equity")
        strategies = {
            sid: decimal_value(v, f"strategy_equity[{sid}]")
            for sid, v in (strategy_equity or {}).items()
        }
        self._last_ts = ts_ns
        events: list[LimitEvent] = []
        day = ts_ns // NS_PER_DAY
        notes: list[str] = []

        if self._day is None:
            self._day_start = eq
        elif day != self._day:
            assert self._equity is not None
            self._closes.append(float(self._equity))
            self._day_start = self._equity
            if self._breaches.pop(("daily_loss", None), None) is not None:
                notes.append(f"new UTC day {_day_label(day)}: daily loss limit reset")
            notes.extend(self._evaluate_var(ts_ns, events))
        self._day = day
        self._equity = eq
        self._peak = eq if self._peak is None else max(self._peak, eq)

        if (
            self.max_drawdown is not None
            and self._peak > 0
            and ("drawdown", None) not in self._breaches
        ):
            dd = 1 - eq / self._peak
            if dd >= self.max_drawdown:
                reason = (
                    f"portfolio drawdown {pct(dd)} (equity {fmt(eq, 2)} from peak "
                    f"{fmt(self._peak, 2)}) reached max_drawdown {pct(self.max_drawdown)}"
                )
                self._breach(
                    events,
                    ts_ns,
                    Breach("drawdown", self.drawdown_action, reason),
                    {
                        "drawdown": str(dd),
                        "equity": str(eq),
                        "peak": str(self._peak),
                        "limit": str(self.max_drawdown),
                    },
                )
        if (
            self.daily_loss_limit is not None
            and self._day_start is not None
            and self._day_start > 0
            and ("daily_loss", None) not in self._breaches
        ):
            loss = 1 - eq / self._day_start
            if loss >= self.daily_loss_limit:
                reason = (
                    f"daily loss {pct(loss)} (equity {fmt(eq, 2)} from {fmt(self._day_start, 2)} "
                    f"at the start of {_day_label(day)} UTC) reached daily_loss_limit "
                    f"{pct(self.daily_loss_limit)}"
                )
                self._breach(
                    events,
                    ts_ns,
                    Breach("daily_loss", self.daily_loss_action, reason, latched=False),
                    {
                        "loss": str(loss),
                        "equity": str(eq),
                        "day_start_equity": str(self._day_start),
                        "limit": str(self.daily_loss_limit),
                    },
                )
        for sid, s_eq in strategies.items():
            peak = max(self._strategy_peak.get(sid, s_eq), s_eq)
            self._strategy_peak[sid] = peak
            self._strategy_equity[sid] = s_eq
            limit = self.strategy_max_drawdown
            if limit is None or peak <= 0 or ("strategy_drawdown", sid) in self._breaches:
                continue
            dd = 1 - s_eq / peak
            if dd >= limit:
                reason = (
                    f"strategy {sid} drawdown {pct(dd)} (equity {fmt(s_eq, 2)} from peak "
                    f"{fmt(peak, 2)}) reached strategy_max_drawdown {pct(limit)}"
                )
                self._breach(
                    events,
                    ts_ns,
                    Breach("strategy_drawdown", self.strategy_drawdown_action, reason, sid),
                    {
                        "drawdown": str(dd),
                        "equity": str(s_eq),
                        "peak": str(peak),
                        "limit": str(limit),
                    },
                )
        events.extend(self._update_states(ts_ns, "; ".join(notes)))
        return events

    def evaluate_snapshot(
        self,
        snapshot: EquitySnapshot,
        strategy_capital: Mapping[StrategyId, Decimal | float | int | str] | None = None,
    ) -> list[LimitEvent]:
        """`evaluate` a portfolio `EquitySnapshot`.

        A strategy's equity is its capital (``strategy_capital``) plus its attributed PnL
        (``snapshot.strategies[sid].total``); strategies without capital are not checked
        against ``strategy_max_drawdown``.
        """
        capital = strategy_capital or {}
        strategy_equity = {
            sid: decimal_value(capital[sid], f"strategy_capital[{sid}]") + pnl.total
            for sid, pnl in snapshot.strategies.items()
            if sid in capital
        }
        return self.evaluate(snapshot.ts_ns, snapshot.equity, strategy_equity)

    def evaluate_series(
        self, snapshots: Iterable[tuple[int, Decimal | float | int | str]]
    ) -> list[LimitEvent]:
        """`evaluate` every ``(ts_ns, equity)`` pair in order; all the events."""
        events: list[LimitEvent] = []
        for ts_ns, equity in snapshots:
            events.extend(self.evaluate(ts_ns, equity))
        return events

    def halt(self, reason: str, ts_ns: int) -> list[LimitEvent]:
        """Trip the kill switch: HALTED until `reset()` (a RiskEvent and a state change)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"a halt needs a reason, got {reason!r}")
        events: list[LimitEvent] = []
        if ("kill_switch", None) not in self._breaches:
            self._breach(
                events,
                ts_ns,
                Breach("kill_switch", TradingState.HALTED, f"kill switch: {reason}"),
                {},
            )
        events.extend(self._update_states(ts_ns, ""))
        return events

    def reset(self, ts_ns: int, reason: str = "limits reset by the operator") -> list[LimitEvent]:
        """Clear the latched breaches (drawdowns, kill switch) and restart the drawdown
        peaks from the current equity; daily-loss and VaR breaches stay while they hold."""
        for key in [k for k, b in self._breaches.items() if b.latched]:
            del self._breaches[key]
        self._peak = self._equity
        self._strategy_peak = dict(self._strategy_equity)
        return self._update_states(ts_ns, reason)

    # -- internals ------------------------------------------------------------------

    def _evaluate_var(self, ts_ns: int, events: list[LimitEvent]) -> list[str]:
        if self.var_limit is None or len(self._closes) < self.var_min_observations + 1:
            return []
        closes = list(self._closes)
        if any(c <= 0 for c in closes):
            return []
        returns = [b / a - 1.0 for a, b in itertools.pairwise(closes)]
        var = value_at_risk(returns, self.var_confidence, self.var_method)
        self.last_var = var
        key = ("var", None)
        if var > self.var_limit:
            if key not in self._breaches:
                reason = (
                    f"1-day {self.var_method} VaR {self.var_confidence:.0%} of {var:.2%} "
                    f"(from {len(returns)} daily returns) exceeds daily VaR limit "
                    f"{self.var_limit:.2%}"
                )
                self._breach(
                    events,
                    ts_ns,
                    Breach("var", self.var_action, reason, latched=False),
                    {
                        "var": var,
                        "confidence": self.var_confidence,
                        "method": self.var_method,
                        "observations": len(returns),
                        "limit": self.var_limit,
                    },
                )
            return []
        if self._breaches.pop(key, None) is not None:
            return [f"1-day VaR {var:.2%} back within the limit {self.var_limit:.2%}"]
        return []

    def _breach(
        self, events: list[LimitEvent], ts_ns: int, breach: Breach, detail: dict[str, object]
    ) -> None:
        self._breaches[(breach.kind, breach.strategy_id)] = breach
        events.append(
            RiskEvent(
                ts_ns=ts_ns,
                kind=breach.kind,
                reason=breach.reason,
                detail={**detail, "action": str(breach.state)},
                strategy_id=breach.strategy_id,
            )
        )

    def _reason_for(self, state: TradingState, strategy_id: StrategyId | None) -> str | None:
        for b in self.breaches:
            if b.strategy_id == strategy_id and b.state is state:
                return b.reason
        return None

    def _update_states(self, ts_ns: int, note: str) -> list[LimitEvent]:
        events: list[LimitEvent] = []
        node = most_severe(b.state for b in self._breaches.values() if b.strategy_id is None)
        if node is not self._state:
            reason = self._reason_for(node, None) or note or "all portfolio limits clear"
            events.append(
                TradingStateChanged(ts_ns=ts_ns, state=node, reason=reason, previous=self._state)
            )
            self._state = node
        strategies = set(self._strategy_states) | {
            b.strategy_id for b in self._breaches.values() if b.strategy_id is not None
        }
        for sid in sorted(strategies):
            new = most_severe(b.state for b in self._breaches.values() if b.strategy_id == sid)
            old = self._strategy_states.get(sid, TradingState.ACTIVE)
            if new is not old:
                reason = self._reason_for(new, sid) or note or f"strategy {sid} limits clear"
                events.append(
                    TradingStateChanged(
                        ts_ns=ts_ns, state=new, reason=reason, previous=old, strategy_id=sid
                    )
                )
            if new is TradingState.ACTIVE:
                self._strategy_states.pop(sid, None)
            else:
                self._strategy_states[sid] = new
        return events


# ---------------------------------------------------------------------------------------
# Kill switch


class PositionLike(Protocol):
    """What the kill switch reads from a position (e.g. a `PositionEvent` or a portfolio
    position): its owner, instrument and signed quantity."""

    @property
    def strategy_id(self) -> StrategyId | None: ...

    @property
    def instrument_id(self) -> InstrumentId: ...

    @property
    def quantity(self) -> Decimal: ...


@dataclass(frozen=True)
class CloseIntent:
    """A reduce-only market order the node should submit to close a position."""

    strategy_id: StrategyId | None
    instrument_id: InstrumentId
    side: OrderSide
    quantity: Decimal
    reduce_only: bool = True


@dataclass(frozen=True)
class KillSwitchActions:
    """What tripping the kill switch asks of the node, and the events to record."""

    cancel: tuple[ClientOrderId, ...]
    close: tuple[CloseIntent, ...]
    events: tuple[LimitEvent, ...]


class KillSwitch:
    """Halts trading (via `PortfolioLimits.halt`) and lists what to undo.

    `trip` returns the open orders to cancel and, when flattening, one reduce-only close
    intent per non-flat position. It is idempotent while tripped: tripping again lists the
    actions again (orders may have appeared) but emits no second halt. `reset` re-arms it
    and clears the latched limits.
    """

    def __init__(self, limits: PortfolioLimits, *, flatten: bool = False) -> None:
        if not isinstance(limits, PortfolioLimits):
            raise ValueError(f"KillSwitch needs PortfolioLimits, got {limits!r}")
        self.limits = limits
        self.flatten = bool(flatten)

    @property
    def tripped(self) -> bool:
        return any(b.kind == "kill_switch" for b in self.limits.breaches)

    def trip(
        self,
        reason: str,
        ts_ns: int,
        open_orders: Iterable[Order],
        positions: Iterable[PositionLike] = (),
        *,
        flatten: bool | None = None,
        latch: bool = True,
    ) -> KillSwitchActions:
        """The halt's events and what to undo. `latch=False`: the node is already
        HALTED by a breach that clears on its own (a daily loss, at the next UTC day):
        the switch records the halt (a `kill_switch` RiskEvent) and lists the actions,
        but adds no breach of its own, so the node trades again when that one clears."""
        if latch:
            events = self.limits.halt(reason, ts_ns)
        else:
            events = [
                RiskEvent(
                    ts_ns=ts_ns, kind="kill_switch", reason=f"kill switch: {reason}",
                    detail={"action": str(TradingState.HALTED), "latched": False},
                )
            ]  # fmt: skip
        cancel = tuple(
            o.client_order_id
            for o in open_orders
            if o.is_open and o.status is not OrderStatus.PENDING_CANCEL
        )
        close: list[CloseIntent] = []
        if self.flatten if flatten is None else flatten:
            for p in positions:
                qty = decimal_value(p.quantity, f"position {p.instrument_id} quantity")
                if qty == 0:
                    continue
                close.append(
                    CloseIntent(
                        strategy_id=p.strategy_id,
                        instrument_id=p.instrument_id,
                        side=OrderSide.SELL if qty > 0 else OrderSide.BUY,
                        quantity=abs(qty),
                    )
                )
        return KillSwitchActions(cancel=cancel, close=tuple(close), events=tuple(events))

    def reset(
        self, ts_ns: int, reason: str = "kill switch reset by the operator"
    ) -> list[LimitEvent]:
        return self.limits.reset(ts_ns, reason)
