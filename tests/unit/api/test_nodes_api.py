"""The nodes routes and `NodeManager` without a running node: scopes, strict validation
(every bad value a 422 naming it, before any process starts), mainnet's confirmation and
second factor, the command line a node is started with and the environment it gets
(never the service's signing secret), a start that fails (502 with the node's error),
unknown nodes (404) and commands to a node that is not running (409)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from sapphire.api.nodes import NodeConflict, NodeManager, NodeSpec
from sapphire.api.routes import nodes as node_routes
from sapphire.api.security.deps import TOTP_HEADER, Principal
from sapphire.engine.stream import LocalStream
from sapphire.store import Store

PRINCIPALS = {
    "viewer": Principal(1, "vic", "viewer", frozenset({"read"}), "token"),
    "trader": Principal(2, "tom", "trader", frozenset({"read", "trade"}), "token"),
    "trader-key": Principal(2, "tom", "trader", frozenset({"read", "trade"}), "api_key", 9),
}


class FakeAuth:
    def principal_from_bearer(self, credential: str) -> Principal:
        if credential not in PRINCIPALS:
            raise HTTPException(401, detail="invalid token")
        return PRINCIPALS[credential]

    def check_second_factor(self, user_id: int, code: str) -> None:
        if code != "123456":
            raise HTTPException(403, detail="the TOTP code is wrong")


def bearer(name: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}", **extra}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'service.db'}")


@pytest.fixture
def manager(tmp_path: Path, sapphire_home: Path, store: Store) -> NodeManager:
    return NodeManager(store, sapphire_home, LocalStream(sapphire_home / "events"))


def make_app() -> FastAPI:
    """The nodes router under /api/v1, validation errors as one `detail` string naming
    the field (as the service's app gives them)."""
    app = FastAPI()
    app.include_router(node_routes.router, prefix="/api/v1")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": detail}, status_code=422)

    return app


@pytest.fixture
def client(manager: NodeManager, store: Store, sapphire_home: Path) -> TestClient:
    app = make_app()
    app.state.service = SimpleNamespace(
        auth=FakeAuth(), store=store, home=sapphire_home, events=manager.events, nodes=manager
    )
    return TestClient(app)


PAPER = {"mode": "paper", "strategy": "sma_cross", "params": {"fast": 5, "slow": 20},
         "options": {"speed": "max", "start": "2022-01-03", "end": "2022-01-03 02:00"}}  # fmt: skip


def test_reading_needs_read_and_acting_needs_trade(client: TestClient) -> None:
    assert client.get("/api/v1/nodes").status_code == 401
    assert client.get("/api/v1/nodes", headers=bearer("forged")).status_code == 401
    answer = client.get("/api/v1/nodes", headers=bearer("viewer"))
    assert answer.status_code == 200 and answer.json() == {"nodes": []}
    refused = client.post("/api/v1/nodes", json=PAPER, headers=bearer("viewer"))
    assert refused.status_code == 403 and "'trade' scope" in refused.json()["detail"]
    for path in ("stop", "pause", "resume", "kill"):
        assert client.post(f"/api/v1/nodes/x/{path}", headers=bearer("viewer")).status_code == 403
    assert client.delete("/api/v1/nodes/x/orders/o1", headers=bearer("viewer")).status_code == 403


def with_options(**options: Any) -> dict[str, Any]:
    return {**PAPER, "options": {**PAPER["options"], **options}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**PAPER, "strategy": "nope"}, "strategy 'nope' is unknown: expected one of"),
        ({**PAPER, "strategy": "evil.py:Strategy"}, "strategy"),
        ({**PAPER, "params": {"fast": "x"}}, "SmaCross.fast: 'x' is not a valid int"),
        ({**PAPER, "params": {"bogus": 1}}, "strategy 'sma_cross' has no parameter 'bogus'"),
        ({**PAPER, "params": {"fast": 50, "slow": 20}}, "fast (50) must be < slow (20)"),
        (with_options(data="/etc/passwd"), "data='/etc/passwd' is invalid: expected 'sample'"),
        (with_options(data="../secrets"), "data='../secrets' is invalid"),
        (with_options(speed="fast"), "options.speed"),
        (with_options(start="the day before"), "start='the day before' is invalid"),
        (with_options(cash=-5), "options.cash"),
        (with_options(stop_loss=1.5), "options.stop_loss"),
        (with_options(risk_profile="/tmp/mine.yaml"), "options.risk_profile"),
        (with_options(env="testnet"), "option 'env' is not a paper option here"),
        (with_options(size_mode="risk"),  # the node's own check: it exits with code 2
         "while starting: error: size_mode='risk' sizes from the stop-loss distance, and "
         "strategy 'sma_cross' gives no stop-loss"),
        ({**PAPER, "strategy": "rebalance", "params": {},
          "options": {"data": "A=sample,B=/etc/passwd", "weights": "A=0.5,B=0.4"}},
         "data='/etc/passwd' is invalid: expected 'sample' or a catalog symbol"),
        ({**PAPER, "strategy": "rebalance", "params": {"fast": 5},
          "options": {"data": "A=sample,B=sample", "weights": "A=0.5,B=0.4"}},
         "strategy 'rebalance' takes no params"),
        ({**PAPER, "strategy": "rebalance", "params": {}, "options": {"data": "A=sample,B=sample"}},
         "strategy rebalance needs --weights or --allocation"),
        ({**PAPER, "strategy": "rebalance", "params": {},
          "options": {"data": "A=sample,B=sample", "weights": "A=0.8,B=0.4"}},
         "weights"),
        (with_options(weights="A=1"), "weights/allocation are the rebalance strategy's"),
        ({**PAPER, "run_id": "../../etc"}, "run_id"),
        ({**PAPER, "mode": "backtest"}, "mode"),
        ({**PAPER, "surprise": True}, "surprise"),
        ({"mode": "live", "strategy": "sma_cross", "options": {"speed": "max"}},
         "option 'speed' is not a live option here"),
        ({"mode": "live", "strategy": "sma_cross", "options": {"env": "local"}},
         "url=None is invalid: expected a URL with --env local"),
        ({"mode": "live", "strategy": "sma_cross",
          "options": {"env": "local", "url": "http://attacker.example:80"}},
         "url='http://attacker.example:80' is invalid: the local exchange must be on this"),
        ({"mode": "live", "strategy": "sma_cross", "options": {"symbol": "btc usdt"}},
         "options.symbol"),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_422_naming_the_value(
    client: TestClient, manager: NodeManager, body: dict[str, Any], message: str
) -> None:
    answer = client.post("/api/v1/nodes", json=body, headers=bearer("trader"))
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]
    if "while starting" not in message:
        assert list(manager.dir.iterdir()) == []  # nothing was started


