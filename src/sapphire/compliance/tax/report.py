"""`build_report`: one tax year's capital gains, derivative results and parcels held.

```python
trades, derivatives = from_run(store, "run-1")  # or read_trades("bybit.csv")
rates = RateTable.load("rates.csv", "AUD")
report = build_report(trades, year="2024-25", rates=rates, method="fifo",
                      entity="individual", derivatives=derivatives)
report.summary.net_capital_gain  # Decimal, exact; writers round to cents
```

Every trade up to the end of the year is replayed: earlier years' acquisitions are the
parcels the year's disposals use, and earlier disposals (matched by the same method)
have used some of them up. Trades after the year are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sapphire.compliance.tax.common import TaxInputError
from sapphire.compliance.tax.derivatives import DerivativeSummary, derivative_results
from sapphire.compliance.tax.events import DEFAULT_CASH, Acquisition, TaxEvent, tax_events
from sapphire.compliance.tax.parcels import Identification, Method, Parcel, ParcelPool, Piece
from sapphire.compliance.tax.rates import RateTable
from sapphire.compliance.tax.rules import CapitalGainsSummary, TaxYear, jurisdiction
from sapphire.compliance.tax.trades import DerivativeFill, Trade, check_unique

__all__ = ["DisposalLine", "TaxReport", "build_report"]


@dataclass(frozen=True, slots=True)
class DisposalLine:
    """A disposal's part matched to one parcel, and whether its gain is discounted."""

    piece: Piece
    discounted: bool


@dataclass(frozen=True, slots=True)
class TaxReport:
    """A tax year's report: the matched disposals (`lines`), the netted `summary`, the
    derivative results and the parcels `held` at the end of the year."""

    jurisdiction: str
    currency: str
    timezone: str
    year: TaxYear
    entity: str
    method: Method
    lines: tuple[DisposalLine, ...]
    summary: CapitalGainsSummary
    derivatives: DerivativeSummary
    held: tuple[Parcel, ...]
    notes: tuple[str, ...]
    trades_used: int
    trades_after: int


def build_report(
    trades: Iterable[Trade],
    *,
    year: str,
    rates: RateTable,
    method: Method | str = Method.FIFO,
    entity: str = "individual",
    jurisdiction_code: str = "AU",
    carried_loss: Decimal = Decimal(0),
    derivatives: Iterable[DerivativeFill] = (),
    holdings: Iterable[Acquisition] = (),
    identification: Identification | None = None,
    cash: Iterable[str] = DEFAULT_CASH,
) -> TaxReport:
    """The report of tax year `year` (ValueError / TaxInputError name what is wrong)."""
    rules = jurisdiction(jurisdiction_code)
    tax_year = rules.tax_year(year)
    if entity not in rules.entities:
        raise ValueError(f"entity must be one of {', '.join(rules.entities)}, got {entity!r}")
    try:
        chosen = Method(str(method).lower())
    except ValueError:
        known = ", ".join(m.value for m in Method)
        raise ValueError(f"method must be one of {known}, got {method!r}") from None
    if rates.currency != rules.currency:
        raise ValueError(
            f"{rules.name} reports in {rules.currency}: the rates convert into {rates.currency}"
        )
    tz = ZoneInfo(rules.timezone)
    spot, fills = list(trades), list(derivatives)
    check_unique([*spot, *fills])
    used = [t for t in spot if t.ts.astimezone(tz).date() <= tax_year.end]
    events: list[TaxEvent] = sorted(holdings, key=lambda h: h.ts)
    events = sorted([*events, *tax_events(used, rates, tz, cash)], key=lambda e: e.ts)
    pool = ParcelPool(chosen, identification)
    lines: list[DisposalLine] = []
    for event in events:
        if isinstance(event, Acquisition):
            pool.acquire(event)
            continue
        pieces = pool.dispose(event)
        if event.day in tax_year:
            lines.extend(
                DisposalLine(
                    p, p.gain > 0 and rules.entities[entity] > 0
                    and rules.discount_eligible(p.acquired_day, event.day),
                )
                for p in pieces
            )  # fmt: skip
    summary = rules.summarise([line.piece for line in lines], entity, _loss(carried_loss))
    return TaxReport(
        jurisdiction=rules.code,
        currency=rules.currency,
        timezone=rules.timezone,
        year=tax_year,
        entity=entity,
        method=chosen,
        lines=tuple(lines),
        summary=summary,
        derivatives=derivative_results(fills, rates, tz, tax_year),
        held=tuple(pool.remaining()),
        notes=tuple(rules.notes),
        trades_used=len(used),
        trades_after=len(spot) - len(used),
    )


def _loss(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise TaxInputError(f"the carried-forward capital loss must be an amount >= 0, got {value}")
    return value
