"""Derivative gains and losses: the realised profit and loss of perpetual and futures
fills, reported apart from capital gains (a derivative position is not a CGT asset).

Per instrument, fills move one net position at its average entry price (the way an
exchange reports realised PnL): a fill that reduces the position realises
``(price - average entry) * closed quantity * multiplier`` (the other way round for a
short), a fill that goes through zero closes the old position and opens a new one at
its price. Each fill's realised PnL and fee are converted into the report currency at
the rate of the fill's day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from sapphire.compliance.tax.common import exact, internal
from sapphire.compliance.tax.rates import RateTable
from sapphire.compliance.tax.rules import TaxYear
from sapphire.compliance.tax.trades import DerivativeFill
from sapphire.domain.enums import OrderSide

__all__ = ["DerivativeRow", "DerivativeSummary", "derivative_results"]


@dataclass(frozen=True, slots=True)
class DerivativeRow:
    """One fill of the year: its realised PnL and its fee, in the report currency."""

    trade_id: str
    ts: datetime
    day: date
    instrument: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    realized: Decimal
    fee: Decimal

    @property
    def net(self) -> Decimal:
        """Realised PnL less the fee."""
        return self.realized - self.fee


@dataclass(frozen=True, slots=True)
class DerivativeSummary:
    """The year's derivative results: `gains` and `losses` (both >= 0) of the fills that
    realised PnL, the `fees` paid, and ``net = gains - losses - fees``."""

    rows: tuple[DerivativeRow, ...]
    gains: Decimal
    losses: Decimal
    fees: Decimal

    @property
    def net(self) -> Decimal:
        return self.gains - self.losses - self.fees


def derivative_results(
    fills: Iterable[DerivativeFill], rates: RateTable, tz: tzinfo, year: TaxYear
) -> DerivativeSummary:
    """The realised PnL and fees of the fills in `year` (earlier fills build the
    positions); MissingRateError for a day without a rate."""
    positions: dict[str, tuple[Decimal, Decimal]] = {}  # instrument -> (signed qty, avg px)
    rows = []
    with exact():
        for fill in sorted(fills, key=lambda f: f.ts):
            day = fill.ts.astimezone(tz).date()
            if day > year.end:
                break
            held, average = positions.get(fill.instrument, (Decimal(0), Decimal(0)))
            signed = fill.quantity if fill.side is OrderSide.BUY else -fill.quantity
            realized = Decimal(0)
            if held == 0 or (held > 0) == (signed > 0):
                new = held + signed
                average = internal((average * abs(held) + fill.price * fill.quantity) / abs(new))
            else:
                closed = min(fill.quantity, abs(held))
                direction = 1 if held > 0 else -1
                realized = (fill.price - average) * closed * direction * fill.multiplier
                new = held + signed
                if new == 0:
                    average = Decimal(0)
                elif (new > 0) != (held > 0):  # through zero: the rest opens at this price
                    average = fill.price
            positions[fill.instrument] = (new, average)
            if day < year.start:
                continue
            rate = rates.rate(fill.settlement, day, needed_by=fill.source or fill.trade_id)
            fee_rate = rate
            if fill.fee != 0 and fill.fee_currency != fill.settlement:
                fee_rate = rates.rate(fill.fee_currency, day, needed_by=fill.source)
            rows.append(
                DerivativeRow(
                    fill.trade_id, fill.ts, day, fill.instrument, fill.side, fill.quantity,
                    fill.price, internal(realized * rate), internal(fill.fee * fee_rate),
                )
            )  # fmt: skip
        return _summary(rows)


def _summary(rows: Sequence[DerivativeRow]) -> DerivativeSummary:
    gains = sum((r.realized for r in rows if r.realized > 0), Decimal(0))
    losses = -sum((r.realized for r in rows if r.realized < 0), Decimal(0))
    fees = sum((r.fee for r in rows), Decimal(0))
    return DerivativeSummary(tuple(rows), gains, losses, fees)
