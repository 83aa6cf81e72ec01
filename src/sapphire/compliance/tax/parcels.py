"""Parcels and the matching of disposals to them: FIFO, LIFO, HIFO and specific
identification.

Each acquisition is a `Parcel` (quantity and cost base). A disposal takes its quantity
from the parcels held at that moment, in the order of the `Method`, and becomes one
`Piece` per parcel used. A parcel used in part is split exactly: the part taken gets
``cost * taken / held`` (at the internal scale) and the part kept gets the rest, so the
cost of the pieces and the parcels left always adds up to the cost acquired, and the
proceeds of a disposal's pieces add up to its proceeds.

The matcher knows nothing of any country's rules: a jurisdiction reads the pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sapphire.compliance.tax.common import TaxInputError, exact, internal, plain
from sapphire.compliance.tax.events import Acquisition, Disposal

__all__ = ["Identification", "Method", "Parcel", "ParcelPool", "Piece"]


class Method(StrEnum):
    """Which parcels a disposal uses first."""

    FIFO = "fifo"  # first in, first out: the earliest acquired
    LIFO = "lifo"  # last in, first out: the latest acquired
    HIFO = "hifo"  # highest in, first out: the highest cost base per unit
    SPECIFIC = "specific"  # the parcels a user's identification file names


#: a user's choice of parcels: disposal id -> [(parcel id, quantity), ...]
Identification = Mapping[str, Sequence[tuple[str, Decimal]]]


@dataclass(slots=True)
class Parcel:
    """A parcel still held (in part): what is left of an acquisition."""

    parcel_id: str
    asset: str
    acquired: datetime
    day: date
    quantity: Decimal
    cost: Decimal
    seq: int = 0  # the order parcels were added in (ties of time)
    source: str = ""
    how: str = ""

    def take(self, quantity: Decimal) -> Decimal:
        """Remove `quantity` (<= what is held) and return its cost base (exact split)."""
        if quantity == self.quantity:
            cost, self.cost, self.quantity = self.cost, Decimal(0), Decimal(0)
            return cost
        cost = internal(self.cost * quantity / self.quantity)
        self.cost -= cost
        self.quantity -= quantity
        return cost


@dataclass(frozen=True, slots=True)
class Piece:
    """The part of a disposal matched to one parcel: the unit a gain is worked out on."""

    disposal: Disposal
    parcel_id: str
    acquired: datetime
    acquired_day: date
    quantity: Decimal
    cost: Decimal
    proceeds: Decimal
    method: Method

    @property
    def gain(self) -> Decimal:
        """Capital proceeds less cost base (negative: a capital loss)."""
        return self.proceeds - self.cost


@dataclass
class ParcelPool:
    """The parcels held, per asset; `dispose` matches a disposal by `method`."""

    method: Method = Method.FIFO
    identification: Identification | None = None
    parcels: dict[str, list[Parcel]] = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.method = Method(self.method)
        if self.method is Method.SPECIFIC and self.identification is None:
            raise TaxInputError("specific identification needs the file naming the parcels")

    def acquire(self, acquisition: Acquisition) -> Parcel:
        """Add the parcel of an acquisition."""
        self._seq += 1
        parcel = Parcel(
            acquisition.parcel_id, acquisition.asset, acquisition.ts, acquisition.day,
            acquisition.quantity, acquisition.cost, self._seq, acquisition.source,
            acquisition.how,
        )  # fmt: skip
        self.parcels.setdefault(acquisition.asset, []).append(parcel)
        return parcel

    def held(self, asset: str) -> Decimal:
        """The quantity of `asset` held."""
        return sum((p.quantity for p in self.parcels.get(asset, [])), Decimal(0))

    def remaining(self) -> list[Parcel]:
        """Copies of the parcels still held, by asset then acquisition order."""
        return [replace(p) for asset in sorted(self.parcels) for p in self.parcels[asset]]

    def dispose(self, disposal: Disposal) -> list[Piece]:
        """Match `disposal` to parcels; TaxInputError if not enough is held, or if an
        identification is missing, names a parcel not held, or does not add up."""
        with exact():
            held = self.parcels.get(disposal.asset, [])
            plan = self._plan(disposal, held)
            pieces = []
            proceeds_left = disposal.proceeds
            for n, (parcel, quantity) in enumerate(plan):
                cost = parcel.take(quantity)
                if n == len(plan) - 1:
                    proceeds = proceeds_left
                else:
                    proceeds = internal(disposal.proceeds * quantity / disposal.quantity)
                    proceeds_left -= proceeds
                pieces.append(
                    Piece(
                        disposal, parcel.parcel_id, parcel.acquired, parcel.day, quantity,
                        cost, proceeds, self.method,
                    )
                )  # fmt: skip
            self.parcels[disposal.asset] = [p for p in held if p.quantity > 0]
        return pieces

    def _plan(self, disposal: Disposal, held: list[Parcel]) -> list[tuple[Parcel, Decimal]]:
        total = sum((p.quantity for p in held), Decimal(0))
        if total < disposal.quantity:
            raise TaxInputError(
                f"{disposal.source}: disposes of {plain(disposal.quantity)} {disposal.asset} "
                f"on {disposal.day} but only {plain(total)} {disposal.asset} is held in "
                "parcels: the acquisitions are missing (give the parcels held before the "
                "first trade as opening holdings, or treat the currency as money)"
            )
        if self.method is Method.SPECIFIC:
            return self._identified(disposal, held)
        plan = []
        left = disposal.quantity
        for parcel in _ordered(held, self.method):
            if left == 0:
                break
            quantity = min(left, parcel.quantity)
            plan.append((parcel, quantity))
            left -= quantity
        return plan

    def _identified(self, disposal: Disposal, held: list[Parcel]) -> list[tuple[Parcel, Decimal]]:
        assert self.identification is not None
        choice = self.identification.get(disposal.disposal_id)
        if not choice:
            raise TaxInputError(
                f"the identification names no parcels for disposal {disposal.disposal_id} "
                f"({plain(disposal.quantity)} {disposal.asset} on {disposal.day}, "
                f"{disposal.source})"
            )
        by_id = {p.parcel_id: p for p in held}
        plan = []
        taken: dict[str, Decimal] = {}
        for parcel_id, quantity in choice:
            parcel = by_id.get(parcel_id)
            if parcel is None:
                raise TaxInputError(
                    f"disposal {disposal.disposal_id}: parcel {parcel_id} is not held on "
                    f"{disposal.day} (unknown, acquired later, another asset or used up)"
                )
            taken[parcel_id] = taken.get(parcel_id, Decimal(0)) + quantity
            if taken[parcel_id] > parcel.quantity:
                raise TaxInputError(
                    f"disposal {disposal.disposal_id}: takes {plain(taken[parcel_id])} from "
                    f"parcel {parcel_id}, which holds {plain(parcel.quantity)}"
                )
            plan.append((parcel, quantity))
        named = sum((q for _, q in choice), Decimal(0))
        if named != disposal.quantity:
            raise TaxInputError(
                f"disposal {disposal.disposal_id}: the identification names "
                f"{plain(named)} {disposal.asset}, the disposal is {plain(disposal.quantity)}"
            )
        return plan


def _ordered(parcels: Iterable[Parcel], method: Method) -> list[Parcel]:
    items = list(parcels)
    if method is Method.FIFO:
        return sorted(items, key=lambda p: (p.acquired, p.seq))
    if method is Method.LIFO:
        return sorted(items, key=lambda p: (p.acquired, p.seq), reverse=True)
    # HIFO: the highest cost per unit first; ties the earliest first
    return sorted(items, key=lambda p: (-(p.cost / p.quantity), p.acquired, p.seq))
