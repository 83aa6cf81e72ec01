"""`RateTable`: daily conversion rates into the report currency, from a user's CSV file.

The file has a header and one row per currency and day::

    date,currency,rate
    2024-07-01,USDT,1.4978
    2024-07-01,BTC,93512.40

`rate` is the value in the report currency (AUD for Australia) of one unit of
`currency` on `date`. A day that is missing is refused, naming the currency and the
day: a tax value is never guessed from a neighbouring day.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path

from sapphire.compliance.tax.common import TaxInputError, check_asset, parse_day, parse_decimal

__all__ = ["MissingRateError", "RateTable"]

COLUMNS = ("date", "currency", "rate")


class MissingRateError(TaxInputError):
    """No rate for a currency on a day that a trade needs."""


class RateTable:
    """Daily rates of currencies in `currency` (the report currency, whose rate is 1)."""

    def __init__(
        self,
        currency: str,
        rates: Iterable[tuple[date, str, Decimal]] = (),
        *,
        source: str = "the rates",
    ) -> None:
        self.currency = check_asset(currency, "report currency")
        self.source = source
        self._rates: dict[tuple[str, date], Decimal] = {}
        for day, code, rate in rates:
            self.add(day, code, rate)

    def add(self, day: date, currency: str, rate: Decimal, where: str = "") -> None:
        """Add the rate of one `currency` on `day` (TaxInputError for a second one)."""
        where = where or f"{self.source}, {currency} {day}"
        code = check_asset(currency, where)
        if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
            raise TaxInputError(f"{where}: rate must be a number > 0, got {rate}")
        if (code, day) in self._rates:
            raise TaxInputError(f"{where}: a second {code} rate for {day}")
        self._rates[code, day] = rate

    @classmethod
    def load(cls, path: str | Path, currency: str) -> RateTable:
        """The rates in the CSV file `path` (TaxInputError naming a bad row)."""
        file = Path(path)
        table = cls(currency, source=file.name)
        try:
            handle = file.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise TaxInputError(f"cannot read the rates file {file}: {exc.strerror}") from None
        with handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise TaxInputError(
                    f"{file.name}: the header must have the columns {', '.join(COLUMNS)} "
                    f"(missing {', '.join(missing)}), got {','.join(header) or 'nothing'}"
                )
            at = {name: header.index(name) for name in COLUMNS}
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{file.name} row {line}"
                if len(row) < len(header):
                    raise TaxInputError(f"{where}: {len(row)} cells, the header has {len(header)}")
                table.add(
                    parse_day(row[at["date"]], where),
                    row[at["currency"]],
                    parse_decimal(row[at["rate"]], "rate", where, positive=True),
                    where,
                )
        return table

    def rate(self, currency: str, day: date, *, needed_by: str = "") -> Decimal:
        """The value of one `currency` in the report currency on `day` (1 for the report
        currency itself); MissingRateError naming the day and what needed it."""
        code = currency.upper()
        if code == self.currency:
            return Decimal(1)
        found = self._rates.get((code, day))
        if found is not None:
            return found
        days = sorted(d for c, d in self._rates if c == code)
        held = f"it has {code} from {days[0]} to {days[-1]}" if days else f"it has no {code}"
        why = f" (needed by {needed_by})" if needed_by else ""
        raise MissingRateError(
            f"no {code} to {self.currency} rate for {day} in {self.source}{why}: {held}. "
            "Add that day's rate; a missing day is never guessed"
        )

    def __len__(self) -> int:
        return len(self._rates)
