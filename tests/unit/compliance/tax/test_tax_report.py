"""`build_report` end to end: a run's fills in the store (spot and perpetual), the year's
boundaries in Sydney, earlier years' disposals, derivative PnL, the CSV writers and
their rounding, and carrying the parcels held into the next year."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tax_helpers import SYDNEY, at, aud, trade

from sapphire.compliance.tax import (
    DerivativeFill,
    RateTable,
    TaxInputError,
    build_report,
    disposal_rows,
    from_run,
    money,
    read_holdings,
    summary_items,
    write_reports,
)
from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.store import Store

D = Decimal
RUN = "tax-run"
S1 = StrategyId("s1")
SPOT = InstrumentId("BTCUSDT", "BYBIT")
PERP = InstrumentId("BTCUSDT-PERP", "BYBIT")


def _instrument(
    instrument_id: InstrumentId, kind: ContractType, settlement: str = "USDT"
) -> Instrument:
    return Instrument(
        instrument_id, "BTC", "USDT", settlement, kind, D("0.01"), D("0.0001"),
        maker_fee=D("0.001"), taker_fee=D("0.001"),
    )  # fmt: skip


class Fills:
    """Records filled market orders in a run, as a node's journal does."""

    def __init__(self, store: Store) -> None:
        self.store, self.n = store, 0

    def fill(
        self, instrument_id: InstrumentId, side: str, qty: str, px: str, fee: str, day: str
    ) -> None:
        self.n += 1
        ts = int(at(day).timestamp()) * 1_000_000_000 + self.n
        coid = ClientOrderId(f"{RUN}-{S1}-{self.n}")
        order = Order.market(coid, S1, instrument_id, OrderSide(side), D(qty), ts_init=ts)
        self.store.record_order_event(order, order.init_event, run_id=RUN)
        for event in (
            OrderSubmitted(ts_ns=ts, client_order_id=coid),
            OrderAccepted(ts_ns=ts, client_order_id=coid, venue_order_id=VenueOrderId(coid)),
            OrderFilled(
                ts_ns=ts, client_order_id=coid, trade_id=TradeId(f"T{self.n}"), last_qty=D(qty),
                last_px=D(px), liquidity=LiquiditySide.TAKER, fee=D(fee), fee_currency="USDT",
            ),
        ):  # fmt: skip
            order.apply(event)
            self.store.record_order_event(order, event, run_id=RUN)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'tax.db'}") as s:
        s.start_run(RUN, "paper", 1, strategy_ids=[S1])
        s.save_instrument(_instrument(SPOT, ContractType.SPOT))
        s.save_instrument(_instrument(PERP, ContractType.PERPETUAL))
        yield s


def _usdt_rates(*days: str, rate: str = "1.5") -> RateTable:
    return RateTable("AUD", [(date.fromisoformat(d), "USDT", D(rate)) for d in days])


def test_a_runs_spot_fills_are_trades_and_its_perpetual_fills_derivatives(store: Store) -> None:
    fills = Fills(store)
    fills.fill(SPOT, "BUY", "0.1", "60000", "6", "2024-08-01")
    fills.fill(PERP, "SELL", "0.2", "61000", "1.22", "2024-08-01")  # open a short
    fills.fill(PERP, "BUY", "0.3", "60000", "1.8", "2024-08-02")  # close it (+200) and go long
    fills.fill(PERP, "SELL", "0.1", "59000", "0.59", "2024-08-03")  # close the long (-100)
    fills.fill(SPOT, "SELL", "0.1", "66000", "6.6", "2024-08-03")
    trades, derivatives = from_run(store, RUN)
    assert [(t.trade_id, t.base, t.quote, t.side, t.quote_amount) for t in trades] == [
        ("tax-run/T1", "BTC", "USDT", OrderSide.BUY, D(6000)),
        ("tax-run/T5", "BTC", "USDT", OrderSide.SELL, D(6600)),
    ]  # fmt: skip
    assert [d.trade_id for d in derivatives] == ["tax-run/T2", "tax-run/T3", "tax-run/T4"]
    assert trades[0].ts == at("2024-08-01").replace(microsecond=0)
    rates = _usdt_rates("2024-08-01", "2024-08-02", "2024-08-03")
    report = build_report(
        trades, year="2024-25", rates=rates, derivatives=derivatives, cash={"AUD", "USDT"}
    )
    (line,) = report.lines
    # bought for 6,006 USDT (fee in the cost base), sold for 6,593.40 USDT, at 1.5 AUD
    assert (line.piece.cost, line.piece.proceeds) == (D(9009), D("9890.1"))
    d = report.derivatives
    assert [r.realized for r in d.rows] == [0, D(300), D(-150)]  # +200 and -100 USDT at 1.5
    assert (d.gains, d.losses, d.fees) == (D(300), D(150), D("5.415"))
    assert d.net == D("144.585") and money(d.net) == "144.59"


