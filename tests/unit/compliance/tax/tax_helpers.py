"""Shared by the tax tests: trades and acquisitions written briefly."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sapphire.compliance.tax import Acquisition, Disposal, RateTable, Trade

SYDNEY = ZoneInfo("Australia/Sydney")


def at(day: str, hour: int = 12) -> datetime:
    """Noon (by default) in Sydney on `day`, as UTC: the tax date is `day`."""
    return datetime.combine(date.fromisoformat(day), time(hour), SYDNEY).astimezone(UTC)


def trade(
    trade_id: str,
    day: str,
    side: str,
    quantity: str,
    amount: str,
    base: str = "BTC",
    quote: str = "AUD",
    fee: str = "0",
    fee_currency: str = "",
) -> Trade:
    """`quantity` of `base` bought or sold for `amount` of `quote` at noon on `day`."""
    return Trade(
        trade_id, at(day), base, quote, side, Decimal(quantity), Decimal(amount),
        Decimal(fee), fee_currency,
    )  # fmt: skip


def acquisition(
    parcel_id: str, day: str, quantity: str, cost: str, asset: str = "BTC"
) -> Acquisition:
    return Acquisition(
        parcel_id, asset, at(day), date.fromisoformat(day), Decimal(quantity), Decimal(cost),
        "test", "bought",
    )  # fmt: skip


def disposal(
    disposal_id: str, day: str, quantity: str, proceeds: str, asset: str = "BTC"
) -> Disposal:
    return Disposal(
        disposal_id, asset, at(day), date.fromisoformat(day), Decimal(quantity),
        Decimal(proceeds), "test", "sold",
    )  # fmt: skip


def aud() -> RateTable:
    """A rate table with no rates: trades in AUD need none."""
    return RateTable("AUD")
