"""Jurisdictions: a country's capital gains rules as a pluggable rule set.

A `Jurisdiction` says what a tax year is, in which currency and time zone tax dates and
values are taken, which entities get which discount, which disposals are eligible for
it and how a year's gains and losses are netted into a `CapitalGainsSummary`. The
matcher and the report do not know any country: add one by writing a class with these
members and `register`-ing it under a code (``register("AU", Australia)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from sapphire.compliance.tax.parcels import Piece

__all__ = [
    "CapitalGainsSummary",
    "Jurisdiction",
    "TaxYear",
    "jurisdiction",
    "jurisdictions",
    "register",
]


@dataclass(frozen=True, slots=True)
class TaxYear:
    """A tax year: `label` (e.g. ``2024-25``), from `start` to `end`, both included."""

    label: str
    start: date
    end: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class CapitalGainsSummary:
    """A year's capital gains, netted (all amounts >= 0, in the report currency).

    ``net_capital_gain = total_gains - current_losses_applied - carried_losses_applied
    - discount``; `loss_carried_forward` is the net capital loss left for later years.
    """

    total_gains: Decimal
    discountable_gains: Decimal
    current_losses: Decimal
    current_losses_applied: Decimal
    carried_losses: Decimal
    carried_losses_applied: Decimal
    discount_rate: Decimal
    discount: Decimal
    net_capital_gain: Decimal
    loss_carried_forward: Decimal
    loss_order: str


class Jurisdiction(Protocol):
    """A country's capital gains rules (see `sapphire.compliance.tax.australia`)."""

    @property
    def code(self) -> str:
        """The registry code, e.g. ``AU``."""
        ...

    @property
    def name(self) -> str:
        """The country, e.g. ``Australia``."""
        ...

    @property
    def currency(self) -> str:
        """The report currency, e.g. ``AUD``."""
        ...

    @property
    def timezone(self) -> str:
        """Where tax dates are taken, e.g. ``Australia/Sydney``."""
        ...

    @property
    def entities(self) -> Mapping[str, Decimal]:
        """Entity kind -> discount rate on eligible gains (``company``: 0)."""
        ...

    @property
    def notes(self) -> Sequence[str]:
        """What a report must say about these rules (derivatives, limits, not advice)."""
        ...

    def tax_year(self, label: str) -> TaxYear:
        """The tax year `label` names; ValueError naming the expected form."""
        ...

    def year_of(self, day: date) -> TaxYear:
        """The tax year `day` falls in."""
        ...

    def discount_eligible(self, acquired: date, disposed: date) -> bool:
        """Whether a gain on a parcel acquired on `acquired` and disposed of on
        `disposed` may be discounted (for an entity that has a discount)."""
        ...

    def summarise(
        self, pieces: Sequence[Piece], entity: str, carried_loss: Decimal
    ) -> CapitalGainsSummary:
        """The year's net capital gain from its matched disposals, the `entity`'s
        discount and `carried_loss` (net capital losses from earlier years)."""
        ...


_REGISTRY: dict[str, Callable[[], Jurisdiction]] = {}


def register(code: str, factory: Callable[[], Jurisdiction]) -> None:
    """Make a rule set available under `code` (case-insensitive), replacing any other."""
    _REGISTRY[code.upper()] = factory


def jurisdictions() -> list[str]:
    """The codes of the registered rule sets."""
    return sorted(_REGISTRY)


def jurisdiction(code: str) -> Jurisdiction:
    """The rule set registered under `code`; ValueError naming the known ones."""
    factory = _REGISTRY.get(code.upper())
    if factory is None:
        raise ValueError(
            f"no tax rules for {code!r}: known jurisdictions are {', '.join(jurisdictions())}"
        )
    return factory()
