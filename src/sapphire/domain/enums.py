"""The trading vocabulary as enums.

Every enum is a `StrEnum` whose values equal the member names (``OrderSide.BUY ==
"BUY"``), so the same word appears in code, JSON and database rows.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ContingencyType",
    "ContractType",
    "LiquiditySide",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "PositionSide",
    "TimeInForce",
    "TradingState",
    "TrailingOffsetType",
]


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL (the sign of the position change)."""
        return _SIGN[self]

    @property
    def opposite(self) -> OrderSide:
        return _OPPOSITE[self]


# plain dict lookups: faster than reading the members off the class on every call
_SIGN: dict[OrderSide, int] = {OrderSide.BUY: 1, OrderSide.SELL: -1}
_OPPOSITE: dict[OrderSide, OrderSide] = {
    OrderSide.BUY: OrderSide.SELL,
    OrderSide.SELL: OrderSide.BUY,
}


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    TRAILING_STOP = "TRAILING_STOP"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till canceled
    IOC = "IOC"  # immediate or cancel (the unfilled rest is canceled)
    FOK = "FOK"  # fill or kill (all at once or nothing)
    GTD = "GTD"  # good till date (`expire_time_ns`)


class OrderStatus(StrEnum):
    INITIALIZED = "INITIALIZED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        """FILLED, CANCELED, REJECTED and EXPIRED: no event can change the order any more."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class LiquiditySide(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class PositionSide(StrEnum):
    FLAT = "FLAT"
    LONG = "LONG"
    SHORT = "SHORT"


class TrailingOffsetType(StrEnum):
    PRICE = "PRICE"  # offset in quote currency (price units)
    PERCENT = "PERCENT"  # offset in percent of the reference price (1.5 = 1.5 %)


class ContingencyType(StrEnum):
    NONE = "NONE"
    OCO = "OCO"  # one cancels the other(s)
    OTO = "OTO"  # one triggers the other(s) (the parent's fill releases the children)
    BRACKET = "BRACKET"  # an entry with a stop-loss and a take-profit (OTO + OCO)


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # everything allowed
    REDUCING = "REDUCING"  # only orders that reduce positions (and cancels)
    HALTED = "HALTED"  # nothing but cancels


class ContractType(StrEnum):
    SPOT = "SPOT"
    PERPETUAL = "PERPETUAL"
    FUTURE = "FUTURE"
