"""A paper node through the service, end to end, on the local event files and on the
real Redis: started by POST /nodes as its own process, its fills seen on the WebSocket,
an open order amended and cancelled, an operator's order placed, entries paused
(an entry refused), the kill switch tripped; then the
service restarts (a new app, a new NodeManager) and finds the node still running, and
stops it. Redis: SAPPHIRE_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), skipped
when unreachable except in CI (CI=true), where that fails."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from websockets.sync.client import ClientConnection, connect

from sapphire.api import ws
from sapphire.api.nodes import NodeManager
from sapphire.api.routes import nodes as node_routes
from sapphire.api.security.deps import Principal
from sapphire.engine.stream import EventStream, RedisStream, open_stream
from sapphire.store import Store

REDIS_URL = os.environ.get("SAPPHIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TRADER = Principal(2, "tom", "trader", frozenset({"read", "trade"}), "token")
HEADERS = {"Authorization": "Bearer trader-token"}


class FakeAuth:
    def principal_from_bearer(self, credential: str) -> Principal:
        if credential != "trader-token":
            raise HTTPException(401, detail="invalid token")
        return TRADER


class Service:
    """The nodes routes and the streams of one service process, served by uvicorn."""

    def __init__(self, store: Store, home: Path, events: EventStream) -> None:
        self.nodes = NodeManager(store, home, events, start_timeout=90)
        app = FastAPI()
        app.include_router(node_routes.router, prefix="/api/v1")
        app.include_router(ws.router, prefix="/api/v1")
        app.state.service = SimpleNamespace(
            auth=FakeAuth(), store=store, home=home, events=events, nodes=self.nodes
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=120)
        self.ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"

    def close(self) -> None:
        self.http.close()
        self.nodes.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(params=["local", "redis"])
def events(request: pytest.FixtureRequest, sapphire_home: Path) -> Iterator[EventStream]:
    if request.param == "local":
        stream = open_stream(None, sapphire_home)
    else:
        stream = open_stream(REDIS_URL, sapphire_home)
        assert isinstance(stream, RedisStream)
        try:
            stream.client.ping()
        except Exception as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis at {REDIS_URL} is unreachable in CI: {exc}")
            pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    yield stream
    stream.close()


def next_event(conn: ClientConnection, kind: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(conn.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] == "event" and message["event"]["type"] == kind:
            event: dict[str, Any] = message["event"]
            return event


def open_limit_order(service: Service, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """A take-profit leg the node placed (an open LIMIT order)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = service.http.get(f"/api/v1/nodes/{run_id}/orders")
        assert answer.status_code == 200, answer.text
        orders = answer.json()["orders"]
        limits = [o for o in orders if o["type"] == "LIMIT"]
        if limits:
            return limits[0]
        time.sleep(0.1)
    raise AssertionError("no open limit order")


def act_on_a_leg(service: Service, run_id: str, action: str) -> dict[str, Any]:
    """Amend or cancel an open take-profit leg; a leg may close between reading it and
    acting on it (the node refuses with 'is not open'): then the next one."""
    for _ in range(20):
        order = open_limit_order(service, run_id)
        path = f"/api/v1/nodes/{run_id}/orders/{order['client_order_id']}"
        if action == "amend":
            price = str(float(order["price"]) + 5.0)
            answer = service.http.patch(path, json={"price": price})
        else:
            answer = service.http.delete(path)
        if answer.status_code == 200:
            ack: dict[str, Any] = answer.json()
            return ack
        assert answer.status_code == 409 and "is not open" in answer.json()["detail"], answer.text
    raise AssertionError(f"could not {action} a leg")


