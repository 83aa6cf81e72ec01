"""`RiskMonitor`: the node's portfolio limits, fed once per bar, acted upon.

Added to a node like a strategy (`node.add_strategy(monitor, bars=[...])`), it takes
the node's equity at each bar's close (the portfolio at the last prices) and, for each
strategy given a capital, that capital plus the strategy's attributed PnL, and feeds
them to `PortfolioLimits.evaluate`. It publishes the `RiskEvent`s and
`TradingStateChanged`s on the node's bus (and keeps them in `events`), and acts:

- the node-wide state (`limits.state`) becomes `node.trading_state` and each
  strategy's own state goes to `node.strategy_states`, which the pre-trade checks use
  (REDUCING: only orders that reduce a position; HALTED: none);
- when the node moves to HALTED, `KillSwitch.trip` lists the open orders, which are
  canceled, and (with `flatten`, the default) one reduce-only market order per open
  position, submitted for the strategy holding it (tag `kill_switch`) *before* the
  state is set, since a halted node refuses every order; a strategy halted on its own
  has its orders canceled and its positions closed the same way. A halt by a drawdown
  (or the operator's kill switch) stays until the limits are reset; a halt by the
  daily loss limit ends at the next UTC day, when that breach clears, and the node
  trades again.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sapphire.domain import (
    OrderSide,
    OrderStatus,
    OrderType,
    RiskEvent,
    StrategyId,
    TradingState,
    TradingStateChanged,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine.node import ZERO_EQUITY_TAG
from sapphire.engine.strategy import EventStrategy
from sapphire.risk import CloseIntent, KillSwitch, PortfolioLimits

__all__ = [
    "EquityGuard", "RiskMonitor", "refusal_counts", "refusal_summary", "zero_equity_warning",
]  # fmt: skip

_HALTED = TradingState.HALTED
KILL_SWITCH_TAG = "kill_switch"
#: why the node denies every order after the `EquityGuard` stopped it
ZERO_EQUITY_DENIAL = "trading stopped: the equity reached zero"
_FIGURE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


class RiskMonitor(EventStrategy):
    """Feeds `limits` with the node's equity once per bar and enforces the states.

    `strategy_capital` maps strategy ids to their allocated capital (for the
    per-strategy drawdown limit); `None` gives a node with one trading strategy the
    whole starting equity, and several strategies none (portfolio limits only).
    """

    def __init__(
        self,
        limits: PortfolioLimits,
        *,
        flatten: bool = True,
        strategy_capital: Mapping[str, Decimal | float | str] | None = None,
        strategy_id: str = "risk_monitor",
    ) -> None:
        super().__init__(strategy_id)
        if not isinstance(limits, PortfolioLimits):
            raise ValueError(f"RiskMonitor needs PortfolioLimits, got {limits!r}")
        self.limits = limits
        self.kill_switch = KillSwitch(limits, flatten=flatten)
        self._capital_given = strategy_capital
        self.capital: dict[StrategyId, Decimal] = {}
        self.events: list[RiskEvent | TradingStateChanged] = []

    def on_start(self) -> None:
        node = self.node
        traders = [s for s in node.strategies if s is not self]
        if self._capital_given is not None:
            self.capital = {StrategyId(k): to_decimal(v) for k, v in self._capital_given.items()}
        elif len(traders) == 1:
            self.capital = {traders[0].strategy_id: node.portfolio.equity(node._marks())}

    def on_bar(self, bar: Any) -> None:
        self.check()

    def check(self) -> None:
        """Evaluate the limits on the equity now and act on the state changes."""
        node = self.node
        ts = node.clock.now_ns()
        marks = node._marks()
        portfolio = node.portfolio
        if any(p.instrument_id not in marks for p in portfolio.open_positions()):
            return  # a position without a price cannot be valued yet
        equity = portfolio.equity(marks)
        strategy_equity = {
            sid: cap + portfolio.strategy_pnl(sid, marks).total for sid, cap in self.capital.items()
        }
        self._publish(self.limits.evaluate(ts, equity, strategy_equity))
        state = self.limits.state
        if state is _HALTED and node.trading_state is not _HALTED:
            reason = next(
                (e.reason for e in reversed(self.events) if isinstance(e, RiskEvent)),
                "portfolio limit breached",
            )
            # a halt that clears on its own (a daily loss, at the next UTC day) is not
            # latched by the switch: the node trades again when the breach clears
            latched = any(
                b.latched
                for b in self.limits.breaches
                if b.strategy_id is None and b.state is _HALTED
            )
            actions = self.kill_switch.trip(
                reason, ts, node.open_orders(), portfolio.open_positions(), latch=latched
            )
            self._publish(list(actions.events))
            for cid in actions.cancel:
                node.cancel_order(cid)
            for intent in actions.close:
                self._close(intent)
        for sid in self.capital:
            own = self.limits.state_for(sid)
            if own is _HALTED and state is not _HALTED and node.strategy_states.get(sid) is not own:
                self._halt_strategy(sid)  # halted on its own (the node's halt closed all)
            node.strategy_states[sid] = own
        node.trading_state = self.limits.state

    def enforce_halt(self) -> None:
        """Make a HALTED node flat again after a restart (the process may have died
        between the halt and its kill-switch orders): cancel every open order but the
        closing ones already sent, close each position that has none, then HALT."""
        node = self.node
        node.trading_state = TradingState.REDUCING  # only reducing orders pass
        closing: set[tuple[str, object]] = set()
        for order in node.open_orders():
            if order.reduce_only and order.type is OrderType.MARKET and not order.parent_order_id:
                closing.add((str(order.strategy_id), order.instrument_id))
            elif order.status is not OrderStatus.PENDING_CANCEL:
                node.cancel_order(order.client_order_id)
        for pos in node.portfolio.open_positions():
            if (str(pos.strategy_id), pos.instrument_id) in closing:
                continue
            qty = pos.quantity
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            self._close(CloseIntent(pos.strategy_id, pos.instrument_id, side, abs(qty)))
        node.trading_state = _HALTED

    def _halt_strategy(self, sid: StrategyId) -> None:
        node = self.node
        for order in node.open_orders():
            if order.strategy_id == sid and order.status is not OrderStatus.PENDING_CANCEL:
                node.cancel_order(order.client_order_id)
        for pos in node.portfolio.open_positions(sid):
            qty = pos.quantity
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            self._close(CloseIntent(sid, pos.instrument_id, side, abs(qty)))

    def _close(self, intent: CloseIntent) -> None:
        node = self.node
        owner = next((s for s in node.strategies if s.strategy_id == intent.strategy_id), None)
        if owner is None:
            return
        order = owner.market(intent.instrument_id, intent.side, intent.quantity, reduce_only=True)
        node.submit_order(owner, order, tag=KILL_SWITCH_TAG)

    def _publish(self, events: list[RiskEvent | TradingStateChanged]) -> None:
        for event in events:
            self.events.append(event)
            self.node.bus.publish(event)


def zero_equity_warning(ts_ns: int) -> str:
    """What a run stopped by `EquityGuard` (or the kernel's same rule) says about it."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(ts_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
    return f"equity reached zero at {when} UTC; trading stopped"


class EquityGuard(EventStrategy):
    """Stops trading for good when the equity at a bar's close is zero or less.

    Added to a node before the trading strategies (it sees each bar's close first), it
    then cancels every working order, closes each open position with a market order
    (tag `zero_equity`: filled at the next bar's open, as the kernel's rule) and sets
    `node.stopped`, after which the node denies every other order. `stopped_ns` is the
    open time of that bar, `stopped_bar` its index (the node's `bar_index`).
    """

    def __init__(self, strategy_id: str = "equity_guard") -> None:
        super().__init__(strategy_id)
        self.stopped_ns: int | None = None
        self.stopped_bar: int | None = None

    def on_bar(self, bar: Any) -> None:
        self.check(bar.ts_ns)

    def check(self, ts_ns: int) -> None:
        """Stop trading when the equity at the last prices is zero or less."""
        node = self.node
        if node.stopped is not None:
            return
        marks = node._marks()
        portfolio = node.portfolio
        if any(p.instrument_id not in marks for p in portfolio.open_positions()):
            return  # a position without a price cannot be valued yet
        if portfolio.equity(marks) > 0:
            return
        self.stopped_ns, self.stopped_bar = ts_ns, node.bar_index
        # published (a session's journal commits it) before anything acts on the stop, so
        # that a resumed run stays stopped (`SessionJournal.restore`)
        node.bus.publish(RiskEvent(
            event_id=node.next_event_id(), ts_ns=ts_ns, kind=ZERO_EQUITY_TAG,
            reason=zero_equity_warning(ts_ns), detail={"bar": node.bar_index},
        ))  # fmt: skip
        for order in node.open_orders():
            if order.status is not OrderStatus.PENDING_CANCEL:
                node.cancel_order(order.client_order_id)
        node.stopped = ZERO_EQUITY_DENIAL
        by_id = {s.strategy_id: s for s in node.strategies}
        for pos in portfolio.open_positions():
            owner = by_id.get(pos.strategy_id) if pos.strategy_id is not None else None
            if owner is None:
                continue
            side = OrderSide.SELL if pos.quantity > 0 else OrderSide.BUY
            order = owner.market(pos.instrument_id, side, abs(pos.quantity), reduce_only=True)
            node.submit_order(owner, order, tag=ZERO_EQUITY_TAG)


def refusal_counts(reasons: Iterable[str]) -> dict[str, int]:
    """The refused orders of a run counted by main reason, most frequent first: a reason's
    text up to its first ": " or "; ", without its brackets, every figure as N (e.g.
    `required margin N QUOTE exceeds free margin N QUOTE`)."""
    kinds: Counter[str] = Counter()
    for reason in reasons:
        head = re.split(r"[:;] ", reason, maxsplit=1)[0]
        head = _FIGURE.sub("N", re.sub(r"\s*\([^)]*\)", "", head))
        kinds[" ".join(head.split()) or reason] += 1
    return dict(kinds.most_common())


def refusal_summary(counts: Mapping[str, int]) -> str | None:
    """`"717 orders denied (required margin: 717)"` from `refusal_counts` (the three main
    reasons); None when no order was refused."""
    total = sum(counts.values())
    if not total:
        return None
    parts = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:3])
    more = len(counts) - 3
    tail = f", {more} other reason{'s' if more > 1 else ''}" if more > 0 else ""
    return f"{total} order{'s' if total > 1 else ''} denied ({parts}{tail})"
