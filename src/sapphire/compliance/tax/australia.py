"""Australian capital gains tax rules (registered as ``AU``).

- Financial years run from 1 July to 30 June (``2024-25``); tax dates are dates in
  Sydney (AEST/AEDT) and values are in AUD.
- The CGT discount (ITAA 1997 Division 115) is 50% for individuals and trusts and
  33 1/3% for complying super funds; companies have none. A gain is discountable when
  the parcel was acquired at least 12 months before the CGT event, the day of
  acquisition and the day of the event not counted (s 115-25): a parcel bought on
  1 March 2024 is discountable from 2 March 2025.
- Capital losses of the year, then net capital losses carried forward from earlier
  years, are applied before the discount: first to gains that cannot be discounted,
  then to discountable gains (the order that gives the smallest net capital gain, as in
  the ATO's Guide to capital gains tax, steps 5 to 8). What is left of the losses is the
  net capital loss carried forward.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from decimal import Context, Decimal
from types import MappingProxyType

from sapphire.compliance.tax.common import exact, internal
from sapphire.compliance.tax.parcels import Piece
from sapphire.compliance.tax.rules import CapitalGainsSummary, TaxYear, register

__all__ = ["LOSS_ORDER", "Australia", "add_months"]

LOSS_ORDER = (
    "Capital losses of the year, then net capital losses carried forward from earlier "
    "years, are applied first to gains that cannot be discounted and then to "
    "discountable gains; the CGT discount applies to the discountable gains left. This "
    "is the order that gives the smallest net capital gain (ATO, Guide to capital gains "
    "tax, steps 5 to 8)."
)

_YEAR = re.compile(r"^(?:FY)?\s*(\d{4})\s*[-/]\s*(\d{2}|\d{4})$", re.IGNORECASE)


def add_months(day: date, months: int) -> date:
    """`day` plus `months` calendar months (the 29th-31st become a shorter month's last)."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a 28th")


class Australia:
    """The ATO's CGT rules for crypto assets held as investments."""

    code = "AU"
    name = "Australia"
    currency = "AUD"
    timezone = "Australia/Sydney"
    entities = MappingProxyType(
        {
            "individual": Decimal("0.5"),
            "trust": Decimal("0.5"),
            # a complying superannuation fund: one third, to 100 digits
            "super": Context(prec=100).divide(Decimal(1), Decimal(3)),
            "company": Decimal(0),
        }
    )
    notes = (
        "Not tax advice: Sapphire works out capital gains from the trades it is given, "
        "with the rules written in docs/tax.md. Check the figures, and your own "
        "circumstances, with the ATO's guidance or a registered tax agent.",
        "Crypto-to-crypto swaps (stablecoins included) are disposals at market value and "
        "acquisitions of the asset received at that value (ATO: crypto to crypto exchange "
        "or swap). Currencies treated as money are not CGT assets here; foreign-currency "
        "gains (Division 775) are not computed.",
        "Perpetual and futures profits and losses are not disposals of a CGT asset: they "
        "are listed apart as derivative gains and losses, without any CGT discount. Their "
        "treatment (ordinary income and deductions for a trader, or otherwise) depends on "
        "your circumstances. Funding payments are not in the fills and are not included.",
        "Not handled: the personal use asset exemption, income from staking, airdrops or "
        "interest, the trading stock rules of a business, and lost or stolen assets.",
    )

    def tax_year(self, label: str) -> TaxYear:
        """The financial year written ``2024-25`` (or ``2024-2025``)."""
        match = _YEAR.match(label.strip()) if isinstance(label, str) else None
        if match is not None:
            first = int(match[1])
            if match[2] in (f"{(first + 1) % 100:02d}", str(first + 1)):
                return self._year(first)
        raise ValueError(
            f"a financial year is written like 2024-25 (1 July 2024 to 30 June 2025), got {label!r}"
        )

    def year_of(self, day: date) -> TaxYear:
        """The financial year of `day`."""
        return self._year(day.year if day.month >= 7 else day.year - 1)

    @staticmethod
    def _year(first: int) -> TaxYear:
        return TaxYear(
            f"{first}-{(first + 1) % 100:02d}", date(first, 7, 1), date(first + 1, 6, 30)
        )

    def discount_eligible(self, acquired: date, disposed: date) -> bool:
        """Acquired at least 12 months before the CGT event, neither day counted: the
        days strictly between the two span 12 months, so `disposed` is after the date
        12 months on from `acquired`."""
        return disposed > add_months(acquired, 12)

    def summarise(
        self, pieces: Sequence[Piece], entity: str, carried_loss: Decimal
    ) -> CapitalGainsSummary:
        """Net the year's gains and losses, then discount (see the module's rules)."""
        if entity not in self.entities:
            raise ValueError(f"entity must be one of {', '.join(self.entities)}, got {entity!r}")
        if not (isinstance(carried_loss, Decimal) and carried_loss.is_finite()) or carried_loss < 0:
            raise ValueError(f"the carried-forward loss must be an amount >= 0, got {carried_loss}")
        rate = self.entities[entity]
        with exact():
            plain_gains = discountable = losses = Decimal(0)
            for piece in pieces:
                gain = piece.gain
                if gain < 0:
                    losses -= gain
                elif rate > 0 and self.discount_eligible(piece.acquired_day, piece.disposal.day):
                    discountable += gain
                else:
                    plain_gains += gain
            total, discountable_total = plain_gains + discountable, discountable
            current_applied, plain_gains, discountable = _apply(losses, plain_gains, discountable)
            carried_applied, plain_gains, discountable = _apply(
                carried_loss, plain_gains, discountable
            )
            discount = internal(discountable * rate)
            return CapitalGainsSummary(
                total_gains=total,
                discountable_gains=discountable_total,
                current_losses=losses,
                current_losses_applied=current_applied,
                carried_losses=carried_loss,
                carried_losses_applied=carried_applied,
                discount_rate=rate,
                discount=discount,
                net_capital_gain=plain_gains + discountable - discount,
                loss_carried_forward=losses - current_applied + carried_loss - carried_applied,
                loss_order=LOSS_ORDER,
            )


def _apply(
    loss: Decimal, plain_gains: Decimal, discountable: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """Apply `loss` to the gains that cannot be discounted, then the discountable ones:
    (applied, plain gains left, discountable gains left)."""
    to_plain = min(loss, plain_gains)
    to_discountable = min(loss - to_plain, discountable)
    return to_plain + to_discountable, plain_gains - to_plain, discountable - to_discountable


register("AU", Australia)
