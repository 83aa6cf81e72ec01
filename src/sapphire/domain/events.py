"""Events and market data: immutable facts with an int-nanosecond UTC timestamp.

*Order events* (`OrderEvent` subclasses) drive `Order.apply`; the first event of every
order is `OrderInitialized`, which carries the whole order specification, so an order
is rebuilt exactly by replaying its events (`Order.from_events`). *Account and risk
events* report position, balance and trading-state changes. Both kinds have `ts_ns`
and an `event_id` (a random hex id unless given). *Market data* (`Bar`, `TradeTick`,
`OrderBookDelta`, `OrderBook`) carries floats: it feeds analytics, never the ledger.

All events are frozen, slotted dataclasses with keyword-only fields; money and
quantities are `Decimal` (str/int/float input is converted, a float via `str`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal
from typing import Any, TypeVar

from sapphire.domain.enums import (
    ContingencyType,
    LiquiditySide,
    OrderSide,
    OrderType,
    PositionSide,
    TimeInForce,
    TradingState,
    TrailingOffsetType,
)
from sapphire.domain.identifiers import (
    AccountId,
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.instrument import to_decimal

__all__ = [
    "AccountBalance",
    "AccountState",
    "Bar",
    "Event",
    "OrderAccepted",
    "OrderBook",
    "OrderBookDelta",
    "OrderCancelRejected",
    "OrderCancelRequested",
    "OrderCanceled",
    "OrderDenied",
    "OrderEvent",
    "OrderExpired",
    "OrderFilled",
    "OrderInitialized",
    "OrderRejected",
    "OrderSubmitted",
    "OrderUpdated",
    "PositionChanged",
    "PositionClosed",
    "PositionEvent",
    "PositionOpened",
    "RiskEvent",
    "TradeTick",
    "TradingStateChanged",
]

_PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_TRIGGERED = frozenset({OrderType.STOP_MARKET, OrderType.STOP_LIMIT})


_ID_POOL: list[str] = []  # random ids drawn in batches (one os.urandom call per 256)
_ID_BATCH = 256


def _refill_ids() -> None:
    raw = bytearray(os.urandom(16 * _ID_BATCH))
    for k in range(0, len(raw), 16):  # what uuid.uuid4() does to its 16 random bytes
        raw[k + 6] = (raw[k + 6] & 0x0F) | 0x40
        raw[k + 8] = (raw[k + 8] & 0x3F) | 0x80
    text = raw.hex()
    _ID_POOL.extend(text[i : i + 32] for i in range(0, len(text), 32))


# a forked child must not hand out the ids its parent drew
os.register_at_fork(after_in_child=_ID_POOL.clear)


def new_event_id() -> str:
    """A fresh random event id (32 hex characters: a version-4 UUID's hex)."""
    while True:
        try:
            return _ID_POOL.pop()
        except IndexError:
            _refill_ids()


def check_ts(value: object, name: str = "ts_ns") -> int:
    """`value` if it is an int >= 0 (nanoseconds since the epoch, UTC), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be int nanoseconds, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _positive(obj: object, name: str, *, optional: bool = False) -> None:
    raw = getattr(obj, name)
    if raw is None and optional:
        return
    if type(raw) is Decimal and raw.is_finite():
        if raw > 0:
            return  # already a finite Decimal: nothing to convert
        value = raw
    else:
        value = to_decimal(raw, f"{type(obj).__name__}.{name}")
    if value <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value}")
    _set(obj, name, value)


def _decimal(obj: object, name: str) -> None:
    raw = getattr(obj, name)
    if type(raw) is Decimal and raw.is_finite():
        return
    _set(obj, name, to_decimal(raw, f"{type(obj).__name__}.{name}"))


def _typed(obj: object, name: str, cls: type, *, optional: bool = False) -> None:
    value = getattr(obj, name)
    if value is None and optional:
        return
    if not isinstance(value, cls):
        raise ValueError(f"{type(obj).__name__}.{name} must be a {cls.__name__}, got {value!r}")


def _enum(obj: object, name: str, cls: type, *, optional: bool = False) -> None:
    value = getattr(obj, name)
    if type(value) is cls or (value is None and optional):
        return
    try:
        _set(obj, name, cls(value))
    except ValueError:
        raise ValueError(
            f"{type(obj).__name__}.{name} must be a {cls.__name__}, got {value!r}"
        ) from None


def _text(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{type(obj).__name__}.{name} must be a non-empty str, got {value!r}")


_E = TypeVar("_E")
_BUILDERS: dict[type, Any] = {}


def trusted_builder(cls: type[_E]) -> Callable[..., _E]:
    """A keyword-only constructor of `cls` (a frozen dataclass, e.g. an event) that
    does NOT validate or convert its fields.

    Internal: only for code that produces the values itself and guarantees what
    `__post_init__` would check (int ``ts_ns`` >= 0, a non-empty ``event_id``, typed ids,
    enum members, finite Decimals with the required signs). The venue and the node use
    it for the events they generate; input from outside always goes through the
    validating constructor.
    """
    builder = _BUILDERS.get(cls)
    if builder is None:
        namespace: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__}
        params = []
        body = []
        for k, f in enumerate(fields(cls)):  # type: ignore[arg-type]
            name = f.name
            if f.default is not MISSING:
                namespace[f"_d{k}"] = f.default
                params.append(f"{name}=_d{k}")
            elif f.default_factory is not MISSING:
                namespace[f"_f{k}"] = f.default_factory
                namespace["_MISSING"] = MISSING
                params.append(f"{name}=_MISSING")
                body.append(f"    if {name} is _MISSING: {name} = _f{k}()")
            else:
                params.append(name)
            body.append(f"    _set(obj, {name!r}, {name})")
        source = (
            f"def build(*, {', '.join(params)}):\n    obj = _new(_cls)\n"
            + "\n".join(body)
            + "\n    return obj\n"
        )
        namespace["_cls"] = cls
        exec(source, namespace)  # the way dataclasses write __init__
        builder = _BUILDERS[cls] = namespace["build"]
    return builder


def trusted(cls: type[_E], **values: Any) -> _E:
    """`cls(**values)` without validation: see `trusted_builder`."""
    return trusted_builder(cls)(**values)


# ---------------------------------------------------------------------------------------
# Base classes


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened at `ts_ns` (int ns since the epoch, UTC)."""

    ts_ns: int
    event_id: str = field(default_factory=new_event_id)

    def __post_init__(self) -> None:
        check_ts(self.ts_ns, f"{type(self).__name__}.ts_ns")
        _text(self, "event_id")
        self._validate()

    def _validate(self) -> None:
        """Per-class checks and conversions (subclasses override)."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent(Event):
    """An event in the life of the order `client_order_id`."""

    client_order_id: ClientOrderId

    def __post_init__(self) -> None:
        # the common valid case is tested inline; the helpers raise the errors
        ts = self.ts_ns
        if type(ts) is not int or ts < 0:
            check_ts(ts, f"{type(self).__name__}.ts_ns")
        event_id = self.event_id
        if type(event_id) is not str or not event_id.strip():
            _text(self, "event_id")
        if not isinstance(self.client_order_id, ClientOrderId):
            _typed(self, "client_order_id", ClientOrderId)
        self._validate()


# ---------------------------------------------------------------------------------------
# Order events


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderInitialized(OrderEvent):
    """An order was created; carries its full specification (validated here).

    Rules: LIMIT needs `price`; STOP_MARKET needs `trigger_price`; STOP_LIMIT needs
    both; TRAILING_STOP needs `trailing_offset` (an optional `trigger_price` is its
    initial stop); MARKET has neither. `post_only` only on LIMIT orders that rest
    (not IOC/FOK). GTD needs `expire_time_ns`, which no other time in force may have.
    Contingent orders (OCO/OTO/BRACKET) name at least one linked order.
    """

    strategy_id: StrategyId
    instrument_id: InstrumentId
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    trailing_offset: Decimal | None = None
    trailing_offset_type: TrailingOffsetType | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_time_ns: int | None = None
    post_only: bool = False
    reduce_only: bool = False
    contingency_type: ContingencyType = ContingencyType.NONE
    parent_order_id: ClientOrderId | None = None
    linked_order_ids: tuple[ClientOrderId, ...] = ()

    def _validate(self) -> None:
        name = f"order {self.client_order_id}"
        # each helper is called only when its inline test of the common case fails
        if not isinstance(self.strategy_id, StrategyId):
            _typed(self, "strategy_id", StrategyId)
        if not isinstance(self.instrument_id, InstrumentId):
            _typed(self, "instrument_id", InstrumentId)
        if type(self.side) is not OrderSide:
            _enum(self, "side", OrderSide)
        if type(self.type) is not OrderType:
            _enum(self, "type", OrderType)
        if type(self.time_in_force) is not TimeInForce:
            _enum(self, "time_in_force", TimeInForce)
        if type(self.contingency_type) is not ContingencyType:
            _enum(self, "contingency_type", ContingencyType)
        if self.trailing_offset_type is not None:
            _enum(self, "trailing_offset_type", TrailingOffsetType, optional=True)
        qty = self.quantity
        if type(qty) is not Decimal or not qty.is_finite() or not qty > 0:
            _positive(self, "quantity")
        if self.price is not None:
            _positive(self, "price", optional=True)
        if self.trigger_price is not None:
            _positive(self, "trigger_price", optional=True)
        if self.trailing_offset is not None:
            _positive(self, "trailing_offset", optional=True)
        kind = self.type
        if kind in _PRICED and self.price is None:
            raise ValueError(f"{name}: a {kind} order needs a price")
        if kind not in _PRICED and self.price is not None:
            raise ValueError(f"{name}: a {kind} order takes no price (got {self.price})")
        if kind in _TRIGGERED and self.trigger_price is None:
            raise ValueError(f"{name}: a {kind} order needs a trigger_price")
        if kind in (OrderType.MARKET, OrderType.LIMIT) and self.trigger_price is not None:
            raise ValueError(f"{name}: a {kind} order takes no trigger_price")
        if kind is OrderType.TRAILING_STOP:
            if self.trailing_offset is None:
                raise ValueError(f"{name}: a TRAILING_STOP order needs a trailing_offset")
            if self.trailing_offset_type is None:
                _set(self, "trailing_offset_type", TrailingOffsetType.PRICE)
            if (
                self.trailing_offset_type is TrailingOffsetType.PERCENT
                and self.trailing_offset >= 100
            ):
                raise ValueError(
                    f"{name}: a PERCENT trailing_offset must be < 100, got {self.trailing_offset}"
                )
        elif self.trailing_offset is not None or self.trailing_offset_type is not None:
            raise ValueError(f"{name}: only TRAILING_STOP orders take a trailing offset")
        if type(self.post_only) is not bool or type(self.reduce_only) is not bool:
            for flag in ("post_only", "reduce_only"):
                if not isinstance(getattr(self, flag), bool):
                    raise ValueError(f"{name}: {flag} must be a bool, got {getattr(self, flag)!r}")
        if self.post_only:
            if kind is not OrderType.LIMIT:
                raise ValueError(f"{name}: post_only is only for LIMIT orders, not {kind}")
            if self.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
                raise ValueError(f"{name}: post_only cannot be {self.time_in_force}")
        if self.time_in_force is TimeInForce.GTD:
            if self.expire_time_ns is None:
                raise ValueError(f"{name}: a GTD order needs expire_time_ns")
            check_ts(self.expire_time_ns, "expire_time_ns")
        elif self.expire_time_ns is not None:
            raise ValueError(
                f"{name}: expire_time_ns is only for GTD orders, not {self.time_in_force}"
            )
        _typed(self, "parent_order_id", ClientOrderId, optional=True)
        linked = tuple(self.linked_order_ids)
        for other in linked:
            if not isinstance(other, ClientOrderId):
                raise ValueError(f"{name}: linked_order_ids must be ClientOrderIds, got {other!r}")
        if self.client_order_id in linked or self.parent_order_id == self.client_order_id:
            raise ValueError(f"{name}: an order cannot be linked to itself")
        if len(set(linked)) != len(linked):
            raise ValueError(f"{name}: duplicate linked_order_ids {linked}")
        if self.contingency_type is ContingencyType.NONE and linked:
            raise ValueError(f"{name}: linked_order_ids {linked} need a contingency_type")
        if self.contingency_type is not ContingencyType.NONE and not linked:
            raise ValueError(f"{name}: a {self.contingency_type} order needs linked_order_ids")
        _set(self, "linked_order_ids", linked)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(OrderEvent):
    """The risk engine refused the order before it was sent."""

    reason: str

    def _validate(self) -> None:
        _text(self, "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(OrderEvent):
    """The order was sent to the venue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted(OrderEvent):
    """The venue acknowledged the order and gave it `venue_order_id`."""

    venue_order_id: VenueOrderId

    def _validate(self) -> None:
        _typed(self, "venue_order_id", VenueOrderId)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(OrderEvent):
    """The venue refused the order."""

    reason: str

    def _validate(self) -> None:
        _text(self, "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelRequested(OrderEvent):
    """A cancel was sent to the venue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled(OrderEvent):
    """The venue canceled the order (asked for, or on its own, e.g. an IOC remainder)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelRejected(OrderEvent):
    """The venue refused a cancel request; the order lives on."""

    reason: str

    def _validate(self) -> None:
        _text(self, "reason")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired(OrderEvent):
    """The order reached its expiry (GTD time, or a venue/emulator rule)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdated(OrderEvent):
    """The venue accepted an amendment; a None field is unchanged (one must be set)."""

    quantity: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None

    def _validate(self) -> None:
        if self.quantity is None and self.price is None and self.trigger_price is None:
            raise ValueError(f"OrderUpdated for {self.client_order_id} changes nothing")
        _positive(self, "quantity", optional=True)
        _positive(self, "price", optional=True)
        _positive(self, "trigger_price", optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(OrderEvent):
    """An execution of `last_qty` at `last_px`; `fee` in `fee_currency` (negative = rebate)."""

    trade_id: TradeId
    last_qty: Decimal
    last_px: Decimal
    liquidity: LiquiditySide
    fee: Decimal
    fee_currency: str
    venue_order_id: VenueOrderId | None = None

    def _validate(self) -> None:
        _typed(self, "trade_id", TradeId)
        _positive(self, "last_qty")
        _positive(self, "last_px")
        _enum(self, "liquidity", LiquiditySide)
        _decimal(self, "fee")
        _text(self, "fee_currency")
        _typed(self, "venue_order_id", VenueOrderId, optional=True)


# ---------------------------------------------------------------------------------------
# Account, position and risk events


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionEvent(Event):
    """The state of one position after a change.

    `quantity` is signed (+ long, - short, 0 flat) and must agree with `side`;
    `avg_px` is the average entry price (None when flat); `realized_pnl` is the
    position's realised profit so far, in `currency` (the settlement currency).
    """

    strategy_id: StrategyId
    instrument_id: InstrumentId
    side: PositionSide
    quantity: Decimal
    avg_px: Decimal | None
    realized_pnl: Decimal
    currency: str

    def __post_init__(self) -> None:
        check_ts(self.ts_ns, f"{type(self).__name__}.ts_ns")
        _text(self, "event_id")
        _typed(self, "strategy_id", StrategyId)
        _typed(self, "instrument_id", InstrumentId)
        _enum(self, "side", PositionSide)
        _decimal(self, "quantity")
        _positive(self, "avg_px", optional=True)
        _decimal(self, "realized_pnl")
        _text(self, "currency")
        expected = (
            PositionSide.LONG
            if self.quantity > 0
            else PositionSide.SHORT
            if self.quantity < 0
            else PositionSide.FLAT
        )
        if self.side is not expected:
            raise ValueError(
                f"{type(self).__name__}: side {self.side} disagrees with quantity {self.quantity}"
            )
        if self.side is not PositionSide.FLAT and self.avg_px is None:
            raise ValueError(f"{type(self).__name__}: an open position needs avg_px")
        self._validate()


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(PositionEvent):
    """A position went from flat to open."""

    def _validate(self) -> None:
        if self.side is PositionSide.FLAT:
            raise ValueError("PositionOpened needs a LONG or SHORT position, got FLAT")


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(PositionEvent):
    """An open position changed size or flipped side."""

    def _validate(self) -> None:
        if self.side is PositionSide.FLAT:
            raise ValueError("PositionChanged needs an open position; use PositionClosed")


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(PositionEvent):
    """A position went flat."""

    def _validate(self) -> None:
        if self.side is not PositionSide.FLAT:
            raise ValueError(f"PositionClosed needs a FLAT position, got {self.side}")


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One currency of an account: `total` = `free` + `locked` (margin, open orders)."""

    currency: str
    total: Decimal
    locked: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _text(self, "currency")
        _decimal(self, "total")
        _decimal(self, "locked")
        if self.locked < 0:
            raise ValueError(
                f"AccountBalance {self.currency}: locked must be >= 0, got {self.locked}"
            )

    @property
    def free(self) -> Decimal:
        return self.total - self.locked


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountState(Event):
    """The balances of an account; `reported` is True when the venue sent them."""

    account_id: AccountId
    balances: tuple[AccountBalance, ...]
    base_currency: str | None = None
    reported: bool = False

    def _validate(self) -> None:
        _typed(self, "account_id", AccountId)
        balances = tuple(self.balances)
        for balance in balances:
            _typed_value(balance, AccountBalance, "AccountState.balances")
        currencies = [b.currency for b in balances]
        if len(set(currencies)) != len(currencies):
            raise ValueError(f"AccountState: duplicate currencies in {currencies}")
        _set(self, "balances", balances)

    def balance(self, currency: str) -> AccountBalance | None:
        for balance in self.balances:
            if balance.currency == currency:
                return balance
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskEvent(Event):
    """A risk check or limit fired: `kind` (e.g. "daily_loss", "drawdown", "var",
    "kill_switch", "pre_trade"), a human `reason` naming the values, and structured
    `detail`. `strategy_id` is None for portfolio-wide events."""

    kind: str
    reason: str
    detail: Mapping[str, object] = field(default_factory=dict, hash=False)
    strategy_id: StrategyId | None = None

    def _validate(self) -> None:
        _text(self, "kind")
        _text(self, "reason")
        if not isinstance(self.detail, Mapping):
            raise ValueError(f"RiskEvent.detail must be a mapping, got {self.detail!r}")
        _set(self, "detail", dict(self.detail))
        _typed(self, "strategy_id", StrategyId, optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Event):
    """Trading moved to `state` (from `previous`); `strategy_id` None = the whole node."""

    state: TradingState
    reason: str
    previous: TradingState | None = None
    strategy_id: StrategyId | None = None

    def _validate(self) -> None:
        _enum(self, "state", TradingState)
        _enum(self, "previous", TradingState, optional=True)
        _text(self, "reason")
        _typed(self, "strategy_id", StrategyId, optional=True)


def _typed_value(value: object, cls: type, where: str) -> None:
    if not isinstance(value, cls):
        raise ValueError(f"{where} must hold {cls.__name__}s, got {value!r}")


# ---------------------------------------------------------------------------------------
# Market data (floats)


def _finite(obj: object, name: str, *, positive: bool = False, non_negative: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{type(obj).__name__}.{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{type(obj).__name__}.{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value}")
    if non_negative and value < 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be >= 0, got {value}")
    _set(obj, name, value)


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; `ts_ns` is the bar's open time."""

    instrument_id: InstrumentId
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def __post_init__(self) -> None:
        _typed(self, "instrument_id", InstrumentId)
        check_ts(self.ts_ns, "Bar.ts_ns")
        for name in ("open", "high", "low", "close"):
            _finite(self, name, positive=True)
        _finite(self, "volume", non_negative=True)
        if self.high < max(self.open, self.close, self.low):
            raise ValueError(
                f"Bar at {self.ts_ns}: high {self.high} is below open/low/close "
                f"({self.open}, {self.low}, {self.close})"
            )
        if self.low > min(self.open, self.close):
            raise ValueError(
                f"Bar at {self.ts_ns}: low {self.low} is above open/close "
                f"({self.open}, {self.close})"
            )


@dataclass(frozen=True, slots=True)
class TradeTick:
    """One public trade; `aggressor_side` is the taker's side (None if unknown)."""

    instrument_id: InstrumentId
    ts_ns: int
    price: float
    size: float
    aggressor_side: OrderSide | None
    trade_id: TradeId

    def __post_init__(self) -> None:
        _typed(self, "instrument_id", InstrumentId)
        check_ts(self.ts_ns, "TradeTick.ts_ns")
        _finite(self, "price", positive=True)
        _finite(self, "size", positive=True)
        _enum(self, "aggressor_side", OrderSide, optional=True)
        _typed(self, "trade_id", TradeId)


@dataclass(frozen=True, slots=True)
class OrderBookDelta:
    """Set the `side` level at `price` to `size` (BUY = bid, SELL = ask; size 0 removes it)."""

    instrument_id: InstrumentId
    ts_ns: int
    side: OrderSide
    price: float
    size: float

    def __post_init__(self) -> None:
        _typed(self, "instrument_id", InstrumentId)
        check_ts(self.ts_ns, "OrderBookDelta.ts_ns")
        _enum(self, "side", OrderSide)
        _finite(self, "price", positive=True)
        _finite(self, "size", non_negative=True)


Level = tuple[float, float]


@dataclass(frozen=True, slots=True)
class OrderBook:
    """A snapshot of the book: `bids` best (highest) first, `asks` best (lowest) first,
    each level (price, size > 0), prices unique, never crossed."""

    instrument_id: InstrumentId
    ts_ns: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    def __post_init__(self) -> None:
        _typed(self, "instrument_id", InstrumentId)
        check_ts(self.ts_ns, "OrderBook.ts_ns")
        bids = _levels(self.bids, "bids")
        asks = _levels(self.asks, "asks")
        if any(a[0] <= b[0] for a, b in itertools.pairwise(bids)):
            raise ValueError(f"OrderBook bids must be strictly descending by price: {bids}")
        if any(a[0] >= b[0] for a, b in itertools.pairwise(asks)):
            raise ValueError(f"OrderBook asks must be strictly ascending by price: {asks}")
        if bids and asks and bids[0][0] >= asks[0][0]:
            raise ValueError(
                f"OrderBook is crossed: best bid {bids[0][0]} >= best ask {asks[0][0]}"
            )
        _set(self, "bids", bids)
        _set(self, "asks", asks)

    @property
    def best_bid(self) -> float | None:
        return self.bids[0][0] if self.bids else None

    @property
    def best_ask(self) -> float | None:
        return self.asks[0][0] if self.asks else None

    @property
    def mid(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2

    @property
    def spread(self) -> float | None:
        if not self.bids or not self.asks:
            return None
        return self.asks[0][0] - self.bids[0][0]

    def apply(self, delta: OrderBookDelta) -> OrderBook:
        """A new snapshot with `delta` applied (the book itself is immutable)."""
        if delta.instrument_id != self.instrument_id:
            raise ValueError(
                f"delta for {delta.instrument_id} applied to the book of {self.instrument_id}"
            )
        levels = dict(self.bids if delta.side is OrderSide.BUY else self.asks)
        if delta.size == 0:
            levels.pop(delta.price, None)
        else:
            levels[delta.price] = delta.size
        ordered = tuple(sorted(levels.items(), reverse=delta.side is OrderSide.BUY))
        bids, asks = (ordered, self.asks) if delta.side is OrderSide.BUY else (self.bids, ordered)
        return OrderBook(self.instrument_id, max(self.ts_ns, delta.ts_ns), bids, asks)


def _levels(raw: object, name: str) -> tuple[Level, ...]:
    try:
        items = [tuple(level) for level in raw]  # type: ignore[attr-defined]
    except TypeError:
        raise ValueError(
            f"OrderBook.{name} must be a sequence of (price, size), got {raw!r}"
        ) from None
    levels: list[Level] = []
    for level in items:
        if len(level) != 2:
            raise ValueError(f"OrderBook.{name} level must be (price, size), got {level!r}")
        price, size = level
        for value in (price, size):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"OrderBook.{name} level {level!r} must hold numbers")
            if not math.isfinite(value):
                raise ValueError(f"OrderBook.{name} level {level!r} must be finite")
        if price <= 0 or size <= 0:
            raise ValueError(f"OrderBook.{name} level {level!r} needs price > 0 and size > 0")
        levels.append((float(price), float(size)))
    return tuple(levels)
