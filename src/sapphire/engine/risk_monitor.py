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
  has its orders canceled and its positions closed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from sapphire.engine.strategy import EventStrategy
from sapphire.risk import CloseIntent, KillSwitch, PortfolioLimits

__all__ = ["RiskMonitor"]

_HALTED = TradingState.HALTED
KILL_SWITCH_TAG = "kill_switch"


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
            actions = self.kill_switch.trip(
                reason, ts, node.open_orders(), portfolio.open_positions()
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
