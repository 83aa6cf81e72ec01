"""`sapphire tax report` end to end: docs/tax.md's worked example (its input files, its
command, the outputs it shows and its Python example), a Bybit export with opening
holdings, a run in the store, and bad input named with exit code 2.

The commands go through `tax_app` (what `sapphire tax` runs)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from sapphire.cli.tax import tax_app
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

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "tax.md"
DATA = ROOT / "tests" / "data" / "tax"
runner = CliRunner()


def _tax(*args: str | Path) -> Result:
    return runner.invoke(tax_app, [str(a) for a in args])


def _err(result: Result) -> str:
    """stderr with Rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def test_the_worked_example_in_the_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    inputs = re.findall(r"```csv (?!output)(\S+)\n(.*?)```", text, re.S)
    outputs = re.findall(r"```csv output (\S+)\n(.*?)```", text, re.S)
    assert {name for name, _ in inputs} == {"trades.csv", "rates.csv"} and len(outputs) == 3
    for name, body in inputs:
        (tmp_path / name).write_text(body, encoding="utf-8")
    (command,) = [
        line
        for line in re.findall(r"```bash\n(.*?)```", text, re.S)
        if "--trades trades.csv" in line
    ]
    words = shlex.split(command)
    assert words[:2] == ["sapphire", "tax"]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(tax_app, words[2:])
    assert result.exit_code == 0, result.output
    assert "4257.25" in result.stdout and "tax-report-2024-25.html" in result.stdout
    for name, body in outputs:
        assert (tmp_path / name).read_text(encoding="utf-8") == body, name
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "build_report" in b]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "docs/tax.md", "exec"), {})
    shown = re.search(r"\)\)  # (\S+)", example)
    assert shown is not None and printed.getvalue().strip() == shown[1]


def test_a_bybit_export_with_opening_holdings(tmp_path: Path) -> None:
    result = _tax(
        "report", "--trades", DATA / "bybit-spot-orderhistory.csv", "--holdings",
        DATA / "holdings.csv", "--rates", DATA / "rates.csv", "--year", "2024-25",
        "--out", tmp_path / "out", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    # 6,000 USDT (cost 8,940 of the opening 14,900 for 10,000) swapped for BTC worth
    # 8,991 after the 0.0001 BTC fee: +51; 0.05 BTC (cost 4,500) for 3,246.75 USDT at
    # 1.48 on 16 September in Sydney: +305.19
    assert view["summary"]["total_capital_gains"] == "356.19"
    assert view["summary"]["net_capital_gain"] == "356.19"
    assert view["summary"]["discountable_gains"] == "0.00"
    html = Path(view["files"]["html"]).read_text(encoding="utf-8")
    assert '<table id="disposals">' in html and "2200000000000000002:BTC" in html
    assert "Not tax advice" in html and "Parcels held on 2025-06-30 (3)" in html


RUN = "taxrun"
S1 = StrategyId("s1")
BTC = InstrumentId("BTCUSDT", "BYBIT")


def _run_with_fills() -> None:
    """A run that bought 0.1 BTC for 6,000 USDT and sold it for 6,500 USDT."""
    with Store() as store:
        store.start_run(RUN, "paper", 1, strategy_ids=[S1])
        store.save_instrument(
            Instrument(
                BTC, "BTC", "USDT", "USDT", ContractType.SPOT, Decimal("0.01"),
                Decimal("0.0001"), maker_fee=Decimal("0.001"), taker_fee=Decimal("0.001"),
            )
        )  # fmt: skip
        for n, (side, px, ts) in enumerate(
            [("BUY", "60000", 1_722_475_800), ("SELL", "65000", 1_726_441_800)], start=1
        ):
            ts_ns = ts * 1_000_000_000
            coid = ClientOrderId(f"{RUN}-s1-{n}")
            order = Order.market(coid, S1, BTC, OrderSide(side), Decimal("0.1"), ts_init=ts_ns)
            store.record_order_event(order, order.init_event, run_id=RUN)
            for event in (
                OrderSubmitted(ts_ns=ts_ns, client_order_id=coid),
                OrderAccepted(ts_ns=ts_ns, client_order_id=coid, venue_order_id=VenueOrderId(coid)),
                OrderFilled(
                    ts_ns=ts_ns, client_order_id=coid, trade_id=TradeId(f"T{n}"),
                    last_qty=Decimal("0.1"), last_px=Decimal(px), liquidity=LiquiditySide.TAKER,
                    fee=Decimal("0"), fee_currency="USDT",
                ),
            ):  # fmt: skip
                order.apply(event)
                store.record_order_event(order, event, run_id=RUN)


def test_a_run_in_the_store(tmp_path: Path) -> None:
    """The fills on 1 August (1.5 AUD a USDT) and 16 September 2024 (1.48), by run id."""
    _run_with_fills()
    common = ["report", "--run", RUN, "--rates", DATA / "rates.csv", "--year", "2024-25"]
    refused = _tax(*common, "--out", tmp_path / "a")
    assert refused.exit_code == 2
    assert "disposes of 6000 USDT on 2024-08-01 but only 0 USDT is held" in _err(refused)
    as_money = _tax(*common, "--cash", "usdt", "--out", tmp_path / "b", "--json")
    assert as_money.exit_code == 0, as_money.output
    # bought for 9,000 AUD, sold for 6,500 x 1.48 = 9,620: +620
    assert json.loads(as_money.stdout)["summary"]["net_capital_gain"] == "620.00"
    held = _tax(*common, "--holdings", DATA / "holdings.csv", "--out", tmp_path / "c", "--json")
    assert held.exit_code == 0, held.output
    # the USDT disposal (8,940 -> 9,000: +60) and the BTC one (9,000 -> 9,620: +620)
    assert json.loads(held.stdout)["summary"]["total_capital_gains"] == "680.00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the trades: --run RUN_ID"),
        (["--run", "nope"], "no run 'nope'"),
        (["--trades", DATA / "bybit-spot-orderhistory.csv"], "only 0 USDT is held in parcels"),
        (
            [
                "--trades",
                DATA / "bybit-spot-orderhistory.csv",
                "--cash",
                "USDT",
                "--year",
                "2025-26",
            ],
            "",
        ),
        (["--trades", DATA / "rates.csv"], "rates.csv: not a trade file"),
        (
            ["--trades", DATA / "bybit-spot-orderhistory.csv", "--carried-loss", "lots"],
            "--carried-loss must be an amount",
        ),
        (
            ["--trades", DATA / "bybit-spot-orderhistory.csv", "--method", "avg"],
            "method must be one of",
        ),
        (
            ["--trades", DATA / "bybit-spot-orderhistory.csv", "--jurisdiction", "NZ"],
            "no tax rules for 'NZ'",
        ),
    ],
)
def test_bad_input_exits_2_naming_it(tmp_path: Path, args: list[str | Path], message: str) -> None:
    year = [] if "--year" in args else ["--year", "2024-25"]
    result = _tax("report", "--rates", DATA / "rates.csv", "--out", tmp_path, *year, *args)
    if not message:  # a year with no disposals is a report of zeros, not an error
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert message in _err(result)


