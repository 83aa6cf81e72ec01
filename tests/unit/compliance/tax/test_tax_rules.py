"""Jurisdictions are pluggable: a rule set written outside the package is registered by
code and drives the whole report, with the matcher untouched."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from types import MappingProxyType

import pytest
from tax_helpers import trade

from sapphire.compliance.tax import (
    CapitalGainsSummary,
    Jurisdiction,
    Piece,
    RateTable,
    TaxYear,
    build_report,
    jurisdiction,
    jurisdictions,
    register,
)
from sapphire.compliance.tax.rules import _REGISTRY

D = Decimal


class Calendar:
    """A made-up country: calendar years in UTC, a 30% discount after 6 months for
    individuals, losses netted against any gain."""

    code = "XX"
    name = "Examplestan"
    currency = "AUD"
    timezone = "UTC"
    entities = MappingProxyType({"individual": D("0.3")})
    notes = ("made up",)

    def tax_year(self, label: str) -> TaxYear:
        year = int(label)
        return TaxYear(label, date(year, 1, 1), date(year, 12, 31))

    def year_of(self, day: date) -> TaxYear:
        return self.tax_year(str(day.year))

    def discount_eligible(self, acquired: date, disposed: date) -> bool:
        return (disposed - acquired).days > 182

    def summarise(
        self, pieces: Sequence[Piece], entity: str, carried_loss: Decimal
    ) -> CapitalGainsSummary:
        gains = sum((p.gain for p in pieces if p.gain > 0), D(0))
        long = sum(
            (
                p.gain
                for p in pieces
                if p.gain > 0 and self.discount_eligible(p.acquired_day, p.disposal.day)
            ),
            D(0),
        )
        losses = -sum((p.gain for p in pieces if p.gain < 0), D(0))
        discount = long * self.entities[entity]
        net = max(gains - losses - carried_loss - discount, D(0))
        return CapitalGainsSummary(
            gains, long, losses, min(losses, gains), carried_loss, D(0), self.entities[entity],
            discount, net, D(0), "any order",
        )  # fmt: skip


@pytest.fixture
def calendar() -> Iterator[Jurisdiction]:
    register("xx", Calendar)
    yield Calendar()
    del _REGISTRY["XX"]


def test_a_registered_rule_set_drives_the_report(calendar: Jurisdiction) -> None:
    assert "XX" in jurisdictions() and jurisdiction("xx").name == "Examplestan"
    trades = [
        trade("b", "2023-01-10", "BUY", "2", "1000"),
        trade("s1", "2023-12-20", "SELL", "1", "1500"),  # in 2023, held > 6 months
        trade("s2", "2024-01-05", "SELL", "1", "1500"),  # the next calendar year
    ]
    report = build_report(trades, year="2023", rates=RateTable("AUD"), jurisdiction_code="XX")
    assert report.jurisdiction == "XX" and report.year.end == date(2023, 12, 31)
    assert [line.piece.disposal.disposal_id for line in report.lines] == ["s1:BTC"]
    assert report.lines[0].discounted
    assert report.summary.net_capital_gain == D(700) and report.notes == ("made up",)


def test_australia_is_registered() -> None:
    au = jurisdiction("au")
    assert (au.code, au.currency, au.timezone) == ("AU", "AUD", "Australia/Sydney")
    assert dict(au.entities)["company"] == 0 and any("Not tax advice" in n for n in au.notes)
