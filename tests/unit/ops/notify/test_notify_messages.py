"""Messages from a node's stream events, and the daily summary."""

from __future__ import annotations

from datetime import date

import pytest

from sapphire.ops.notify.messages import DailySummary, Message, event_message

FILL = {
    "type": "fill", "run_id": "r1", "event_id": "e1", "ts_ns": 1, "client_order_id": "O-1",
    "trade_id": "T-1", "instrument_id": "BTCUSDT.BYBIT", "side": "BUY", "last_qty": "0.01",
    "last_px": "41000", "fee": "0.205", "fee_currency": "USDT", "liquidity": "TAKER",
}  # fmt: skip


def test_a_fill_is_a_trade_message() -> None:
    m = event_message("r1", FILL)
    assert m is not None and m.kind == "trade"
    assert m.title == "[r1] Fill: BUY 0.01 BTCUSDT.BYBIT @ 41000"
    assert "fee 0.205 USDT" in m.text and m.key == "fill:r1:T-1"


def test_risk_events_and_state_changes_are_risk_messages() -> None:
    kill = event_message("r1", {"type": "risk", "kind": "kill_switch", "reason": "operator"})
    assert kill is not None and kill.kind == "risk" and kill.severity == "critical"
    dd = event_message("r1", {"type": "risk", "kind": "drawdown", "reason": "dd 9% near 10%"})
    assert dd is not None and dd.severity == "warning"
    state = event_message(
        "r1", {"type": "trading_state", "state": "HALTED", "previous": "ACTIVE", "reason": "x"}
    )
    assert state is not None and state.title == "[r1] Trading state ACTIVE -> HALTED"
    assert state.severity == "critical"


def test_rejections_errors_and_drift() -> None:
    rej = event_message(
        "r1", {"type": "order", "event": "OrderRejected", "reason": "insufficient margin",
               "side": "BUY", "quantity": "1", "instrument_id": "X"},
    )  # fmt: skip
    assert rej is not None and rej.kind == "error" and rej.text == "insufficient margin"
    err = event_message("r1", {"type": "status", "status": "failed", "error": "venue gone"})
    assert err is not None and err.kind == "error" and err.text == "venue gone"
    drift = event_message(
        "r1", {"type": "drift", "kind": "feature", "feature": "rsi", "band": "significant",
               "message": "rsi: window mean z +7.0"},
    )  # fmt: skip
    assert drift is not None and drift.kind == "drift" and drift.key == "drift:r1:rsi"


def test_routine_events_make_no_message() -> None:
    for event in (
        {"type": "status", "status": "running"},
        {"type": "equity", "equity": "10000"},
        {"type": "order", "event": "OrderAccepted"},
        {"type": "ack", "ok": True},
    ):
        assert event_message("r1", event) is None


def test_a_bad_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity 'loud'"):
        Message("trade", "t", "x", key="k", severity="loud")


def test_daily_summary_adds_up_a_day_per_node() -> None:
    s = DailySummary()
    s.add("r1", {"type": "equity", "equity": "10000", "currency": "USDT"})
    s.add("r1", FILL)
    s.add("r1", {**FILL, "side": "SELL", "last_px": "42000", "trade_id": "T-2"})
    s.add("r1", {"type": "equity", "equity": "10009.59", "currency": "USDT"})
    s.add("r2", {"type": "risk", "kind": "drawdown"})
    s.add("r2", {"type": "order", "event": "OrderDenied"})
    m = s.take(date(2024, 3, 1))
    assert m is not None and m.kind == "summary" and m.title == "Daily summary 2024-03-01"
    r1, r2 = m.text.splitlines()
    assert r1 == ("r1: 2 fills, volume 830, fees 0.41 USDT, equity 10009.59 USDT (+9.59)")
    assert r2 == "r2: 0 fills, volume 0, 1 risk events, 1 rejections"
    assert s.take(date(2024, 3, 2)) is None  # a new day starts empty