def test_an_instrument_missing_from_the_store_is_read_from_its_symbol(store: Store) -> None:
    fills = Fills(store)
    fills.fill(InstrumentId("ETH/USDT", "OTHER"), "BUY", "1", "3000", "3", "2024-08-01")
    fills.fill(InstrumentId("ETH/USDT:USDT", "OTHER"), "BUY", "1", "3000", "3", "2024-08-01")
    trades, derivatives = from_run(store, RUN)
    assert [(t.base, t.quote) for t in trades] == [("ETH", "USDT")]
    assert [(d.instrument, d.settlement) for d in derivatives] == [("ETH/USDT:USDT@OTHER", "USDT")]


def test_unknown_runs_odd_symbols_and_inverse_contracts_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="no run 'nope'"):
        from_run(store, "nope")
    inverse = InstrumentId("BTCUSD", "BYBIT")
    store.save_instrument(
        Instrument(
            inverse, "BTC", "USD", "BTC", ContractType.PERPETUAL, D("0.5"), D(1),
            maker_fee=D(0), taker_fee=D(0),
        )
    )  # fmt: skip
    Fills(store).fill(inverse, "BUY", "1", "60000", "0", "2024-08-01")
    with pytest.raises(TaxInputError, match="settles in BTC, not its quote USD: inverse"):
        from_run(store, RUN)


def test_an_unreadable_symbol_is_named(store: Store) -> None:
    Fills(store).fill(InstrumentId("ETHUSDT", "OTHER"), "BUY", "1", "3000", "3", "2024-08-01")
    with pytest.raises(TaxInputError, match=r"ETHUSDT@OTHER is not in the store"):
        from_run(store, RUN)


def test_the_year_ends_at_midnight_in_sydney_and_later_trades_are_left_out() -> None:
    """23:59 on 30 June in Sydney is 2024-25's; one minute later is 2025-26's."""
    trades = [
        trade("b", "2024-08-01", "BUY", "2", "2000"),
        trade("in", "2025-06-30", "SELL", "1", "1500"),
        trade("out", "2025-07-01", "SELL", "1", "1800"),
    ]
    last = datetime(2025, 6, 30, 23, 59, tzinfo=SYDNEY).astimezone(UTC)
    first = datetime(2025, 7, 1, 0, 0, tzinfo=SYDNEY).astimezone(UTC)
    trades[1], trades[2] = replace(trades[1], ts=last), replace(trades[2], ts=first)
    report = build_report(trades, year="2024-25", rates=aud())
    assert [line.piece.disposal.disposal_id for line in report.lines] == ["in:BTC"]
    assert (report.trades_used, report.trades_after) == (2, 1)
    later = build_report(trades, year="2025-26", rates=aud())
    assert [line.piece.gain for line in later.lines] == [D(800)]  # the parcel left over


def test_earlier_years_disposals_use_up_parcels_by_the_same_method() -> None:
    trades = [
        trade("b1", "2022-08-01", "BUY", "1", "100"),
        trade("b2", "2022-09-01", "BUY", "1", "300"),
        trade("s1", "2023-03-01", "SELL", "1", "500"),  # 2022-23
        trade("s2", "2024-08-01", "SELL", "1", "500"),  # 2024-25
    ]
    fifo = build_report(trades, year="2024-25", rates=aud(), method="fifo")
    lifo = build_report(trades, year="2024-25", rates=aud(), method="LIFO")
    assert [line.piece.parcel_id for line in fifo.lines] == ["b2:BTC"]
    assert [line.piece.parcel_id for line in lifo.lines] == ["b1:BTC"]
    assert fifo.lines[0].discounted and lifo.lines[0].discounted


