"""The input files: Sapphire's trade CSV, Bybit's spot trade history exports (three
layouts), opening holdings, identification and daily rates; every bad row named."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tax_helpers import SYDNEY

from sapphire.compliance.tax import (
    RateTable,
    TaxInputError,
    read_holdings,
    read_identification,
    read_trades,
)
from sapphire.domain import OrderSide

D = Decimal
DATA = Path(__file__).resolve().parents[3] / "data" / "tax"
HEADER = "time,base,quote,side,quantity,price,fee,fee_currency,id\n"


def _file(tmp_path: Path, text: str, name: str = "trades.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_sapphire_trade_file(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        HEADER + "2024-08-01T01:30:00Z,btc,AUD,buy,0.5,90000,45,AUD,a1\n\n"
        "2024-08-02T09:00:00+10:00,ETH,USDT,SELL,2,4000,,,\n",
    )
    first, second = read_trades(path)
    assert (first.trade_id, first.base, first.side, first.quantity) == (
        "a1",
        "BTC",
        OrderSide.BUY,
        D("0.5"),
    )
    assert (first.quote_amount, first.fee, first.fee_currency) == (D(45000), D(45), "AUD")
    assert first.ts == datetime(2024, 8, 1, 1, 30, tzinfo=UTC)
    assert second.trade_id == "trades.csv-row-4" and second.ts == datetime(
        2024, 8, 1, 23, tzinfo=UTC
    )
    assert (second.fee, second.quote_amount) == (0, D(8000))


def test_a_value_column_gives_the_quote_amount(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "time,base,quote,side,quantity,price,value\n2024-08-01T00:00:00Z,BTC,AUD,BUY,3,0.33,1\n",
    )
    assert read_trades(path)[0].quote_amount == D(1)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "2024-08-01 10:00,BTC,AUD,BUY,1,1,,,x",
            "row 2: time '2024-08-01 10:00' has no UTC offset",
        ),
        ("2024-08-01T10:00Z,BTC,AUD,HOLD,1,1,,,x", "row 2: side must be BUY or SELL, got 'HOLD'"),
        ("2024-08-01T10:00Z,BTC,AUD,BUY,-1,1,,,x", "row 2: quantity must be > 0, got -1"),
        ("2024-08-01T10:00Z,BTC,AUD,BUY,1,1.2.3,,,x", "row 2: price '1.2.3' is not a number"),
        ("2024-08-01T10:00Z,BTC,AUD,BUY,1,1,5,,x", "row 2: the fee 5 needs its fee_currency"),
        ("2024-08-01T10:00Z,BTC,AUD,BUY,1,1,,", "row 2: 8 cells, the header has 9"),
        ("yesterday,BTC,AUD,BUY,1,1,,,x", "row 2: time 'yesterday' is not an ISO 8601 time"),
    ],
)
def test_a_bad_row_is_named(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(TaxInputError, match=message):
        read_trades(_file(tmp_path, HEADER + row + "\n"))


def test_a_file_that_is_no_trade_file_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(TaxInputError, match="missing side, quantity, price"):
        read_trades(_file(tmp_path, "time,base,quote\n"))
    with pytest.raises(TaxInputError, match="cannot read"):
        read_trades(tmp_path / "absent.csv")


def test_two_trades_with_one_id_are_refused(tmp_path: Path) -> None:
    rows = "2024-08-01T10:00Z,BTC,AUD,BUY,1,1,,,x\n2024-08-02T10:00Z,BTC,AUD,SELL,1,1,,,x\n"
    with pytest.raises(TaxInputError, match="trade id 'x' appears twice"):
        read_trades(_file(tmp_path, HEADER + rows))


def test_bybit_unified_spot_order_history() -> None:
    """Bybit's "Spot Orders > Order History" export of a unified trading account: pairs
    written BTCUSDT, times as 'HH:MM YYYY-MM-DD' in UTC, the buy fee in the coin bought
    and the sell fee in the quote."""
    sell, buy = read_trades(DATA / "bybit-spot-orderhistory.csv")
    assert (buy.base, buy.quote, buy.side, buy.quantity, buy.quote_amount) == (
        "BTC", "USDT", OrderSide.BUY, D("0.1"), D(6000),
    )  # fmt: skip
    assert (buy.fee, buy.fee_currency, buy.trade_id) == (D("0.0001"), "BTC", "2200000000000000001")
    assert buy.ts == datetime(2024, 8, 1, 1, 30, tzinfo=UTC)
    assert (sell.fee, sell.fee_currency) == (D("3.25"), "USDT")
    assert sell.source == "bybit-spot-orderhistory.csv row 2"


def test_bybit_trade_history_statement_with_its_uid_line() -> None:
    eth, sol = read_trades(DATA / "bybit-spot-statement.csv")
    assert (eth.base, eth.quote, eth.fee_currency) == ("ETH", "USDC", "ETH")
    assert eth.ts == datetime(2024, 12, 9, 19, 48, 23, tzinfo=UTC)
    assert (sol.base, sol.quote, sol.fee_currency, sol.fee) == ("SOL", "USDT", "USDT", D("0.18"))


def test_bybit_pre_unified_export_with_units() -> None:
    sell, buy = read_trades(DATA / "bybit-spot-pre-uta.csv")
    assert (sell.base, sell.quote, sell.quote_amount, sell.fee_currency) == (
        "DOGE",
        "USDT",
        D(110),
        "USDT",
    )
    assert (buy.quantity, buy.fee, buy.fee_currency) == (D(1000), D(1), "DOGE")
    assert buy.ts == datetime(2024, 9, 27, 21, 2, 35, tzinfo=UTC)


def test_bybit_rows_that_cannot_be_read_are_named(tmp_path: Path) -> None:
    head = "Spot Pairs,Direction,Filled Price,Filled Quantity,Fees,Timestamp (UTC)\n"
    with pytest.raises(
        TaxInputError, match="row 2: cannot tell the base and quote of the pair 'FOOBAR'"
    ):
        read_trades(_file(tmp_path, head + "FOOBAR,BUY,1,1,0,01:00 2024-08-01\n"))
    with pytest.raises(TaxInputError, match="row 2: timestamp 'tomorrow' is not like"):
        read_trades(_file(tmp_path, head + "BTCUSDT,BUY,1,1,0,tomorrow\n"))
    with pytest.raises(TaxInputError, match="Filled Price and Filled Quantity must be > 0"):
        read_trades(_file(tmp_path, head + "BTCUSDT,BUY,0,1,0,01:00 2024-08-01\n"))
    local = "Spot Pairs,Direction,Filled Price,Filled Quantity,Fees,Timestamp (UTC+8)\n"
    (t,) = read_trades(_file(tmp_path, local + "BTC/USDT,Buy,2,1,0,2024-08-01 08:00:00\n"))
    assert t.ts == datetime(2024, 8, 1, tzinfo=UTC)


def test_opening_holdings_and_their_errors(tmp_path: Path) -> None:
    (usdt,) = read_holdings(DATA / "holdings.csv", SYDNEY)
    assert (usdt.parcel_id, usdt.asset, usdt.quantity, usdt.cost) == (
        "opening-usdt",
        "USDT",
        D(10000),
        D(14900),
    )
    assert usdt.day == date(2024, 7, 1) and usdt.ts == datetime(2024, 6, 30, 14, tzinfo=UTC)
    head = "id,asset,acquired,quantity,cost_base\n"
    exact = _file(tmp_path, head + "h,btc,2020-01-02T03:04:05Z,1,100.5\n", "h.csv")
    assert read_holdings(exact, SYDNEY)[0].ts == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    for row, message in [
        ("h,BTC,2020-13-01,1,1", "'2020-13-01' is not a date"),
        ("h,BTC,2020-01-01,1,-1", "cost_base must be >= 0"),
        (",BTC,2020-01-01,1,1", "a holding needs an id"),
        ("h,BTC,2020-01-01,1,1\nh,ETH,2020-01-01,1,1", "row 3: a second holding with the id 'h'"),
    ]:
        with pytest.raises(TaxInputError, match=message):
            read_holdings(_file(tmp_path, head + row + "\n", "h.csv"), SYDNEY)


def test_identification_file(tmp_path: Path) -> None:
    path = _file(
        tmp_path, "disposal_id,parcel_id,quantity\nd:BTC,p1:BTC,0.5\nd:BTC,p2:BTC,0.25\n", "id.csv"
    )
    assert read_identification(path) == {"d:BTC": [("p1:BTC", D("0.5")), ("p2:BTC", D("0.25"))]}
    with pytest.raises(TaxInputError, match=r"id\.csv row 2: quantity must be > 0"):
        read_identification(_file(tmp_path, "disposal_id,parcel_id,quantity\nd,p,0\n", "id.csv"))
    with pytest.raises(TaxInputError, match="no header line found"):
        read_identification(_file(tmp_path, "disposal,parcel\n", "id.csv"))


def test_rates_file_and_its_errors(tmp_path: Path) -> None:
    rates = RateTable.load(DATA / "rates.csv", "AUD")
    assert (
        rates.rate("usdt", date(2024, 8, 1)) == D("1.5")
        and rates.rate("AUD", date(1999, 1, 1)) == 1
    )
    assert len(rates) == 2
    for text, message in [
        ("day,currency,rate\n", r"must have the columns date, currency, rate \(missing date\)"),
        ("date,currency,rate\n2024-08-01,USDT,0\n", "row 2: rate must be > 0"),
        (
            "date,currency,rate\n2024-08-01,USDT,1\n2024-08-01,usdt,2\n",
            "row 3: a second USDT rate for 2024-08-01",
        ),
        ("date,currency,rate\n01/08/2024,USDT,1\n", "row 2: '01/08/2024' is not a date"),
    ]:
        with pytest.raises(TaxInputError, match=message):
            RateTable.load(_file(tmp_path, text, "rates.csv"), "AUD")
