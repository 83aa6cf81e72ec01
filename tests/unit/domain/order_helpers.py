"""Builders for order tests: one place that knows every event's fields."""

from __future__ import annotations

from decimal import Decimal
from itertools import count
from typing import Any

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    StrategyId,
    TradeId,
    VenueOrderId,
)

COID = ClientOrderId("run-s-1")
SID = StrategyId("s")
IID = InstrumentId("BTC/USDT:USDT", "BYBIT")
_trades = count(1)


def limit_order(qty: str = "10", price: str = "100", **kw: Any) -> Order:
    return Order(COID, SID, IID, OrderSide.BUY, OrderType.LIMIT, Decimal(qty), price=Decimal(price),
                 ts_init=1, **kw)  # fmt: skip


def event(kind: str, ts: int = 10, coid: ClientOrderId = COID, **kw: Any) -> OrderEvent:
    """One order event by short name: submit, deny, accept, reject, cancel_request,
    cancel_rejected, canceled, expire, update, fill."""
    common: dict[str, Any] = {"ts_ns": ts, "client_order_id": coid}
    if kind == "submit":
        return OrderSubmitted(**common)
    if kind == "deny":
        return OrderDenied(**common, reason=kw.get("reason", "max notional"))
    if kind == "accept":
        return OrderAccepted(**common, venue_order_id=VenueOrderId(kw.get("venue", "V1")))
    if kind == "reject":
        return OrderRejected(**common, reason="insufficient margin")
    if kind == "cancel_request":
        return OrderCancelRequested(**common)
    if kind == "cancel_rejected":
        return OrderCancelRejected(**common, reason="too late to cancel")
    if kind == "canceled":
        return OrderCanceled(**common)
    if kind == "expire":
        return OrderExpired(**common)
    if kind == "update":
        return OrderUpdated(**common, **kw)
    if kind == "fill":
        return OrderFilled(
            **common,
            trade_id=TradeId(kw.get("trade_id", f"T{next(_trades)}")),
            last_qty=Decimal(kw.get("qty", "1")),
            last_px=Decimal(kw.get("px", "100")),
            liquidity=LiquiditySide.MAKER,
            fee=Decimal(kw.get("fee", "0.01")),
            fee_currency="USDT",
            venue_order_id=None if kw.get("venue") is None else VenueOrderId(kw["venue"]),
        )
    raise AssertionError(f"unknown event kind {kind}")


def drive(order: Order, *kinds: str) -> Order:
    for i, kind in enumerate(kinds):
        order.apply(event(kind, ts=10 + i))
    return order
