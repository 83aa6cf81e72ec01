"""A node process's probes beside its metrics: /health while its loop turns, /ready
when its market data is fresh and its venue answers, each failed check named."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sapphire.ops.metrics import serve_node_metrics
from sapphire.ops.node_health import MIN_STALE_S, NodeHealth, bar_interval_s
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

CFG = PaperConfig(
    start="2022-01-03", end="2022-01-03 03:00", speed="max", size=0.01, size_mode="fixed",
    params={"fast": "5", "slow": "20"},
)  # fmt: skip


def get(server: Any, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.server_port}{path}", timeout=5)


def test_a_paper_node_serves_health_ready_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    session = PaperSession.start(CFG, store=store, home=tmp_path)
    server = serve_node_metrics(session, "paper", 0)
    try:
        ready = get(server, "/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["market_data"]["detail"] == "no market data yet"
        for _ in range(5):
            session.pump(advance=True)
        ready = get(server, "/ready").json()
        assert ready["status"] == "ready" and ready["run_id"] == session.run_id
        assert ready["trading_state"] == "ACTIVE"
        assert ready["checks"]["market_data"]["detail"].startswith("last market data ")
        assert ready["checks"]["venue"] == {
            "ok": True, "detail": f"the paper venue's process {session.client.pid} runs",
        }  # fmt: skip
        assert get(server, "/health").json()["status"] == "ok"
        assert "sapphire_market_data_total" in get(server, "/metrics").text
        # a live venue whose circuit breaker is open: not ready, and why
        session.venue.guard = SimpleNamespace(breaker=SimpleNamespace(is_open=True))  # type: ignore[attr-defined]
        answer = get(server, "/ready")
        assert answer.status_code == 503
        assert answer.json()["checks"]["venue"]["detail"] == (
            "the exchange's circuit breaker is open (it does not answer)"
        )
        del session.venue.guard  # type: ignore[attr-defined]
        # the paper venue's process gone
        pid = session.client.pid
        session.shutdown_venue()
        deadline = time.monotonic() + 10
        answer = get(server, "/ready")
        while answer.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = get(server, "/ready")
        assert answer.status_code == 503
        assert answer.json()["checks"]["venue"]["detail"] == (
            f"the paper venue's process {pid} is gone"
        )
        session.status = "stopped"
        assert get(server, "/health").status_code == 503
    finally:
        server.shutdown()
        session.close_events()


def test_stale_market_data_and_a_stuck_loop_are_named() -> None:
    now = [1000.0]
    session = SimpleNamespace(status="running", _status_at=1000.0, run_id="r")
    health = NodeHealth(session, lambda: 1000.0, clock=lambda: now[0])
    assert health.stale_after_s == MIN_STALE_S  # no bar interval known: a minute
    now[0] = session._status_at = 1000.0 + MIN_STALE_S + 1
    code, body = health.ready()
    assert code == 503 and body["status"] == "not ready"
    assert body["checks"]["market_data"] == {
        "ok": False, "detail": "last market data 61.0 s ago (stale after 60 s)",
    }  # fmt: skip
    assert body["checks"]["loop"] == {"ok": True, "detail": "turned 0.0 s ago"}
    now[0] += 91
    code, body = health.health()
    assert code == 503 and body["checks"]["loop"]["detail"] == "the loop has not turned for 91 s"


def test_stale_after_follows_the_bar_pace() -> None:
    live = SimpleNamespace(source=SimpleNamespace(timeframe_ns=3_600 * 10**9))
    assert bar_interval_s(live) == 3600.0
    assert NodeHealth(live, lambda: None).stale_after_s == 3 * 3600.0  # three hourly bars
    paper = SimpleNamespace(bars=SimpleNamespace(timeframe_ns=60 * 10**9), speed="60x")
    assert bar_interval_s(paper) == 1.0
    assert NodeHealth(paper, lambda: None).stale_after_s == MIN_STALE_S
    lockstep = SimpleNamespace(bars=SimpleNamespace(timeframe_ns=60 * 10**9), speed="max")
    assert bar_interval_s(lockstep) is None