def test_a_missing_rate_day_is_named(tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,rate\n2024-08-01,USDT,1.5\n", encoding="utf-8")
    result = _tax(
        "report", "--trades", DATA / "bybit-spot-orderhistory.csv", "--cash", "USDT",
        "--rates", rates, "--year", "2024-25", "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no USDT to AUD rate for 2024-09-16 in rates.csv" in _err(result)


def test_trades_in_aud_need_no_rates_file_and_others_say_so(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "time,base,quote,side,quantity,price,id\n"
        "2024-08-01T00:00:00Z,BTC,AUD,BUY,1,90000,a\n"
        "2024-09-01T00:00:00Z,BTC,AUD,SELL,1,95000,b\n",
        encoding="utf-8",
    )
    done = _tax("report", "--trades", trades, "--year", "2024-25", "--out", tmp_path, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["summary"]["net_capital_gain"] == "5000.00"
    usdt = _tax(
        "report", "--trades", DATA / "bybit-spot-orderhistory.csv", "--cash", "USDT",
        "--year", "2024-25", "--out", tmp_path,
    )  # fmt: skip
    assert usdt.exit_code == 2
    assert "no USDT to AUD rate for 2024-08-01 in the rates (no --rates file given)" in _err(usdt)


def test_specific_identification_from_a_file(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "time,base,quote,side,quantity,price,id\n"
        "2023-01-02T00:00:00Z,BTC,AUD,BUY,1,20000,old\n"
        "2024-08-01T00:00:00Z,BTC,AUD,BUY,1,90000,new\n"
        "2024-09-01T00:00:00Z,BTC,AUD,SELL,1.5,95000,sell\n",
        encoding="utf-8",
    )
    chosen = tmp_path / "identify.csv"
    chosen.write_text(
        "disposal_id,parcel_id,quantity\nsell:BTC,new:BTC,1\nsell:BTC,old:BTC,0.5\n",
        encoding="utf-8",
    )
    args = ["report", "--trades", trades, "--year", "2024-25", "--method", "specific"]
    done = _tax(*args, "--identify", chosen, "--out", tmp_path / "out", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)["summary"]
    # new: 95,000 - 90,000 = 5,000 (not discountable); half of old: 47,500 - 10,000 = 37,500
    assert (summary["total_capital_gains"], summary["discountable_gains"]) == (
        "42500.00",
        "37500.00",
    )
    assert summary["net_capital_gain"] == "23750.00" and summary["method"] == "specific"
    missing = _tax(*args, "--out", tmp_path / "out2")
    assert missing.exit_code == 2 and "needs the file naming the parcels" in _err(missing)
