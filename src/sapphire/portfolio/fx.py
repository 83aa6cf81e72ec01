"""Currency conversion with given rates.

`rates` maps a currency code to the value of one unit of it in the *reporting* currency
(``{"BTC": Decimal("60000"), "EUR": Decimal("1.08")}`` when reporting in USDT). The
reporting currency itself converts at 1 and may be left out (if present, its rate must
be 1). A currency with a non-zero amount and no rate is an error naming it: nothing is
silently valued at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sapphire.portfolio._num import positive

__all__ = ["FxRates", "convert", "rate", "to_reporting"]

FxRates = Mapping[str, Decimal]

_ZERO = Decimal(0)
_ONE = Decimal(1)


def rate(currency: str, reporting: str, rates: FxRates | None) -> Decimal:
    """Value of one `currency` in `reporting`."""
    if currency == reporting:
        if rates is not None and reporting in rates and rates[reporting] != _ONE:
            raise ValueError(
                f"the rate of the reporting currency {reporting} must be 1, "
                f"got {rates[reporting]!r}"
            )
        return _ONE
    if rates is None or currency not in rates:
        raise ValueError(
            f"no FX rate for {currency} in {reporting} (pass fx={{{currency!r}: ...}})"
        )
    return positive(f"FX rate of {currency} in {reporting}", rates[currency])


def convert(amount: Decimal, currency: str, reporting: str, rates: FxRates | None) -> Decimal:
    """`amount` of `currency` expressed in `reporting`."""
    if amount == 0:
        return _ZERO
    return amount * rate(currency, reporting, rates)


def to_reporting(amounts: Mapping[str, Decimal], reporting: str, rates: FxRates | None) -> Decimal:
    """The sum of per-currency `amounts`, each converted to `reporting`."""
    return sum((convert(amount, ccy, reporting, rates) for ccy, amount in amounts.items()), _ZERO)
