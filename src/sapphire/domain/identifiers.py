"""Typed identifiers: an id is never a bare string passed around.

`InstrumentId` is a (symbol, venue) pair written `"BTC/USDT:USDT@BYBIT"`. The other ids
are thin `str` subclasses: they compare, hash, serialise and store exactly like the
string they wrap, but a type checker keeps a `StrategyId` from being passed where a
`ClientOrderId` is expected, and construction rejects empty or padded values.

`ClientOrderIdGenerator(strategy_id, run_id)` numbers a strategy's orders within one run:
``f"{run_id}-{strategy_id}-{seq}"`` with seq = 1, 2, ... The same (run, strategy,
sequence) always gives the same id, so after a crash the node restores the counter
(`restore(last_seq)`, the highest sequence found in the store, see `seq_of`) and an
order that was being resubmitted gets the id it had before: the venue then recognises
the duplicate instead of opening a second order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

__all__ = [
    "AccountId",
    "ClientOrderId",
    "ClientOrderIdGenerator",
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
    """Our id of an order, chosen before it is sent (see `ClientOrderIdGenerator`)."""

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


class ClientOrderIdGenerator:
    """Client order ids ``"{run_id}-{strategy_id}-{seq}"`` for one strategy in one run."""

    __slots__ = ("_prefix", "_run_id", "_seq", "_strategy_id")

    def __init__(self, strategy_id: StrategyId | str, run_id: str) -> None:
        self._strategy_id = StrategyId(strategy_id)
        if not isinstance(run_id, str) or not run_id or any(c.isspace() for c in run_id):
            raise ValueError(f"run_id must be a non-empty str without spaces, got {run_id!r}")
        self._run_id = run_id
        self._prefix = f"{run_id}-{self._strategy_id}-"
        self._seq = 0

    @property
    def strategy_id(self) -> StrategyId:
        return self._strategy_id

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest id handed out (0 before the first)."""
        return self._seq

    def id_for(self, seq: int) -> ClientOrderId:
        """The id of sequence number `seq` (>= 1), without moving the counter."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"a client order id sequence is an int >= 1, got {seq!r}")
        return ClientOrderId(f"{self._prefix}{seq}")

    def next(self) -> ClientOrderId:
        """The next id: sequence `last_seq + 1`."""
        seq = self._seq + 1
        # the prefix was checked in __init__ (no whitespace) and seq is a positive int,
        # so the id is valid by construction: skip ClientOrderId's re-validation
        client_order_id = str.__new__(ClientOrderId, f"{self._prefix}{seq}")
        self._seq = seq
        return client_order_id

    def restore(self, last_seq: int) -> None:
        """Continue after `last_seq` (the highest sequence already used; 0 = none)."""
        if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
            raise ValueError(f"last_seq must be an int >= 0, got {last_seq!r}")
        self._seq = last_seq

    def seq_of(self, client_order_id: str) -> int | None:
        """The sequence number of an id this generator makes, or None for a foreign id."""
        if not client_order_id.startswith(self._prefix):
            return None
        tail = client_order_id[len(self._prefix) :]
        if not tail.isascii() or not tail.isdigit() or tail.startswith("0"):
            return None
        return int(tail)

    def __repr__(self) -> str:
        return (
            f"ClientOrderIdGenerator(strategy_id={str(self._strategy_id)!r}, "
            f"run_id={self._run_id!r}, last_seq={self._seq})"
        )
