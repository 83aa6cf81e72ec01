"""Node metrics: what a node's bus and market data put in the registry, read back as a
scraper would (`generate_latest`), on a node of the engine tests and a paper session."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sapphire.domain import (
    Bar,
    ContractType,
    Instrument,
    InstrumentId,
    OrderFilled,
    OrderStatus,
)
from sapphire.engine import EventStrategy, TradingNode
from sapphire.ops.metrics import NodeMetrics, new_registry, reason_label, start_metrics_server
from sapphire.ops.metrics_venue import VenueMetrics
from sapphire.risk import RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
MIN = 60_000_000_000
CLOSES = [100, 101, 102, 103, 104, 103, 101, 99, 98, 99, 101, 103, 104, 102, 100, 98.0]


class Flipper(EventStrategy):
    """Buys `qty` when flat, sells it back on the next bar."""

    def __init__(self, qty: str = "1") -> None:
        super().__init__("flip")
        self.qty = Decimal(qty)

    def on_bar(self, bar: Bar) -> None:
        pos = self.position(BTC)
        if pos == 0:
            self.submit_order(self.market(BTC, "BUY", self.qty))
        else:
            self.submit_order(self.market(BTC, "SELL", pos, reduce_only=True))


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, by name and labels."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = samples(registry).get((name, frozenset(labels.items())))
    assert found is not None, f"no sample {name}{labels}"
    return found


def node_with(risk: RiskEngine | None = None) -> TradingNode:
    instrument = Instrument(
        BTC, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"),
    )  # fmt: skip
    return TradingNode(SimulatedVenue([instrument], cash=100_000), run_id="t", risk=risk)


def feed(node: TradingNode, closes: list[float]) -> None:
    node.start()
    prev = closes[0]
    for i, c in enumerate(closes):
        bar = Bar(
            instrument_id=BTC, ts_ns=i * MIN, open=prev, high=max(prev, c) + 0.5,
            low=min(prev, c) - 0.5, close=c, volume=1.0,
        )  # fmt: skip
        node.process_bar(bar, MIN, index=i)
        prev = c


def test_reason_label_keeps_one_value_per_kind_of_refusal() -> None:
    a = reason_label("notional 5000.5 exceeds max_notional_per_order 50: order (x) refused")
    b = reason_label("notional 77 exceeds max_notional_per_order 50")
    assert a == b == "notional N exceeds max_notional_per_order N"
    assert reason_label("") == "unknown"
    assert len(reason_label("x" * 500)) == 80


def test_a_trading_node_counts_orders_fills_fees_and_values_its_book() -> None:
    node = node_with()
    strategy = Flipper()
    node.add_strategy(strategy, bars=[BTC])
    registry = CollectorRegistry()
    NodeMetrics(node, "t", registry=registry, refresh_s=0).attach()
    feed(node, CLOSES)
    fills = [e for o in node.orders.values() for e in o.events if isinstance(e, OrderFilled)]
    assert fills
    assert value(registry, "sapphire_fills_total", run_id="t", strategy="flip",
                 instrument=str(BTC)) == len(fills)  # fmt: skip
    filled = sum(o.status is OrderStatus.FILLED for o in node.orders.values())
    assert value(registry, "sapphire_orders_total", run_id="t", strategy="flip",
                 status="FILLED") == filled  # fmt: skip
    fees = sum(float(f.fee) for f in fills)
    assert value(registry, "sapphire_fees_total", run_id="t", currency="USDT") == pytest.approx(
        fees
    )
    marks = node._marks()
    equity = float(node.portfolio.equity(marks))
    assert value(registry, "sapphire_equity", run_id="t", currency="USDT") == pytest.approx(equity)
    qty = float(node.portfolio.net_quantity(BTC))
    assert value(registry, "sapphire_position_quantity", run_id="t", strategy="flip",
                 instrument=str(BTC)) == qty  # fmt: skip
    assert value(registry, "sapphire_market_data_total", run_id="t", instrument=str(BTC),
                 kind="bar") == len(CLOSES)  # fmt: skip
    # every order was submitted while the node handled a bar: each one timed
    submitted = len(node.orders)
    assert value(registry, "sapphire_tick_to_order_seconds_count", run_id="t") == submitted
    assert value(registry, "sapphire_trading_state", run_id="t") == 0


def test_risk_denials_are_counted_by_their_main_reason() -> None:
    node = node_with(RiskEngine(RiskConfig(max_notional_per_order=Decimal(50))))
    node.add_strategy(Flipper(), bars=[BTC])
    registry = CollectorRegistry()
    NodeMetrics(node, "t", registry=registry).attach()
    feed(node, CLOSES[:4])
    reasons = {
        dict(labels)["reason"]: v
        for (name, labels), v in samples(registry).items()
        if name == "sapphire_order_refusals_total" and dict(labels)["source"] == "denied"
    }
    assert reasons.pop("none") == 0
    assert list(reasons.values()) == [4]
    assert all("N" in r and "." not in r for r in reasons)
    assert value(registry, "sapphire_risk_events_total", run_id="t", kind="pre_trade") == 4


def test_one_node_per_registry_and_bad_arguments_are_named() -> None:
    node = node_with()
    registry = CollectorRegistry()
    NodeMetrics(node, "t", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        NodeMetrics(node, "u", registry=registry)
    with pytest.raises(ValueError, match="run_id=''"):
        NodeMetrics(node, "", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="metrics port 70000"):
        start_metrics_server(70000)
    with pytest.raises(ValueError, match="nothing to time"):
        VenueMetrics(object(), "x", registry=CollectorRegistry()).attach()


def test_a_paper_session_serves_its_metrics_over_http(tmp_path: Path, monkeypatch: Any) -> None:
    import httpx

    from sapphire.paper import PaperConfig, PaperSession
    from sapphire.store import Store

    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    config = PaperConfig(
        start="2022-01-03", end="2022-01-03 03:00", speed="max", size=0.01,
        size_mode="fixed", params={"fast": "5", "slow": "20"}, risk_profile="conservative",
    )  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    session = PaperSession.start(config, store=store, home=tmp_path)
    registry = new_registry()
    NodeMetrics(session.node, session.run_id, registry=registry).attach()
    VenueMetrics(session.venue, "paper", registry=registry).attach()
    server = start_metrics_server(0, registry=registry)
    try:
        view = session.run()
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics").text
    finally:
        server.shutdown()
    run = session.run_id
    assert view.status == "finished"
    labels = f'instrument="{session.iid}",run_id="{run}",strategy="s"'
    assert f"sapphire_fills_total{{{labels}}} {float(view.fills)}" in text
    assert value(registry, "sapphire_market_data_total", run_id=run, instrument=str(session.iid),
                 kind="bar") == view.bars  # fmt: skip
    assert value(registry, "sapphire_exchange_requests_total", venue="paper",
                 endpoint="poll") > 0  # fmt: skip
    assert value(registry, "sapphire_websocket_reconnects_total", venue="paper") == 0
    assert value(registry, "sapphire_drawdown_ratio", run_id=run) >= 0
    usage = value(registry, "sapphire_risk_limit_usage_ratio", run_id=run, limit="drawdown")
    assert 0 <= usage < 1
    assert value(registry, "sapphire_kill_switch_tripped", run_id=run) == 0
    assert "process_resident_memory_bytes" in text
