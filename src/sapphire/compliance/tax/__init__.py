"""Tax reports: capital gains on crypto assets from a run's fills or an exchange's trade
history, parcels matched by FIFO, LIFO, HIFO or specific identification, a country's
rules as a pluggable rule set (Australia first), derivative results apart.

```python
from sapphire.compliance.tax import RateTable, build_report, read_trades, write_reports

rates = RateTable.load("rates.csv", "AUD")
report = build_report(read_trades("trades.csv"), year="2024-25", rates=rates)
write_reports(report, "tax-2024-25")  # disposals, summary, derivatives, parcels held
```

Not tax advice: see docs/tax.md for what is computed, the rules and the limits.
"""

from sapphire.compliance.tax.australia import Australia  # registers "AU"
from sapphire.compliance.tax.common import TaxInputError
from sapphire.compliance.tax.derivatives import DerivativeRow, DerivativeSummary
from sapphire.compliance.tax.events import DEFAULT_CASH, Acquisition, Disposal, tax_events
from sapphire.compliance.tax.files import read_holdings, read_identification, read_trades
from sapphire.compliance.tax.parcels import Method, Parcel, ParcelPool, Piece
from sapphire.compliance.tax.rates import MissingRateError, RateTable
from sapphire.compliance.tax.report import DisposalLine, TaxReport, build_report
from sapphire.compliance.tax.rules import (
    CapitalGainsSummary,
    Jurisdiction,
    TaxYear,
    jurisdiction,
    jurisdictions,
    register,
)
from sapphire.compliance.tax.trades import DerivativeFill, Trade, from_run
from sapphire.compliance.tax.writers import (
    derivative_rows,
    disposal_rows,
    held_rows,
    money,
    summary_items,
    write_reports,
)

__all__ = [
    "DEFAULT_CASH",
    "Acquisition",
    "Australia",
    "CapitalGainsSummary",
    "DerivativeFill",
    "DerivativeRow",
    "DerivativeSummary",
    "Disposal",
    "DisposalLine",
    "Jurisdiction",
    "Method",
    "MissingRateError",
    "Parcel",
    "ParcelPool",
    "Piece",
    "RateTable",
    "TaxInputError",
    "TaxReport",
    "TaxYear",
    "Trade",
    "build_report",
    "derivative_rows",
    "disposal_rows",
    "from_run",
    "held_rows",
    "jurisdiction",
    "jurisdictions",
    "money",
    "read_holdings",
    "read_identification",
    "read_trades",
    "register",
    "summary_items",
    "tax_events",
    "write_reports",
]