def test_mainnet_needs_the_second_factor_then_the_confirmation(client: TestClient) -> None:
    body = {"mode": "live", "strategy": "sma_cross", "options": {"env": "mainnet"}}
    answer = client.post("/api/v1/nodes", json=body, headers=bearer("trader"))
    assert answer.status_code == 403 and "second factor" in answer.json()["detail"]
    wrong = client.post("/api/v1/nodes", json=body, headers=bearer("trader", **{TOTP_HEADER: "1"}))
    assert wrong.status_code == 403 and wrong.json()["detail"] == "the TOTP code is wrong"
    key = client.post("/api/v1/nodes", json=body, headers=bearer("trader-key"))
    assert key.status_code == 403 and "not an API key" in key.json()["detail"]
    ok_2fa = bearer("trader", **{TOTP_HEADER: "123456"})
    answer = client.post("/api/v1/nodes", json=body, headers=ok_2fa)
    assert answer.status_code == 422
    assert (
        "env='mainnet' trades real money: confirm_mainnet must be true" in answer.json()["detail"]
    )
    # on paper (the exchange's data only), mainnet needs neither
    paper = {**body, "options": {"env": "mainnet", "paper": True, "speed": "max"}}
    answer = client.post("/api/v1/nodes", json=paper, headers=bearer("trader"))
    assert "option 'speed' is not a live option" in answer.json()["detail"]