def test_the_parcels_held_carry_into_the_next_year(tmp_path: Path) -> None:
    """The parcels-held file of one year, given as the next year's holdings, gives the
    same report as replaying every trade."""
    rates = _usdt_rates("2024-03-01", "2024-08-01", rate="1.52")
    trades = [
        trade("b1", "2023-09-01", "BUY", "3", "3000"),
        trade("u", "2024-03-01", "SELL", "1", "700", quote="USDT", fee="0.7", fee_currency="USDT"),
        trade("b2", "2024-08-01", "BUY", "0.5", "600", quote="USDT"),
        trade("s1", "2024-11-01", "SELL", "2.5", "10000"),
    ]
    first = build_report(trades[:2], year="2023-24", rates=rates)
    files = write_reports(first, tmp_path / "2023-24")
    carried = build_report(
        trades[2:], year="2024-25", rates=rates, holdings=read_holdings(files["held"], SYDNEY)
    )
    whole = build_report(trades, year="2024-25", rates=rates)
    assert disposal_rows(carried) == disposal_rows(whole)
    assert carried.summary == whole.summary


def test_the_csv_files_round_to_the_cent_half_away_from_zero(tmp_path: Path) -> None:
    trades = [
        trade("b", "2024-07-02", "BUY", "3", "100.01"),
        trade("s", "2024-08-01", "SELL", "1", "10.005"),
    ]
    report = build_report(trades, year="2024-25", rates=aud())
    files = write_reports(report, tmp_path / "out")
    with files["disposals"].open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    # cost 33.3366..., proceeds 10.005 -> 10.01 (half up), loss -23.3316... -> -23.33
    assert (row["cost_base"], row["proceeds"], row["gain_loss"]) == ("33.34", "10.01", "-23.33")
    assert (row["asset"], row["acquired"], row["disposed"], row["quantity"]) == (
        "BTC",
        "2024-07-02",
        "2024-08-01",
        "1",
    )
    assert (row["discount_eligible"], row["method"], row["parcel_id"]) == ("no", "fifo", "b:BTC")
    summary = {k: v for k, _label, v in summary_items(report)}
    assert summary["capital_losses"] == "23.33" and summary["net_capital_gain"] == "0.00"
    assert summary["discount_rate"] == "50%" and summary["loss_carried_forward"] == "23.33"
    assert set(files) == {"disposals", "summary", "derivatives", "held"}
    assert all(path.exists() for path in files.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"year": "2024"}, "a financial year is written like 2024-25"),
        ({"year": "2024-26"}, "a financial year is written like 2024-25"),
        ({"method": "average"}, "method must be one of fifo, lifo, hifo, specific"),
        ({"entity": "partnership"}, "entity must be one of individual, trust, super, company"),
        ({"carried_loss": D(-1)}, "carried-forward capital loss must be an amount >= 0"),
        ({"rates": RateTable("USD")}, "Australia reports in AUD: the rates convert into USD"),
        ({"jurisdiction_code": "NZ"}, "no tax rules for 'NZ': known jurisdictions are AU"),
    ],
)
def test_bad_report_options_are_named(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"year": "2024-25", "rates": aud(), **options}
    with pytest.raises(ValueError, match=message):
        build_report([], **arguments)


def test_year_labels() -> None:
    from sapphire.compliance.tax import Australia

    au = Australia()
    assert au.tax_year("2024-2025") == au.tax_year(" FY2024-25 ") == au.year_of(date(2025, 6, 30))
    assert au.tax_year("1999-00").end == date(2000, 6, 30)
    assert au.year_of(date(2024, 7, 1)).label == "2024-25" and date(2024, 7, 1) in au.tax_year(
        "2024-25"
    )


def test_derivative_fills_before_the_year_only_build_the_position() -> None:
    def fill(n: int, day: str, side: str, qty: str, px: str) -> DerivativeFill:
        return DerivativeFill(f"d{n}", at(day), "BTC-PERP@X", "USDT", side, D(qty), D(px))

    fills = [
        fill(1, "2024-06-01", "BUY", "1", "100"),
        fill(2, "2024-07-02", "BUY", "1", "200"),
        fill(3, "2024-08-01", "SELL", "2", "180"),
        fill(4, "2025-08-01", "SELL", "1", "1"),
    ]
    rates = _usdt_rates("2024-07-02", "2024-08-01", rate="1")
    report = build_report([], year="2024-25", rates=rates, derivatives=fills)
    assert [r.trade_id for r in report.derivatives.rows] == ["d2", "d3"]
    assert report.derivatives.rows[1].realized == D(60)  # (180 - 150) * 2
