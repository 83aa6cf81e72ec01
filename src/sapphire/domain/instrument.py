"""Instruments: what can be traded where, and at which precision.

Prices live on a grid of `tick_size`, quantities on a grid of `lot_size`. Quantising a
price rounds half-to-even by default (any rounding can be asked for); quantising a
quantity always rounds *down* (towards zero), so an order never grows past what was
meant. `make_price`/`make_qty` turn user input (str, int, float, Decimal) into a Decimal
on the grid and refuse a value off the grid unless `quantize=True` is passed.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation

from sapphire.domain.enums import ContractType
from sapphire.domain.identifiers import InstrumentId

__all__ = ["Instrument", "to_decimal"]

DecimalLike = Decimal | str | int | float


def to_decimal(value: object, name: str = "value") -> Decimal:
    """`value` as a finite Decimal; a float goes through `str` (``0.1 -> Decimal("0.1")``).

    Raises ValueError naming `name` and the value for bools, NaN, infinities, unparsable
    strings and any other type.
    """
    kind = type(value)
    if kind is float:  # prices from the float side (bars, ticks, kernels): the hot case
        if math.isfinite(value):  # type: ignore[arg-type]
            return Decimal(repr(value))
        raise ValueError(f"{name} must be finite, got {value!r}")
    if kind is Decimal:
        if value.is_finite():  # type: ignore[attr-defined]
            return value  # type: ignore[return-value]
        raise ValueError(f"{name} must be finite, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got the bool {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{name} is not a number: {value!r}") from None
    else:
        raise ValueError(
            f"{name} must be a Decimal, str, int or float, got {value!r} ({type(value).__name__})"
        )
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _optional_decimal(value: object, name: str) -> Decimal | None:
    return None if value is None else to_decimal(value, name)


def _exponent(value: Decimal) -> int:
    """The exponent of a finite Decimal in its shortest form (0.50 -> -1, 1E+1 -> 1)."""
    exponent = value.normalize().as_tuple().exponent
    if not isinstance(exponent, int):  # only NaN/Infinity have a str exponent
        raise ValueError(f"{value} has no exponent")
    return exponent


def _grid(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """`value` rounded to a multiple of `step`, written with `step`'s decimal places."""
    units = (value / step).to_integral_value(rounding=rounding)
    result = (units * step).quantize(Decimal(1).scaleb(min(_exponent(step), 0)))
    return abs(result) if result == 0 else result  # no "-0"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable contract at one venue, with its precision, limits and fees.

    Fees are rates (``Decimal("0.0006")`` = 0.06 %); a negative maker fee is a rebate.
    `multiplier` is the contract size (the notional of one unit of quantity at price 1;
    1 for spot and linear perpetuals). Everything after `lot_size` is keyword-only.
    """

    id: InstrumentId
    base: str
    quote: str
    settlement: str
    contract_type: ContractType
    tick_size: Decimal
    lot_size: Decimal
    _: KW_ONLY
    maker_fee: Decimal
    taker_fee: Decimal
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    max_notional: Decimal | None = None
    multiplier: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        if not isinstance(self.id, InstrumentId):
            raise ValueError(f"Instrument.id must be an InstrumentId, got {self.id!r}")
        for name in ("base", "quote", "settlement"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or value != value.strip():
                raise ValueError(f"Instrument.{name} must be a currency code, got {value!r}")
        try:
            ContractType(self.contract_type)
        except ValueError:
            raise ValueError(
                f"Instrument.contract_type must be a ContractType, got {self.contract_type!r}"
            ) from None
        object.__setattr__(self, "contract_type", ContractType(self.contract_type))
        for name in ("tick_size", "lot_size", "multiplier"):
            value = to_decimal(getattr(self, name), f"Instrument.{name}")
            if value <= 0:
                raise ValueError(f"Instrument.{name} must be > 0, got {value}")
            object.__setattr__(self, name, value)
        for name in ("maker_fee", "taker_fee"):
            value = to_decimal(getattr(self, name), f"Instrument.{name}")
            if not Decimal(-1) < value < Decimal(1):
                raise ValueError(f"Instrument.{name} is a rate in (-1, 1), got {value}")
            object.__setattr__(self, name, value)
        for name in ("min_qty", "max_qty", "min_notional", "max_notional"):
            value = _optional_decimal(getattr(self, name), f"Instrument.{name}")
            if value is not None and value < 0:
                raise ValueError(f"Instrument.{name} must be >= 0, got {value}")
            object.__setattr__(self, name, value)
        for low, high in (("min_qty", "max_qty"), ("min_notional", "max_notional")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"Instrument.{low} ({lo}) is above {high} ({hi})")

    # -- precision ------------------------------------------------------------------

    @property
    def price_precision(self) -> int:
        """Decimal places of a price on the tick grid (0 for ticks >= 1)."""
        return max(-_exponent(self.tick_size), 0)

    @property
    def size_precision(self) -> int:
        """Decimal places of a quantity on the lot grid (0 for lots >= 1)."""
        return max(-_exponent(self.lot_size), 0)

    def quantize_price(self, price: DecimalLike, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """`price` rounded to the nearest tick (half-to-even unless `rounding` says else)."""
        return _grid(to_decimal(price, "price"), self.tick_size, rounding)

    def quantize_qty(self, qty: DecimalLike) -> Decimal:
        """`qty` rounded down (towards zero) to a whole number of lots."""
        return _grid(to_decimal(qty, "quantity"), self.lot_size, ROUND_DOWN)

    def is_price_on_tick(self, price: Decimal) -> bool:
        return price % self.tick_size == 0

    def is_qty_on_lot(self, qty: Decimal) -> bool:
        return qty % self.lot_size == 0

    def make_price(self, value: DecimalLike, *, quantize: bool = False) -> Decimal:
        """A positive price on the tick grid.

        Off the grid: ValueError naming the value, or, with `quantize=True`, rounded
        half-to-even to the nearest tick.
        """
        price = to_decimal(value, "price")
        if price <= 0:
            raise ValueError(f"price must be > 0, got {value!r} for {self.id}")
        if not self.is_price_on_tick(price):
            if not quantize:
                raise ValueError(
                    f"price {value!r} is not a multiple of the tick size {self.tick_size} "
                    f"of {self.id} (pass quantize=True to round it)"
                )
            price = self.quantize_price(price)
            if price <= 0:
                raise ValueError(f"price {value!r} rounds to {price} on {self.id}'s tick grid")
        return _grid(price, self.tick_size, ROUND_HALF_EVEN)

    def make_qty(self, value: DecimalLike, *, quantize: bool = False) -> Decimal:
        """A positive quantity on the lot grid.

        Off the grid: ValueError naming the value, or, with `quantize=True`, rounded
        down to whole lots (and a ValueError if that leaves nothing).
        """
        qty = to_decimal(value, "quantity")
        if qty <= 0:
            raise ValueError(f"quantity must be > 0, got {value!r} for {self.id}")
        if not self.is_qty_on_lot(qty):
            if not quantize:
                raise ValueError(
                    f"quantity {value!r} is not a multiple of the lot size {self.lot_size} "
                    f"of {self.id} (pass quantize=True to round it down)"
                )
            qty = self.quantize_qty(qty)
            if qty <= 0:
                raise ValueError(
                    f"quantity {value!r} is below one lot ({self.lot_size}) of {self.id}"
                )
        return _grid(qty, self.lot_size, ROUND_DOWN)

    # -- money ----------------------------------------------------------------------

    def notional(self, qty: Decimal, price: Decimal) -> Decimal:
        """|qty| * price * multiplier, in the quote currency."""
        return abs(qty) * price * self.multiplier

    def fee(self, qty: Decimal, price: Decimal, *, maker: bool) -> Decimal:
        """The fee of a fill, in the quote currency (negative = a rebate)."""
        rate = self.maker_fee if maker else self.taker_fee
        return self.notional(qty, price) * rate