def test_the_command_line_is_the_clis_own(manager: NodeManager) -> None:
    run_id, argv = manager.check(
        NodeSpec("paper", "sma_cross", {"fast": 5, "short": True},
                 {"speed": "max", "size": 0.01, "stop_loss": None}, run_id="p-1")
    )  # fmt: skip
    assert run_id == "p-1"
    assert argv[:6] == [sys.executable, "-m", "sapphire", "paper", "--strategy", "sma_cross"]
    assert argv[6:10] == ["--param", "fast=5", "--param", "short=true"]
    assert argv[10:] == [
        "--run-id",
        "p-1",
        "--json",
        "--no-live",
        "--size",
        "0.01",
        "--speed",
        "max",
    ]
    _, live = manager.check(
        NodeSpec("live", "sma_cross", {}, {"env": "mainnet", "paper": False, "warmup": 50},
                 confirm_mainnet=True)
    )  # fmt: skip
    assert live[3] == "live" and "--confirm-mainnet" in live
    assert live[-5:] == ["--env", "mainnet", "--no-paper", "--warmup", "50"]
    generated, _ = manager.check(NodeSpec("paper", "sma_cross"))
    assert generated.startswith("paper-")
    _, portfolio = manager.check(
        NodeSpec("paper", "rebalance", {}, {"data": "A=sample,B=sample", "weights": "A=0.5,B=0.4",
                 "rebalance_every": "1D", "rebalance_drift": 0.02}, run_id="p-2")
    )  # fmt: skip
    _, live_portfolio = manager.check(
        NodeSpec("live", "rebalance", {}, {"env": "testnet", "symbols": "BTC/USDT:USDT,"
                 "ETH/USDT:USDT", "weights": "BTC/USDT:USDT=0.5,ETH/USDT:USDT=0.3"})
    )  # fmt: skip
    assert live_portfolio[3:6] == ["live", "--strategy", "rebalance"]
    assert live_portfolio[-6:] == [
        "--env", "testnet", "--symbols", "BTC/USDT:USDT,ETH/USDT:USDT", "--weights",
        "BTC/USDT:USDT=0.5,ETH/USDT:USDT=0.3",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="symbol='eth usdt' is invalid"):
        manager.check(
            NodeSpec("live", "rebalance", {}, {"symbols": "BTC/USDT:USDT,eth usdt",
                     "weights": "BTC/USDT:USDT=0.5"})
        )  # fmt: skip
    with pytest.raises(ValueError, match="weights"):
        manager.check(
            NodeSpec("live", "rebalance", {}, {"symbols": "BTC/USDT:USDT,ETH/USDT:USDT",
                     "weights": "BTC/USDT:USDT=0.9,ETH/USDT:USDT=0.3"})
        )  # fmt: skip
    assert portfolio[4:6] == ["--strategy", "rebalance"]
    assert portfolio[-8:] == [
        "--data", "A=sample,B=sample", "--rebalance-drift", "0.02", "--rebalance-every", "1D",
        "--weights", "A=0.5,B=0.4",
    ]  # fmt: skip


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the node's Python: it runs `body` (shell)."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_node_that_fails_to_start_is_a_502_with_its_error_and_its_environment_is_clean(
    tmp_path: Path, store: Store, sapphire_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_API_SECRET", "s" * 40)
    monkeypatch.setenv("SAPPHIRE_REDIS_URL", "redis://elsewhere:6379")
    dump = tmp_path / "env.json"
    python = fake_python(
        tmp_path,
        f'{sys.executable} -c \'import json, os; json.dump(dict(os.environ), open("{dump}", "w"))\''
        "\necho 'Traceback: the venue could not start' >&2\nexit 1",
    )
    manager = NodeManager(
        store, sapphire_home, LocalStream(sapphire_home / "events"), python=python
    )
    app = make_app()
    app.state.service = SimpleNamespace(auth=FakeAuth(), nodes=manager)
    answer = TestClient(app).post(
        "/api/v1/nodes", json={**PAPER, "run_id": "doomed"}, headers=bearer("trader")
    )
    assert answer.status_code == 502
    assert answer.json()["detail"] == (
        "node doomed exited with code 1 while starting: Traceback: the venue could not start"
    )
    env = json.loads(dump.read_text())
    assert "SAPPHIRE_API_SECRET" not in env  # the node never gets the service's secret
    assert "SAPPHIRE_REDIS_URL" not in env  # the service's stream is local files
    assert env["SAPPHIRE_HOME"] == str(sapphire_home)
    assert env["SAPPHIRE_DATABASE_URL"] == store.url
    info = manager.info("doomed")
    assert info.status == "exited"
    assert info.log_tail == "Traceback: the venue could not start"
    assert [n.run_id for n in manager.list_nodes(everything=True)] == ["doomed"]
    assert manager.list_nodes() == []
    with pytest.raises(NodeConflict, match="run 'doomed' already exists"):
        manager.check(NodeSpec("paper", "sma_cross", run_id="doomed"))


def test_a_node_that_does_not_start_in_time_is_reported_as_starting(
    tmp_path: Path, store: Store, sapphire_home: Path
) -> None:
    python = fake_python(tmp_path, "exec sleep 30  # sapphire")
    manager = NodeManager(
        store, sapphire_home, LocalStream(sapphire_home / "events"), python=python,
        start_timeout=0.5,
    )  # fmt: skip
    info = manager.start(NodeSpec("paper", "sma_cross", run_id="slowpoke"))
    try:
        assert info.status == "starting" and info.pid is not None
        assert os.getpgid(info.pid) == info.pid  # its own process group and session
        assert [n.run_id for n in manager.list_nodes()] == ["slowpoke"]
    finally:
        os.kill(info.pid, 9)
        deadline = time.monotonic() + 5
        while manager.info("slowpoke").status != "exited" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert manager.info("slowpoke").status == "exited"


