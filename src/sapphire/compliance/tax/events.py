"""Trades as CGT events: the `Acquisition`s and `Disposal`s of assets, valued in the
report currency.

A trade gives one asset and receives another. Money (the report currency and the
currencies in `cash`, fiat by default) is neither acquired nor disposed of; every other
asset, stablecoins included, is a CGT asset. So buying BTC with AUD is an acquisition,
selling BTC for AUD a disposal, and swapping USDT for BTC both: a disposal of USDT at
market value and an acquisition of BTC at that value.

The market value of a trade is ``quote_amount * rate(quote, day)``, the trade's own
price converted at the day's rate (the day is the trade's date in the rule set's time
zone). A fee is counted once:

- a purchase with money: the fee is in the acquired parcel's cost base (a fee taken
  from the coins received leaves fewer coins for the same cost);
- a sale for money or a swap: the fee reduces the capital proceeds of the disposal (a
  fee paid from the coins given means more coins given for the same proceeds), and the
  asset received in a swap costs its market value;
- a fee paid in a third CGT asset (e.g. an exchange token) is also a disposal of that
  asset at its market value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from sapphire.compliance.tax.common import TaxInputError, exact, internal, plain
from sapphire.compliance.tax.rates import RateTable
from sapphire.compliance.tax.trades import Trade
from sapphire.domain.enums import OrderSide

__all__ = ["DEFAULT_CASH", "Acquisition", "Disposal", "TaxEvent", "tax_events"]

#: currencies treated as money by default: fiat (foreign-currency gains are not computed)
DEFAULT_CASH = frozenset(
    {"AUD", "USD", "EUR", "GBP", "JPY", "CAD", "NZD", "SGD", "HKD", "CHF", "CNY", "KRW"}
)


@dataclass(frozen=True, slots=True)
class Acquisition:
    """A parcel acquired: `quantity` of `asset` with cost base `cost` (report currency)
    on the tax date `day`. `how` says how it was acquired."""

    parcel_id: str
    asset: str
    ts: datetime
    day: date
    quantity: Decimal
    cost: Decimal
    source: str
    how: str


@dataclass(frozen=True, slots=True)
class Disposal:
    """A CGT event: `quantity` of `asset` disposed of for capital proceeds `proceeds`
    (report currency) on the tax date `day`. `how` says what it was disposed of for."""

    disposal_id: str
    asset: str
    ts: datetime
    day: date
    quantity: Decimal
    proceeds: Decimal
    source: str
    how: str


TaxEvent = Acquisition | Disposal


def tax_events(
    trades: Iterable[Trade],
    rates: RateTable,
    tz: tzinfo,
    cash: Iterable[str] = DEFAULT_CASH,
) -> list[TaxEvent]:
    """The acquisitions and disposals of `trades`, in time order (a trade's disposal
    before its acquisition). MissingRateError names a day without a rate."""
    money = {c.upper() for c in cash} | {rates.currency}
    ordered = sorted(trades, key=lambda t: t.ts)
    events: list[TaxEvent] = []
    with exact():
        for trade in ordered:
            events.extend(_events(trade, rates, tz, money))
    return events


def _events(trade: Trade, rates: RateTable, tz: tzinfo, money: set[str]) -> Sequence[TaxEvent]:
    day = trade.ts.astimezone(tz).date()
    quote_rate = rates.rate(trade.quote, day, needed_by=trade.where)
    value = internal(trade.quote_amount * quote_rate)
    if trade.side is OrderSide.BUY:
        given, given_qty, received, received_qty = (
            trade.quote, trade.quote_amount, trade.base, trade.quantity,
        )  # fmt: skip
    else:
        given, given_qty, received, received_qty = (
            trade.base, trade.quantity, trade.quote, trade.quote_amount,
        )  # fmt: skip
    fee, fee_ccy = trade.fee, trade.fee_currency
    fee_value = Decimal(0)
    if fee != 0:
        if fee_ccy == trade.quote:
            unit = quote_rate
        elif fee_ccy == trade.base:
            unit = trade.quote_amount * quote_rate / trade.quantity
        else:
            unit = rates.rate(fee_ccy, day, needed_by=f"the fee of {trade.where}")
        fee_value = internal(fee * unit)
    third_fee = fee != 0 and fee_ccy not in (given, received)
    if fee_ccy == given:
        given_qty += fee
    net_value = value  # the market value of what is received, less a fee taken from it
    if fee_ccy == received:
        received_qty -= fee
        net_value -= fee_value
    if received_qty < 0:
        raise TaxInputError(
            f"{trade.where}: the fee {plain(fee)} {fee_ccy} is more than the "
            f"{plain(received_qty + fee)} {received} received"
        )
    events: list[TaxEvent] = []
    given_is_asset = given not in money
    if given_is_asset:
        events.append(
            Disposal(
                f"{trade.trade_id}:{given}", given, trade.ts, day, given_qty,
                net_value - (fee_value if third_fee else 0), trade.where,
                f"{'swapped' if received not in money else 'sold'} for {received}",
            )
        )  # fmt: skip
    if received not in money and received_qty > 0:
        if given_is_asset:
            cost, how = net_value, f"swapped for {given}"
        else:
            cost = value + (fee_value if fee_ccy != received else 0)
            how = f"bought with {given}"
        events.append(
            Acquisition(
                f"{trade.trade_id}:{received}", received, trade.ts, day, received_qty, cost,
                trade.where, how,
            )
        )  # fmt: skip
    if third_fee and fee_ccy not in money:
        fee_id = f"{trade.trade_id}:{fee_ccy}"
        if fee > 0:
            events.append(
                Disposal(
                    fee_id, fee_ccy, trade.ts, day, fee, fee_value, trade.where,
                    f"fee of a {received} trade",
                )
            )  # fmt: skip
        else:  # a rebate paid in a third asset is an acquisition of it
            events.append(
                Acquisition(
                    fee_id, fee_ccy, trade.ts, day, -fee, -fee_value, trade.where,
                    f"fee rebate of a {received} trade",
                )
            )  # fmt: skip
    return events