def ended(pid: int) -> bool:
    """The process has exited (here it is our child, so a zombie until reaped: a
    restarted service is another process, whose nodes init reaps)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return True
    if state == "Z":
        os.waitpid(pid, 0)
        return True
    return False


def test_a_paper_node_through_the_service(
    sapphire_home: Path, events: EventStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "120")  # no stray venue outlives a failure
    store = Store(f"sqlite:///{sapphire_home / 'sapphire.db'}")
    service = Service(store, sapphire_home, events)
    run_id = f"api-paper-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    body = {
        "mode": "paper", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
        "run_id": run_id,
        "options": {"start": "2022-01-03", "end": "2022-01-04", "speed": "150x",
                    "size": 0.01, "size_mode": "fixed", "take_profit": 0.03,
                    "stop_loss": 0.03, "tick_size": 0.5, "lot_size": 0.001},
    }  # fmt: skip
    pid = None
    try:
        started = service.http.post("/api/v1/nodes", json=body)
        assert started.status_code == 201, started.text
        node = started.json()
        pid = node["pid"]
        assert node["status"] == "running" and node["mode"] == "paper" and pid != os.getpid()
        with connect(service.ws_url, open_timeout=5) as conn:
            conn.send(json.dumps({"type": "auth", "token": "trader-token"}))
            assert json.loads(conn.recv(timeout=5))["type"] == "authenticated"
            conn.send(json.dumps({"type": "subscribe", "channels": [
                f"node.{run_id}.fills", f"node.{run_id}.status"]}))  # fmt: skip
            assert json.loads(conn.recv(timeout=5))["type"] == "subscribed"
            fill = next_event(conn, "fill")  # the node's fills, live
            assert fill["run_id"] == run_id and float(fill["last_qty"]) == 0.01
            amended = act_on_a_leg(service, run_id, "amend")
            assert amended["ok"] and amended["command"] == "amend_order"
            cancelled = act_on_a_leg(service, run_id, "cancel")
            assert cancelled["ok"] and cancelled["command"] == "cancel_order"
            # an operator's order, through the node's risk engine
            orders = f"/api/v1/nodes/{run_id}/orders"
            placed = service.http.post(orders, json={"side": "BUY", "quantity": "0.01"})
            assert placed.status_code == 200, placed.text
            assert placed.json()["command"] == "submit_order"
            assert placed.json()["detail"]["client_order_id"]
            paused = service.http.post(f"/api/v1/nodes/{run_id}/pause").json()
            assert paused["trading_state"] == "REDUCING"
            entry = service.http.post(orders, json={"side": "BUY", "quantity": "0.01"})
            assert entry.status_code == 409 and "REDUCING" in entry.json()["detail"]
            status = next_event(conn, "status")
            while status["operator_state"] != "REDUCING":  # those before the pause first
                status = next_event(conn, "status")
            assert status["trading_state"] == "REDUCING" and status["status"] == "running"
            killed = service.http.post(f"/api/v1/nodes/{run_id}/kill", json={"flatten": True})
            assert killed.status_code == 200 and killed.json()["trading_state"] == "HALTED"
            refused = service.http.post(f"/api/v1/nodes/{run_id}/resume")
            assert refused.status_code == 409 and "kill switch" in refused.json()["detail"]
        info = service.http.get(f"/api/v1/nodes/{run_id}").json()
        assert info["status"] == "running" and info["operator_state"] == "HALTED"
        assert info["fills"] >= 1
    finally:
        service.close()

    # the service restarts: a new app finds the node, still trading in its own process
    again = Service(Store(store.url), sapphire_home, events)
    try:
        listed = again.http.get("/api/v1/nodes").json()["nodes"]
        assert [(n["run_id"], n["status"], n["pid"]) for n in listed] == [(run_id, "running", pid)]
        stopped = again.http.post(f"/api/v1/nodes/{run_id}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert ended(pid)
        assert again.http.get("/api/v1/nodes").json() == {"nodes": []}
        everything = again.http.get("/api/v1/nodes", params={"all": "true"}).json()["nodes"]
        assert [(n["run_id"], n["status"]) for n in everything] == [(run_id, "stopped")]
        log = (sapphire_home / "nodes" / f"{run_id}.log").read_text()
        assert '"status": "stopped"' in log  # the CLI's own --json summary at its end
    finally:
        again.close()
        if isinstance(events, RedisStream):
            events.client.delete(
                events.PREFIX + f"node.{run_id}", events.PREFIX + f"node.{run_id}.control"
            )
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, 9)


def test_a_rebalancing_paper_portfolio_through_the_service(
    sapphire_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`strategy: rebalance` with its options starts a paper node holding target weights
    over several instruments; it trades both and reports each position."""
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "120")
    events = open_stream(None, sapphire_home)
    store = Store(f"sqlite:///{sapphire_home / 'sapphire.db'}")
    service = Service(store, sapphire_home, events)
    run_id = f"api-rebalance-{os.getpid()}"
    body = {
        "mode": "paper", "strategy": "rebalance", "run_id": run_id,
        "options": {"data": "A=sample,B=sample", "weights": "A=0.3,B=0.2",
                    "rebalance_every": "60", "start": "2022-01-03", "end": "2022-01-03 06:00",
                    "speed": "max", "lot_size": 0.001, "tick_size": 0.5},
    }  # fmt: skip
    try:
        started = service.http.post("/api/v1/nodes", json=body)
        assert started.status_code == 201, started.text
        deadline = time.monotonic() + 60
        info = service.http.get(f"/api/v1/nodes/{run_id}").json()
        while info["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            info = service.http.get(f"/api/v1/nodes/{run_id}").json()
        assert info["status"] in ("finished", "stopped"), info
        held = {str(p.instrument_id) for p in store.positions(run_id) if p.quantity != 0}
        assert len(held) == 2, held  # both instruments bought to their weights
    finally:
        service.close()
