"""What every tax module shares: exact arithmetic, the input error, money at output.

Money is `Decimal` from the fills to the report. Tax arithmetic runs in `exact()`, a
context of 100 significant digits, and every amount in the report currency is kept with
18 decimal places (`internal`), so that adding, subtracting and splitting parcels is
exact: the parts of a split always add up to the whole. (Sums of such amounts below
10 billion are exact even in Python's default 28-digit context.) Amounts are rounded to cents
only when a report writes them (`cents`: half away from zero, the rounding a person
does by hand).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext

__all__ = [
    "INTERNAL",
    "TaxInputError",
    "cents",
    "check_asset",
    "exact",
    "internal",
    "parse_day",
    "parse_decimal",
    "parse_time",
    "plain",
]

#: the scale of every report-currency amount inside the computation
INTERNAL = Decimal("1E-18")
_CONTEXT = Context(prec=100, rounding=ROUND_HALF_EVEN)
_CENT = Decimal("0.01")


class TaxInputError(ValueError):
    """A trade, rate, holding or identification a user supplied that cannot be used; the
    message names the file and row (or the trade) and what was expected."""


@contextmanager
def exact() -> Iterator[None]:
    """Run the enclosed tax arithmetic with 100 significant digits."""
    with localcontext(_CONTEXT):
        yield


def internal(value: Decimal) -> Decimal:
    """`value` at the internal scale (18 decimal places); call inside `exact()`."""
    return value.quantize(INTERNAL)


def cents(value: Decimal) -> Decimal:
    """`value` rounded to the cent, half away from zero (the report's only rounding)."""
    with exact():
        rounded = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    return abs(rounded) if rounded == 0 else rounded  # no "-0.00"


def plain(value: Decimal) -> str:
    """A quantity as plain text: no exponent, no trailing zeros (``1.50 -> "1.5"``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


_ASSET = re.compile(r"^[A-Za-z0-9._-]{1,30}$")


def check_asset(code: str, where: str) -> str:
    """An asset or currency code as upper case (``btc -> BTC``), or TaxInputError."""
    text = code.strip() if isinstance(code, str) else ""
    if not _ASSET.match(text):
        raise TaxInputError(
            f"{where}: {code!r} is not an asset code (letters, digits, '.', '_' or '-')"
        )
    return text.upper()


def parse_time(text: str, where: str) -> datetime:
    """An ISO 8601 time with a UTC offset (or ``Z``) as an aware UTC datetime.

    A time without an offset is refused: a tax date taken from the wrong time zone can
    move a trade into another day, or another financial year.
    """
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TaxInputError(
            f"{where}: time {text!r} is not an ISO 8601 time like 2024-07-01T09:30:00Z"
        ) from None
    if value.tzinfo is None:
        raise TaxInputError(
            f"{where}: time {text!r} has no UTC offset: write it as 2024-07-01T09:30:00Z "
            "or with its offset (+10:00)"
        )
    return value.astimezone(UTC)


def parse_day(text: str, where: str) -> date:
    """A calendar date ``YYYY-MM-DD``, or TaxInputError."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TaxInputError(f"{where}: {text!r} is not a date like 2024-07-01") from None


def parse_decimal(text: str, name: str, where: str, *, positive: bool = False) -> Decimal:
    """A finite decimal number (``1,234.5`` and a trailing unit such as ``" USDT"`` are
    not numbers: write ``1234.5``), or TaxInputError naming `name`; with `positive`,
    it must be > 0."""
    raw = text.strip()
    try:
        value = Decimal(raw)
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite():
        raise TaxInputError(f"{where}: {name} {text!r} is not a number")
    if positive and value <= 0:
        raise TaxInputError(f"{where}: {name} must be > 0, got {raw}")
    return value
