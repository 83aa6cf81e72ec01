"""The pre-trade check: a new order of the node, seen by its `RiskEngine`.

The risk engine (`sapphire.risk`) judges an order against a `RiskContext`; this module
builds that context from the node's books (portfolio, last prices, working orders,
trading state) and turns a denial into the reason the node reports.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from sapphire.domain import Order, OrderInitialized, TradingState
from sapphire.domain.events import trusted_builder
from sapphire.risk import RiskContext, severity

if TYPE_CHECKING:
    from sapphire.engine.node import Sizer, TradingNode

__all__ = ["check"]

_new_context = trusted_builder(RiskContext)


def check(node: TradingNode, order: Order, ts: int, sizer: Sizer | None = None) -> str | None:
    """The reason the node's risk engine denies `order` at `ts`, or None.

    With a `sizer` (the quantity is worked out at the fill), the check sees the quantity
    the sizer gives at the latest price (the last close; a bar venue fills at the next
    open) and the portfolio's equity now, not the order's placeholder quantity; the
    order sent keeps the sizer.
    """
    risk = node.risk
    assert risk is not None
    portfolio = node.portfolio
    iid = order.instrument_id
    inst = portfolio.instrument(iid)
    last = node.last.get(iid)
    if last is None:
        return f"no price seen yet for {iid}: cannot check the order"
    marks = node._marks()
    account = portfolio.account
    mark = marks[iid]
    state = node.trading_state
    own = node.strategy_states.get(order.strategy_id) if node.strategy_states else None
    if own is not None and severity(own) > severity(state):
        state = own
    # the rest comes from the node's own books (finite Decimals, gross >= 0,
    # leverage > 0): with a valid time, state and mark, skip RiskContext's checks
    trusted = (
        type(ts) is int
        and type(state) is TradingState
        and type(mark) is Decimal
        and mark.is_finite()
        and mark > 0
    )
    ctx = (_new_context if trusted else RiskContext)(
        instrument=inst,
        last_price=mark,
        position_qty=portfolio.net_quantity(iid),
        gross_exposure=portfolio.gross_exposure(marks),
        open_orders=len(node._open),
        free_balance=account.free_margin(inst.settlement, marks),
        trading_state=state,
        ts_ns=ts,
        leverage=account.leverage,
    )
    checked = order
    if sizer is not None:
        est = sizer(mark, portfolio.equity(marks))
        if isinstance(est, Decimal) and est.is_finite() and est > 0:
            init = order.events[0]
            assert isinstance(init, OrderInitialized)
            checked = Order.from_init(replace(init, quantity=inst.quantize_qty(est)))
    decision = risk.check(checked, ctx)
    if decision.ok:
        return None
    if checked is not order:
        return (
            f"{decision.reason} (quantity {checked.quantity.normalize():f} estimated by the "
            f"sizer at the last price {mark})"
        )
    return decision.reason
