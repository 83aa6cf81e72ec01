"""Trades as acquisitions and disposals: values in AUD through the day's rates, the fee
counted once (cost base of a purchase, reduced proceeds of a sale or swap), money versus
CGT assets, and the tax date in Sydney."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from tax_helpers import SYDNEY, trade

from sapphire.compliance.tax import (
    Acquisition,
    Disposal,
    MissingRateError,
    RateTable,
    TaxInputError,
    Trade,
    tax_events,
)

D = Decimal


def _rates() -> RateTable:
    return RateTable(
        "AUD",
        [
            (date(2024, 8, 1), "USDT", D("1.5")),
            (date(2024, 8, 1), "BNB", D(500)),
            (date(2024, 7, 1), "USDT", D("1.49")),
        ],
    )


def _one(
    t: Trade, cash: frozenset[str] = frozenset({"AUD"})
) -> list[tuple[str, str, Decimal, Decimal]]:
    """(kind, asset, quantity, value) of each event of one trade."""
    out = []
    for e in tax_events([t], _rates(), SYDNEY, cash):
        if isinstance(e, Acquisition):
            out.append(("acquire", e.asset, e.quantity, e.cost))
        else:
            assert isinstance(e, Disposal)
            out.append(("dispose", e.asset, e.quantity, e.proceeds))
    return out


@pytest.mark.parametrize(
    ("fee", "fee_ccy", "expected"),
    [
        ("0", "", [("acquire", "BTC", D(1), D(1000))]),
        ("10", "AUD", [("acquire", "BTC", D(1), D(1010))]),  # in the cost base
        ("0.001", "BTC", [("acquire", "BTC", D("0.999"), D(1000))]),  # fewer coins, same cost
        ("-1", "AUD", [("acquire", "BTC", D(1), D(999))]),  # a rebate lowers the cost
        ("0.1", "BNB", [("acquire", "BTC", D(1), D(1050)), ("dispose", "BNB", D("0.1"), D(50))]),
    ],
)
def test_a_purchase_with_money_puts_the_fee_in_the_cost_base(
    fee: str, fee_ccy: str, expected: list[tuple[str, str, Decimal, Decimal]]
) -> None:
    assert (
        _one(trade("t", "2024-08-01", "BUY", "1", "1000", fee=fee, fee_currency=fee_ccy))
        == expected
    )


@pytest.mark.parametrize(
    ("fee", "fee_ccy", "expected"),
    [
        ("12", "AUD", [("dispose", "BTC", D(1), D(1188))]),  # lower proceeds
        ("0.01", "BTC", [("dispose", "BTC", D("1.01"), D(1200))]),  # more coins given
        ("0.1", "BNB", [("dispose", "BTC", D(1), D(1150)), ("dispose", "BNB", D("0.1"), D(50))]),
    ],
)
def test_a_sale_for_money_takes_the_fee_off_the_proceeds(
    fee: str, fee_ccy: str, expected: list[tuple[str, str, Decimal, Decimal]]
) -> None:
    assert (
        _one(trade("t", "2024-08-01", "SELL", "1", "1200", fee=fee, fee_currency=fee_ccy))
        == expected
    )


def test_a_swap_is_a_disposal_and_an_acquisition_at_market_value_with_the_fee_once() -> None:
    """0.1 BTC for 6,000 USDT at 1.5 AUD a USDT: the trade is worth $9,000."""
    bybit_buy = trade(
        "b", "2024-08-01", "BUY", "0.1", "6000", quote="USDT", fee="0.0001", fee_currency="BTC"
    )
    assert _one(bybit_buy) == [
        ("dispose", "USDT", D(6000), D(8991)),  # the fee (0.0001 BTC = $9) off the proceeds
        ("acquire", "BTC", D("0.0999"), D(8991)),  # the BTC received, at market value
    ]
    fee_in_quote = trade(
        "q", "2024-08-01", "BUY", "0.1", "6000", quote="USDT", fee="6", fee_currency="USDT"
    )
    assert _one(fee_in_quote) == [
        ("dispose", "USDT", D(6006), D(9000)),  # more USDT given for the same BTC
        ("acquire", "BTC", D("0.1"), D(9000)),
    ]
    bybit_sell = trade(
        "s", "2024-08-01", "SELL", "0.1", "6000", quote="USDT", fee="6", fee_currency="USDT"
    )
    assert _one(bybit_sell) == [
        ("dispose", "BTC", D("0.1"), D(8991)),
        ("acquire", "USDT", D(5994), D(8991)),
    ]


def test_a_currency_treated_as_money_is_neither_acquired_nor_disposed_of() -> None:
    bybit_buy = trade(
        "b", "2024-08-01", "BUY", "0.1", "6000", quote="USDT", fee="0.0001", fee_currency="BTC"
    )
    assert _one(bybit_buy, cash=frozenset({"AUD", "USDT"})) == [
        ("acquire", "BTC", D("0.0999"), D(9000))
    ]
    fiat = trade("f", "2024-08-01", "BUY", "100", "65", base="USD", quote="AUD")
    assert _one(fiat, cash=frozenset({"AUD", "USD"})) == []


def test_the_tax_date_and_the_rate_day_are_taken_in_sydney() -> None:
    """15:00 UTC on 30 June 2024 is 1 July in Sydney: financial year 2024-25, and the
    USDT rate of 1 July."""
    late = Trade("t", datetime(2024, 6, 30, 15, tzinfo=UTC), "BTC", "USDT", "SELL", D(1), D(100))
    events = tax_events([late], _rates(), SYDNEY, {"AUD"})
    assert {e.day for e in events} == {date(2024, 7, 1)}
    assert [e.proceeds for e in events if isinstance(e, Disposal)] == [D(149)]


def test_a_missing_rate_names_the_currency_the_day_and_the_trade() -> None:
    t = trade("t9", "2024-08-02", "BUY", "0.1", "6000", quote="USDT")
    with pytest.raises(MissingRateError) as info:
        tax_events([t], _rates(), SYDNEY)
    message = str(info.value)
    assert "no USDT to AUD rate for 2024-08-02" in message
    assert "trade t9" in message and "from 2024-07-01 to 2024-08-01" in message
    assert "never guessed" in message
    fee = trade("t8", "2024-08-01", "BUY", "1", "10", fee="1", fee_currency="SOL")
    with pytest.raises(MissingRateError, match=r"no SOL to AUD rate .* it has no SOL"):
        tax_events([fee], _rates(), SYDNEY)


def test_a_fee_larger_than_what_is_received_is_refused() -> None:
    t = trade("t", "2024-08-01", "BUY", "0.1", "1000", fee="0.2", fee_currency="BTC")
    with pytest.raises(TaxInputError, match=r"the fee 0.2 BTC is more than the 0.1 BTC received"):
        tax_events([t], _rates(), SYDNEY)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"quantity": D(0)}, "quantity must be a Decimal > 0"),
        ({"base": "AUD"}, "base and quote are both AUD"),
        ({"side": "HOLD"}, "side must be BUY or SELL"),
        ({"ts": datetime(2024, 1, 1)}, "must be timezone-aware"),
        ({"fee": D(1)}, "the fee 1 needs its fee currency"),
        ({"base": "B T C"}, "is not an asset code"),
    ],
)
def test_a_bad_trade_is_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "trade_id": "t", "ts": datetime(2024, 1, 1, tzinfo=UTC), "base": "BTC", "quote": "AUD",
        "side": "BUY", "quantity": D(1), "quote_amount": D(1),
    }  # fmt: skip
    with pytest.raises(TaxInputError, match=message):
        Trade(**{**values, **fields})
