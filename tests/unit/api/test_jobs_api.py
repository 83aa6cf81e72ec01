"""Research jobs through the jobs routes, each in a real worker process: a backtest (its
metrics and sandboxed HTML report), an optimisation study and its resumption, a
walk-forward, a download from the local exchange; progress on the `jobs` channel; the
concurrency limit and the queue; cancelling (the worker is terminated); a restarted
service adopting the jobs; and strict validation (a 422 naming the bad value)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from sapphire.api.jobs import JobManager
from sapphire.api.routes import jobs as job_routes
from sapphire.api.security.deps import Principal
from sapphire.engine.stream import JOBS, START, LocalStream
from sapphire.store import Store

PRINCIPALS = {
    "viewer": Principal(1, "vic", "viewer", frozenset({"read"}), "token"),
    "trader": Principal(2, "tom", "trader", frozenset({"read", "trade"}), "token"),
}
TRADER = {"Authorization": "Bearer trader"}
VIEWER = {"Authorization": "Bearer viewer"}
WEEK = {"start": "2022-01-03", "end": "2022-01-05"}


class FakeAuth:
    def principal_from_bearer(self, credential: str) -> Principal:
        if credential not in PRINCIPALS:
            raise HTTPException(401, detail="invalid token")
        return PRINCIPALS[credential]


def make_app(manager: JobManager) -> FastAPI:
    app = FastAPI()
    app.include_router(job_routes.router, prefix="/api/v1")
    app.state.service = SimpleNamespace(auth=FakeAuth(), jobs=manager, events=manager.events)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"detail": detail}, status_code=422)

    return app


@pytest.fixture
def store(sapphire_home: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    url = f"sqlite:///{sapphire_home / 'sapphire.db'}"
    monkeypatch.setenv("SAPPHIRE_DATABASE_URL", url)  # the studies the checks look up
    return Store(url)


@pytest.fixture
def events(sapphire_home: Path) -> LocalStream:
    return LocalStream(sapphire_home / "events")


@pytest.fixture
def manager(store: Store, sapphire_home: Path, events: LocalStream) -> Iterator[JobManager]:
    m = JobManager(store, sapphire_home, events, max_workers=2, monitor_s=0.2)
    yield m
    m.close()
    for job in m.list_jobs():
        if job.status == "running":
            m.cancel(job.id)


@pytest.fixture
def client(manager: JobManager) -> TestClient:
    return TestClient(make_app(manager))


def wait_for(client: TestClient, job_id: str, states: tuple[str, ...], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=VIEWER).json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_scopes(client: TestClient) -> None:
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers=VIEWER).json() == {"jobs": []}
    body = {"strategy": "sma_cross"}
    answer = client.post("/api/v1/jobs/backtest", json=body, headers=VIEWER)
    assert answer.status_code == 403
    fake = "backtest-20240101-120000-abcdef"
    assert client.delete(f"/api/v1/jobs/{fake}", headers=VIEWER).status_code == 403
    assert client.get(f"/api/v1/jobs/{fake}", headers=VIEWER).status_code == 404
    assert client.get("/api/v1/jobs/../etc", headers=VIEWER).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("backtest", {"strategy": "nope"}, "strategy 'nope' is unknown"),
        ("backtest", {"strategy": "x.py:Evil"}, "body.strategy"),
        ("backtest", {"strategy": "sma_cross", "data": "/etc/passwd"},
         "data='/etc/passwd' is invalid: expected 'sample' or a catalog symbol"),
        ("backtest", {"strategy": "sma_cross", "params": {"fast": "x"}},
         "SmaCross.fast: 'x' is not a valid int"),
        ("backtest", {"strategy": "sma_cross", "options": {"funding": "/etc/x"}},
         "body.options.funding"),
        ("backtest", {"strategy": "sma_cross", "options": {"start": "soon"}},
         "start='soon' is invalid"),
        ("backtest", {"strategy": "sma_cross", "options": {"fill_at": "close", "engine": "event"}},
         "fill_at='close' is a vectorised-backtest option"),
        ("optimize", {"strategy": "sma_cross", "trials": 0}, "body.trials"),
        ("optimize", {"strategy": "sma_cross", "objectives": ["sharpness"]}, "sharpness"),
        ("optimize", {"strategy": "sma_cross", "sampler": "magic"}, "body.sampler"),
        ("optimize", {"strategy": "sma_cross", "space": {"fast": {"low": 9, "high": 3}}},
         "low 9.0 is above high 3.0"),
        ("optimize", {"strategy": "sma_cross", "space": {"nope": {"low": 1, "high": 3}}},
         "nope"),
        ("optimize", {"resume": "no-such-study"}, "study 'no-such-study' does not exist"),
        ("optimize", {"resume": "s1", "strategy": "sma_cross"},
         "resuming a study takes only trials, not 'strategy'"),
        ("optimize", {}, "give a strategy (a new study) or resume (a stored one)"),
        ("walkforward", {"strategy": "sma_cross", "train": "banana"}, "body.train"),
        ("download", {"exchange": "nope", "symbol": "BTC/USDT", "start": "2024-01-01"},
         "exchange='nope' is not a ccxt exchange"),
        ("download", {"exchange": "bybit", "symbol": "BTC/USDT", "start": "2024-01-01",
                      "url": "http://169.254.169.254:80"},
         "url='http://169.254.169.254:80' is invalid"),
        ("download", {"exchange": "bybit", "symbol": "BTC/USDT", "start": "later"},
         "start='later' is invalid"),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_422_naming_the_value(
    client: TestClient, manager: JobManager, path: str, body: dict[str, Any], message: str
) -> None:
    answer = client.post(f"/api/v1/jobs/{path}", json=body, headers=TRADER)
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]
    assert list(manager.dir.iterdir()) == []  # nothing queued


def test_a_backtest_job_gives_its_metrics_and_a_sandboxed_report(
    client: TestClient, events: LocalStream
) -> None:
    body = {"strategy": "sma_cross", "params": {"fast": 5, "slow": 20}, "options": WEEK}
    answer = client.post("/api/v1/jobs/backtest", json=body, headers=TRADER)
    assert answer.status_code == 202
    job = answer.json()
    assert job["status"] in ("queued", "running") and job["kind"] == "backtest"
    assert job["request"]["params"] == {"fast": "5", "slow": "20"}
    pending = client.get(f"/api/v1/jobs/{job['id']}/result", headers=VIEWER)
    assert pending.status_code in (200, 409)
    done = wait_for(client, job["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"done": 3, "total": 3, "unit": "stages"}
    assert done["has_result"] and done["has_report"]
    result = client.get(f"/api/v1/jobs/{job['id']}/result", headers=VIEWER).json()
    assert result["kind"] == "backtest" and result["result"]["strategy"] == "sma_cross"
    assert result["result"]["metrics"]["n_trades"] > 0
    report = client.get(f"/api/v1/jobs/{job['id']}/report", headers=VIEWER)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.headers["content-security-policy"] == "sandbox allow-scripts allow-popups"
    assert "<html" in report.text.lower()
    states = [
        e.event["status"] for e in events.read({JOBS: START}) if e.event["job_id"] == job["id"]
    ]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    again = client.delete(f"/api/v1/jobs/{job['id']}", headers=TRADER)
    assert again.status_code == 409 and again.json()["detail"].endswith("is already succeeded")


def test_a_study_its_resumption_and_a_walk_forward(client: TestClient) -> None:
    space = {"fast": {"low": 3, "high": 10}, "slow": {"choices": [20, 30]}}
    body = {"strategy": "sma_cross", "trials": 6, "seed": 7, "space": space, "options": WEEK,
            "study": "api-study", "objectives": ["sharpe", "max_drawdown"],
            "sampler": "nsga2"}  # fmt: skip
    job = client.post("/api/v1/jobs/optimize", json=body, headers=TRADER).json()
    wf_body = {"strategy": "sma_cross", "trials": 3, "seed": 1, "train": "1d", "test": "12h",
               "options": {"start": "2022-01-03", "end": "2022-01-06"}, "space": space}  # fmt: skip
    wf = client.post("/api/v1/jobs/walkforward", json=wf_body, headers=TRADER).json()
    done = wait_for(client, job["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    result = client.get(f"/api/v1/jobs/{job['id']}/result", headers=VIEWER).json()["result"]
    assert result["study"] == "api-study" and result["n_trials"] == 6
    assert {"dsr", "pbo", "best_params"} <= set(result)
    assert client.get(f"/api/v1/jobs/{job['id']}/report", headers=VIEWER).status_code == 200
    more = client.post("/api/v1/jobs/optimize", json={"resume": "api-study", "trials": 9},
                       headers=TRADER).json()  # fmt: skip
    assert more["request"] == {"resume": "api-study", "trials": 9}
    resumed = wait_for(client, more["id"], ("succeeded", "failed"))
    assert resumed["status"] == "succeeded", resumed
    again = client.get(f"/api/v1/jobs/{more['id']}/result", headers=VIEWER).json()["result"]
    assert again["study"] == "api-study" and again["n_trials"] == 9
    wf_done = wait_for(client, wf["id"], ("succeeded", "failed"))
    assert wf_done["status"] == "succeeded", wf_done
    folds = client.get(f"/api/v1/jobs/{wf['id']}/result", headers=VIEWER).json()["result"]
    assert len(folds["folds"]) >= 2 and folds["study"] == f"job-{wf['id']}"
    assert client.get(f"/api/v1/jobs/{wf['id']}/report", headers=VIEWER).status_code == 200
    listed = [j["id"] for j in client.get("/api/v1/jobs", headers=VIEWER).json()["jobs"]]
    assert listed == [more["id"], wf["id"], job["id"]]  # newest first


def test_the_concurrency_limit_queues_and_a_cancel_terminates_the_worker(
    store: Store, sapphire_home: Path, events: LocalStream
) -> None:
    manager = JobManager(store, sapphire_home, events, max_workers=1, monitor_s=0.2)
    client = TestClient(make_app(manager))
    try:
        long_body = {"strategy": "sma_cross", "trials": 5000, "sampler": "random",
                     "options": {"start": "2022-01-03", "end": "2022-01-20"}}  # fmt: skip
        long = client.post("/api/v1/jobs/optimize", json=long_body, headers=TRADER).json()
        short = client.post(
            "/api/v1/jobs/backtest", json={"strategy": "sma_cross", "options": WEEK,
                                           "report": False}, headers=TRADER,
        ).json()  # fmt: skip
        running = wait_for(client, long["id"], ("running",))
        assert (
            client.get(f"/api/v1/jobs/{short['id']}", headers=VIEWER).json()["status"] == "queued"
        )
        deadline = time.monotonic() + 60
        while not running["progress"].get("done") and time.monotonic() < deadline:
            time.sleep(0.2)  # trials are being stored: the worker is well into the study
            running = client.get(f"/api/v1/jobs/{long['id']}", headers=VIEWER).json()
        assert running["progress"]["unit"] == "trials" and running["progress"]["total"] == 5000
        pid = manager._status(manager.dir / long["id"])["pid"]
        cancelled = client.delete(f"/api/v1/jobs/{long['id']}", headers=TRADER).json()
        assert cancelled["status"] == "cancelled" and cancelled["finished"] is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the worker is gone (its process group was terminated)
        answer = client.get(f"/api/v1/jobs/{long['id']}/result", headers=VIEWER)
        assert answer.status_code == 409 and "it is cancelled" in answer.json()["detail"]
        done = wait_for(client, short["id"], ("succeeded", "failed"))  # it ran next
        assert done["status"] == "succeeded" and not done["has_report"]
        queued = client.post("/api/v1/jobs/backtest", json={"strategy": "sma_cross"},
                             headers=TRADER).json()  # fmt: skip
        gone = client.delete(f"/api/v1/jobs/{queued['id']}", headers=TRADER).json()
        assert gone["status"] == "cancelled"
    finally:
        manager.close()


def test_a_restarted_service_adopts_the_jobs(
    store: Store, sapphire_home: Path, events: LocalStream
) -> None:
    first = JobManager(store, sapphire_home, events, max_workers=1, monitor_s=60)
    first.close()  # it schedules at submit only: the job below stays queued
    blocker = first.submit("backtest", {"strategy": "sma_cross", "options": WEEK})
    queued = first.submit("backtest", {"strategy": "sma_cross", "options": WEEK, "report": False})
    assert first.get(queued.id).status == "queued"
    # the first worker dies with no result (as if the machine rebooted under it)
    pid = first.get(blocker.id).pid
    assert pid is not None
    os.killpg(pid, 9)
    while first._children[blocker.id].poll() is None:
        time.sleep(0.02)
    second = JobManager(store, sapphire_home, events, max_workers=1, monitor_s=0.2)
    try:
        client = TestClient(make_app(second))
        dead = client.get(f"/api/v1/jobs/{blocker.id}", headers=VIEWER).json()
        assert dead["status"] == "failed" and "without a result" in dead["error"]
        done = wait_for(client, queued.id, ("succeeded", "failed"))
        assert done["status"] == "succeeded"
    finally:
        second.close()


def test_a_download_job_fills_the_catalog_from_the_local_exchange(
    client: TestClient, events: LocalStream
) -> None:
    from sapphire.data import Catalog, load_ohlcv
    from sapphire.venues.exchange import BackgroundServer, ExchangeState, create_app

    bars, _report = load_ohlcv("sample")
    state = ExchangeState(bars.iloc[:1201], history=1200)
    server = BackgroundServer(create_app(state)).start()
    try:
        start = bars["timestamp"].iloc[0]
        body = {"exchange": "bybit", "symbol": "BTC/USDT:USDT", "timeframe": "1m",
                "start": start.isoformat(), "end": (start + pd.Timedelta(minutes=1200)).isoformat(),
                "url": server.url}  # fmt: skip
        job = client.post("/api/v1/jobs/download", json=body, headers=TRADER).json()
        done = wait_for(client, job["id"], ("succeeded", "failed"))
    finally:
        server.stop()
    assert done["status"] == "succeeded", done
    result = client.get(f"/api/v1/jobs/{job['id']}/result", headers=VIEWER).json()["result"]
    assert (result["added"], result["rows"]) == (1200, 1200)
    assert len(Catalog().load("BTC/USDT:USDT", venue="bybit", timeframe="1m")) == 1200
    progress = [e.event for e in events.read({JOBS: START}) if e.event["job_id"] == job["id"]]
    assert any(str(p.get("message", "")).startswith("bars: ") for p in progress)
    assert client.get(f"/api/v1/jobs/{job['id']}/report", headers=VIEWER).status_code == 404


def test_job_records_are_plain_files(client: TestClient, manager: JobManager) -> None:
    job = client.post(
        "/api/v1/jobs/backtest", json={"strategy": "sma_cross", "options": WEEK,
                                       "report": False}, headers=TRADER,
    ).json()  # fmt: skip
    wait_for(client, job["id"], ("succeeded", "failed"))
    folder = manager.dir / job["id"]
    assert {p.name for p in folder.iterdir()} >= {"job.json", "status.json", "result.json",
                                                   "worker.log"}  # fmt: skip
    assert json.loads((folder / "job.json").read_text())["kind"] == "backtest"
    assert folder.stat().st_mode & 0o777 == 0o700
    deadline = time.monotonic() + 5
    while manager._monitor is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager._monitor is None  # nothing queued or running: no thread watching
