"""`sapphire surveil` end to end: a store with a spoofing run and a clean run, checked as
a table, as JSON and as an HTML report; thresholds from a YAML file; errors named."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sapphire.cli.surveil import surveil_app
from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.store import Store

runner = CliRunner()
# the command as `sapphire` registers it (cli/main.py: app.add_typer(surveil_app, "surveil"))
app = typer.Typer()
app.add_typer(surveil_app, name="surveil")
T0 = 1_641_204_000 * 1_000_000_000  # 2022-01-03 10:00 UTC
S = 1_000_000_000
IID = InstrumentId("BTC-PERP", "SIM")


def _order(store: Store, run: str, cid: str, side: OrderSide, qty: str, price: str | None,
           t: int) -> Order:  # fmt: skip
    """An order of `run` placed and accepted at T0 + t s (market if `price` is None)."""
    ts = T0 + t * S
    order = (
        Order.market(ClientOrderId(cid), StrategyId("s1"), IID, side, Decimal(qty), ts_init=ts)
        if price is None
        else Order.limit(
            ClientOrderId(cid), StrategyId("s1"), IID, side, Decimal(qty), Decimal(price),
            ts_init=ts,
        )
    )  # fmt: skip
    for event in (
        OrderSubmitted(ts_ns=ts, client_order_id=order.client_order_id),
        OrderAccepted(ts_ns=ts, client_order_id=order.client_order_id,
                      venue_order_id=VenueOrderId(cid)),
    ):  # fmt: skip
        order.apply(event)
    store.record_order_event(order, order.events[-1], run_id=run)
    return order


def _fill(store: Store, run: str, order: Order, t: int, price: str) -> None:
    fill = OrderFilled(
        ts_ns=T0 + t * S, client_order_id=order.client_order_id, trade_id=TradeId(f"T-{t}"),
        last_qty=order.quantity, last_px=Decimal(price), liquidity=LiquiditySide.TAKER,
        fee=Decimal(0), fee_currency="USD",
    )  # fmt: skip
    order.apply(fill)
    store.record_fill(order, fill, run_id=run)


def _cancel(store: Store, run: str, order: Order, t: int) -> None:
    for event in (
        OrderCancelRequested(ts_ns=T0 + t * S, client_order_id=order.client_order_id),
        OrderCanceled(ts_ns=T0 + t * S, client_order_id=order.client_order_id),
    ):
        order.apply(event)
    store.record_order_event(order, order.events[-1], run_id=run)


@pytest.fixture
def store() -> Store:
    """The default store (`$SAPPHIRE_HOME/sapphire.db`): run `spoof` rests a large bid,
    sells a little and cancels the bid; run `clean` just trades."""
    with Store() as s:
        s.start_run("spoof", "paper", T0, strategy_ids=["s1"])
        bid = _order(s, "spoof", "spoof-bid", OrderSide.BUY, "10", "99.95", 0)
        _fill(s, "spoof", _order(s, "spoof", "spoof-sell", OrderSide.SELL, "2", None, 5), 5, "100")
        _cancel(s, "spoof", bid, 8)
        s.start_run("clean", "paper", T0, strategy_ids=["s1"])
        for k in range(4):
            side = OrderSide.BUY if k % 2 == 0 else OrderSide.SELL
            order = _order(s, "clean", f"clean-{k}", side, "1", None, 60 * k)
            _fill(s, "clean", order, 60 * k, "100")
        yield s


def test_a_clean_run_says_no_alerts_and_exits_0(store: Store) -> None:
    result = runner.invoke(app, ["surveil", "--run", "clean"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no alerts: 4 orders in 1 run(s) checked"


def test_alerts_are_a_table_json_and_a_report_and_exit_1(store: Store, tmp_path: Path) -> None:
    table = runner.invoke(app, ["surveil"], env={"COLUMNS": "220"})
    assert table.exit_code == 1, table.output
    assert "1 alert(s) in 6 orders of 2 run(s)" in table.stdout
    assert "SPOOFING" in table.stdout and "HIGH" in table.stdout and "spoof-bid" in table.stdout

    out = tmp_path / "surveil.html"
    shown = runner.invoke(app, ["surveil", "--run", "spoof", "--json", "--out", str(out)])
    assert shown.exit_code == 1, shown.output
    data = json.loads(shown.stdout)
    assert (data["runs"], data["orders"], data["report"]) == (["spoof"], 2, str(out))
    (alert,) = data["alerts"]
    assert alert["rule"] == "SPOOFING" and alert["client_order_ids"] == ["spoof-bid", "spoof-sell"]
    assert alert["time"] == "2022-01-03T10:00:08.000Z" and alert["figures"]["size_ratio"] == 5.0
    html = out.read_text(encoding="utf-8")
    assert 'id="alert-1-orders"' in html and "spoof-sell" in html and "99.95" in html
    assert "rested 8.0 s 5.0 bps from the touch" in html
    assert "spoofing.size_ratio" in html  # the thresholds used


def test_thresholds_come_from_a_yaml_file_and_bad_ones_are_named(
    store: Store, tmp_path: Path
) -> None:
    config = tmp_path / "surveil.yaml"
    config.write_text("spoofing:\n  size_ratio: 6\n")
    result = runner.invoke(app, ["surveil", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no alerts: 6 orders in 2 run(s) checked" in result.stdout

    config.write_text("spoofing:\n  size_ratio: 0\n")
    bad = runner.invoke(app, ["surveil", "--config", str(config)])
    assert bad.exit_code == 2
    assert "spoofing.size_ratio=0 is invalid: expected a number >= 1" in bad.stderr
    unknown = runner.invoke(app, ["surveil", "--run", "nope"])
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.stderr


def test_an_empty_store_has_no_alerts() -> None:
    result = runner.invoke(app, ["surveil", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"runs": [], "orders": 0, "alerts": [], "report": None}
