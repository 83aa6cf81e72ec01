"""Typed identifiers: an id is never a bare string passed around.

`InstrumentId` is a (symbol, venue) pair written `"BTC/USDT:USDT@BYBIT"`. The other ids
are thin `str` subclasses: they compare, hash, serialise and store exactly like the
string they wrap, but a type checker keeps a `StrategyId` from being passed where a
`ClientOrderId` is expected, and construction rejects empty or padded values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

__all__ = [
    "AccountId",
    "ClientOrderId",
    "InstrumentId",
    "StrategyId",
    "TradeId",
    "VenueOrderId",
]


def _check_token(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise ValueError(f"{kind} must not be empty")
    # str.split() cuts at exactly the characters for which str.isspace() is true, so a
    # non-empty value without whitespace is the one piece it splits into
    parts = value.split()
    if len(parts) != 1 or parts[0] != value:
        raise ValueError(f"{kind} must not contain whitespace: {value!r}")
    return value


class _Identifier(str):
    """A non-empty, whitespace-free string with its own type."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        return super().__new__(cls, _check_token(cls.__name__, value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __getnewargs__(self) -> tuple[str]:  # pickling goes through __new__
        return (str(self),)


class StrategyId(_Identifier):
    """The name of one strategy instance, e.g. ``StrategyId("sma_cross-1")``."""

    __slots__ = ()


class ClientOrderId(_Identifier):
    """Our id of an order, chosen before it is sent (see `sapphire.domain.ids`)."""

    __slots__ = ()


class VenueOrderId(_Identifier):
    """The exchange's id of an order, known once the venue accepts it."""

    __slots__ = ()


class TradeId(_Identifier):
    """The venue's id of one execution (fill)."""

    __slots__ = ()


class AccountId(_Identifier):
    """An account at a venue, e.g. ``AccountId("BYBIT-main")``."""

    __slots__ = ()


@dataclass(frozen=True)
class InstrumentId:
    """A tradable instrument at one venue: ``str(id) == "BTC/USDT:USDT@BYBIT"``.

    The symbol may contain ``/`` and ``:`` (ccxt unified symbols) but not ``@``, which
    separates it from the venue.
    """

    # slotted by hand to keep the hash (the id keys many dicts on hot paths) in a slot
    # that is not a dataclass field: fields, equality and the hash value are (symbol,
    # venue) as with a generated __hash__
    __slots__ = ("_hash", "symbol", "venue")
    _hash: ClassVar[int]  # set in __post_init__, in its slot (ClassVar: not a field)

    symbol: str
    venue: str

    def __post_init__(self) -> None:
        _check_token("InstrumentId.symbol", self.symbol)
        _check_token("InstrumentId.venue", self.venue)
        if "@" in self.symbol:
            raise ValueError(f"InstrumentId.symbol must not contain '@': {self.symbol!r}")
        if "@" in self.venue:
            raise ValueError(f"InstrumentId.venue must not contain '@': {self.venue!r}")
        object.__setattr__(self, "_hash", hash((self.symbol, self.venue)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[InstrumentId], tuple[str, str]]:
        # a frozen, hand-slotted object is rebuilt through __init__ (pickle, copy)
        return (InstrumentId, (self.symbol, self.venue))

    def __str__(self) -> str:
        return f"{self.symbol}@{self.venue}"

    @classmethod
    def parse(cls, value: str) -> InstrumentId:
        """The inverse of `str()`: ``InstrumentId.parse("BTCUSDT@BYBIT")``."""
        if not isinstance(value, str) or value.count("@") != 1:
            raise ValueError(f"an instrument id looks like 'SYMBOL@VENUE', got {value!r}")
        symbol, venue = value.split("@")
        return cls(symbol, venue)