def test_unknown_nodes_are_404_and_a_stopped_one_takes_no_commands(
    client: TestClient, store: Store, sapphire_home: Path
) -> None:
    for method, path in (
        ("get", "/api/v1/nodes/ghost"), ("get", "/api/v1/nodes/ghost/orders"),
        ("post", "/api/v1/nodes/ghost/stop"), ("post", "/api/v1/nodes/ghost/kill"),
        ("delete", "/api/v1/nodes/ghost/orders/o1"),
    ):  # fmt: skip
        answer = client.request(method, path, headers=bearer("trader"))
        assert answer.status_code == 404 and answer.json()["detail"] == "no node 'ghost'"
    store.start_run("bt-1", "BACKTEST", time.time_ns(), ["s"], {})
    answer = client.get("/api/v1/nodes/bt-1", headers=bearer("viewer"))
    assert answer.status_code == 404 and "is a backtest run, not a node" in answer.json()["detail"]
    run_dir = sapphire_home / "paper" / "p-stopped"
    config = {"strategy": "sma_cross", "data": "sample", "run_dir": str(run_dir)}
    store.start_run("p-stopped", "PAPER", time.time_ns(), ["s"], config)
    run_dir.mkdir(parents=True)
    (run_dir / "node.pid").write_text(json.dumps({"pid": 999_999_999}))  # long gone
    node = client.get("/api/v1/nodes/p-stopped", headers=bearer("viewer")).json()
    assert node["status"] == "stopped" and node["pid"] is None
    assert node["strategy"] == "sma_cross" and node["trading_state"] == "ACTIVE"
    for path in ("pause", "resume", "kill", "stop"):
        answer = client.post(f"/api/v1/nodes/p-stopped/{path}", headers=bearer("trader"))
        assert answer.status_code == 409
        assert answer.json()["detail"] == "node 'p-stopped' is not running (it is stopped)"
    all_nodes = client.get("/api/v1/nodes?all=true", headers=bearer("viewer")).json()["nodes"]
    assert [n["run_id"] for n in all_nodes] == ["p-stopped"]
    assert client.get("/api/v1/nodes/p-stopped/orders", headers=bearer("viewer")).json() == {
        "orders": []
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give a new price or quantity"),
        ({"price": "-1"}, "body.price"),
        ({"price": "1e5"}, "body.price"),
        ({"quantity": "0"}, "quantity='0' is invalid: expected a number > 0"),
        ({"price": "1", "side": "BUY"}, "body.side"),
    ],
)
def test_amend_bodies_are_checked(client: TestClient, body: dict[str, Any], message: str) -> None:
    answer = client.patch("/api/v1/nodes/x/orders/o-1", json=body, headers=bearer("trader"))
    assert answer.status_code == 422 and message in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"quantity": "1"}, "body.side"),
        ({"side": "HOLD", "quantity": "1"}, "body.side"),
        ({"side": "BUY", "quantity": "-1"}, "body.quantity"),
        ({"side": "BUY", "quantity": "0"}, "quantity='0' is invalid: expected a number > 0"),
        ({"side": "BUY", "quantity": 1}, "body.quantity"),
        ({"side": "BUY", "type": "STOP", "quantity": "1"}, "body.type"),
        ({"side": "BUY", "type": "LIMIT", "quantity": "1"}, "a LIMIT order needs a price"),
        ({"side": "BUY", "quantity": "1", "price": "5"}, "a MARKET order takes no price"),
        ({"side": "BUY", "quantity": "1", "leverage": 5}, "body.leverage"),
    ],
)
def test_order_bodies_are_checked(client: TestClient, body: dict[str, Any], message: str) -> None:
    answer = client.post("/api/v1/nodes/x/orders", json=body, headers=bearer("trader"))
    assert answer.status_code == 422 and message in answer.json()["detail"]


def test_an_order_to_a_node_that_is_not_running_is_a_conflict(client: TestClient) -> None:
    answer = client.post(
        "/api/v1/nodes/nope/orders", json={"side": "BUY", "quantity": "1"},
        headers=bearer("trader"),
    )  # fmt: skip
    assert answer.status_code in (404, 409), answer.text
    viewer = client.post(
        "/api/v1/nodes/nope/orders", json={"side": "BUY", "quantity": "1"},
        headers=bearer("viewer"),
    )  # fmt: skip
    assert viewer.status_code == 403


def test_kill_takes_only_flatten(client: TestClient) -> None:
    answer = client.post(
        "/api/v1/nodes/x/kill", json={"flatten": "maybe"}, headers=bearer("trader")
    )
    assert answer.status_code == 422
    answer = client.post("/api/v1/nodes/x/kill", json={"flat": True}, headers=bearer("trader"))
    assert answer.status_code == 422
