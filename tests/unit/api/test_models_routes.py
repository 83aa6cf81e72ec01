"""The model registry routes against a real registry (models trained by the pipeline and
registered) and the drift files a real `DriftWatch` wrote for a run of the `ml` strategy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sapphire.api.routes.models import router
from sapphire.api.security.deps import Principal, authenticated
from sapphire.backtest.runner import bars_from_frame
from sapphire.ml.labels import LabelSpec
from sapphire.ml.live import DriftWatch, read_drift
from sapphire.ml.models import ModelSpec
from sapphire.ml.pipeline import TrainConfig, train
from sapphire.ml.registry import ModelRegistry
from sapphire.ml.strategy import MLStrategy
from sapphire.paper.session import paper_dir
from sapphire.store import Store, default_url

if TYPE_CHECKING:
    from conftest import Api  # the service harness (tests/unit/api/conftest.py)

CONFIG = TrainConfig(
    model=ModelSpec.parse("lightgbm:n_estimators=10,num_leaves=7"), n_groups=3,
    n_test_groups=1, importance=False,
    label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
)  # fmt: skip


def _walk(n: int, shift_at: int | None, seed: int, start: str) -> pd.DataFrame:
    """1-minute bars of a random walk; from `shift_at` on, moves 8 times larger."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.0008, n)
    spread = np.abs(rng.normal(0.0, 0.0004, n))
    if shift_at is not None:
        r[shift_at:] *= 8.0
        spread[shift_at:] *= 8.0
    close = 40_000.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([close[0]], close[:-1]))
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=n, freq="1min", tz="UTC"), "open": open_,
        "high": np.maximum(open_, close) * (1 + spread),
        "low": np.minimum(open_, close) * (1 - spread), "close": close,
        "volume": rng.uniform(1, 10, n),
    })  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`syn` and `beta` v1 and v2 (candidate), `alpha` v1 in the registry; `ml-run` traded syn@1
    through a regime shift (drift checked every 100 bars), `ml-quiet` has no check yet,
    `other` trades another strategy."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAPPHIRE_HOME", str(home))
        result = train(bars_from_frame(_walk(1500, None, 1, "2022-03-01")), CONFIG)
        result.register("syn")
        result.register("syn")
        result.register("alpha")
        result.register("beta")
        result.register("beta")  # promoted and rolled back by one test only
        store = Store()
        bars = bars_from_frame(_walk(1000, 400, 2, "2022-03-02 01:00"))
        strategy = MLStrategy(model="syn@1")
        strategy.signals(bars)
        folder = paper_dir("ml-run")
        folder.mkdir(parents=True)
        watch = DriftWatch(strategy, bars, folder, every=100, window=300)
        for i in range(len(bars)):
            watch.on_bar(i)
        ml = {"strategy": "ml", "params": {"model": "syn@1"}, "run_dir": str(folder)}
        store.start_run("ml-run", "paper", 1, ["s"], ml)
        quiet = {"strategy": "ml", "params": {"model": "syn@candidate"}}
        store.start_run("ml-quiet", "paper", 2, ["s"], quiet)
        store.start_run("ml-alpha", "paper", 3, ["s"], {**quiet, "params": {"model": "alpha"}})
        store.start_run("other", "paper", 4, ["s"], {"strategy": "sma_cross"})
        store.close()
        yield home


def _client(home: Path, scopes: frozenset[str] = frozenset({"read"})) -> TestClient:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    url = f"sqlite:///{home / 'sapphire.db'}"
    app.state.service = SimpleNamespace(store=Store(url), home=home)
    principal = Principal(1, "ana", "admin" if "admin" in scopes else "viewer", scopes, "token")
    app.dependency_overrides[authenticated] = lambda: principal
    return TestClient(app)


@pytest.fixture(scope="module")
def client(home: Path) -> TestClient:
    return _client(home)


@pytest.fixture
def registry(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelRegistry]:
    """The registry `sapphire ml models` opens for this home."""
    monkeypatch.setenv("SAPPHIRE_HOME", str(home))
    assert default_url() == f"sqlite:///{home / 'sapphire.db'}"
    with ModelRegistry(root=home / "models") as registry:
        yield registry


def _get(client: TestClient, path: str) -> Any:
    answer = client.get(f"/api/v1/models{path}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_registry_lists_its_models_and_aliases(client: TestClient) -> None:
    models = _get(client, "")["models"]
    assert [(m["name"], m["versions"], m["latest_version"]) for m in models] == [
        ("alpha", 1, 1), ("beta", 2, 2), ("syn", 2, 2),
    ]  # fmt: skip
    syn = models[2]
    assert syn["aliases"] == {"candidate": 2} and syn["task"] == "classification"
    assert syn["latest_created"].endswith("Z")


def test_versions_show_window_and_scores(client: TestClient, registry: ModelRegistry) -> None:
    body = _get(client, "/syn/versions")
    assert body["name"] == "syn"
    one, two = body["versions"]
    assert (one["version"], one["aliases"], two["aliases"]) == (1, [], ["candidate"])
    v1 = registry.get("syn@1")
    assert (one["label"], one["estimator"]) == ("triple_barrier", "lightgbm")
    assert one["data_start"] == v1.lineage["data"]["start"] == "2022-03-01T00:00:00+00:00"
    assert one["data_end"] == v1.lineage["data"]["end"]
    assert one["cv"] == v1.metrics["cv"] and "rank_ic" in one["cv"]


@pytest.mark.parametrize("version", ["1", "v1"])
def test_a_version_in_full_with_its_lineage(
    client: TestClient, registry: ModelRegistry, version: str
) -> None:
    body = _get(client, f"/syn/versions/{version}")
    v1 = registry.get("syn@1")
    assert (body["version"], body["sha256"]) == (1, v1.sha256)
    lineage = body["lineage"]
    data = v1.lineage["data"]
    assert lineage["data_sha256"] == data["sha256"] and len(data["sha256"]) == 64
    assert (lineage["data_start"], lineage["data_end"]) == (data["start"], data["end"])
    assert (lineage["data_rows"], lineage["rows"]) == (1500, v1.lineage["rows"])
    assert lineage["features"] == v1.lineage["features"] and "ret_1" in lineage["features"]
    assert lineage["params"] == v1.lineage["recipe"]
    assert lineage["params"]["model"]["kind"] == "lightgbm"
    assert lineage["code_version"] == v1.lineage["code_version"]
    assert lineage["raw"] == v1.lineage
    assert set(body["metrics"]) >= {"cv", "shap", "paths", "folds"}


def test_an_alias_names_a_version_too(client: TestClient) -> None:
    assert _get(client, "/syn/versions/candidate")["version"] == 2


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/bad name!/versions", 422, "'bad name!'"),
        ("/nope/versions", 404, "unknown model 'nope'"),
        ("/nope/drift", 404, "unknown model 'nope'"),
        ("/syn/versions/7", 404, "has no version 7"),
        ("/syn/versions/latest", 422, "'latest'"),
        ("/syn/versions/0", 422, "'0'"),
        ("/syn/versions/99999999999999999999", 422, "'99999999999999999999'"),
        ("/.../versions", 422, "'...'"),
        ("/syn/versions/champion", 404, "has no champion"),
    ],
)
def test_bad_names_and_versions_are_named(
    client: TestClient, path: str, status: int, named: str
) -> None:
    answer = client.get(f"/api/v1/models{path}")
    assert answer.status_code == status
    assert named in answer.json()["detail"]


def test_promote_and_rollback_move_the_registrys_alias(home: Path, registry: ModelRegistry) -> None:
    admin = _client(home, frozenset({"read", "trade", "admin"}))

    def move(action: str, **body: Any) -> Any:
        return admin.post(f"/api/v1/models/beta/{action}", json=body)

    first = move("promote", version=1, alias="champion")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "name": "beta", "alias": "champion", "version": 1, "previous_version": None,
        "action": "promote",
    }  # fmt: skip
    second = move("promote", version="candidate").json()  # alias defaults to champion
    assert move("promote", version=2.0).json()["version"] == 2  # JSON's 2.0 is the integer 2
    assert (second["version"], second["previous_version"]) == (2, 1)
    assert registry.get("beta@champion").version == 2  # what `sapphire ml` sees
    back = move("rollback", alias="champion").json()
    assert (back["version"], back["previous_version"], back["action"]) == (1, 2, "rollback")
    assert registry.get("beta@champion").version == 1
    again = move("rollback")
    assert again.status_code == 409 and "no earlier version" in again.json()["detail"]
    assert move("promote", version=9).status_code == 404
    assert "no version 9" in move("promote", version=9).json()["detail"]
    for bad in ({}, {"version": 0}, {"version": True}, {"version": "newest"}, {"version": 1.5},
                {"version": 1, "alias": "boss"}, {"version": 1, "extra": 1}):  # fmt: skip
        assert move("promote", **bad).status_code == 422, bad
    assert move("rollback", alias="boss").status_code == 422
    gone = admin.post("/api/v1/models/nope/promote", json={"version": 1})
    assert gone.status_code == 404
    assert registry.get("beta@champion").version == 1  # the refused moves changed nothing


def test_promote_and_rollback_need_the_admin_scope(home: Path) -> None:
    trader = _client(home, frozenset({"read", "trade"}))
    for action, body in (("promote", {"version": 1}), ("rollback", {})):
        answer = trader.post(f"/api/v1/models/syn/{action}", json=body)
        assert answer.status_code == 403 and "'admin' scope" in answer.json()["detail"]
    nobody = _client(home, frozenset())
    assert nobody.get("/api/v1/models").status_code == 403


def test_drift_of_the_runs_trading_the_model(client: TestClient, home: Path) -> None:
    body = _get(client, "/syn/drift")
    runs = {r["run_id"]: r for r in body["runs"]}
    assert set(runs) == {"ml-run", "ml-quiet"}  # not alpha's run, not sma_cross's
    shifted = runs["ml-run"]
    drift = read_drift(home / "paper" / "ml-run")
    report = drift["report"]
    alerts = sorted(f for f, row in report["features"].items() if row["alert"])
    assert alerts and shifted["status"] == "alert" and shifted["alerts"] == alerts
    assert (shifted["bar"], shifted["window"], shifted["model_version"]) == (
        report["bar"], 300, "syn@1",
    )  # fmt: skip
    assert shifted["model_ref"] == "syn@1" and shifted["features_checked"] == len(
        report["features"]
    )
    events = [e for e in drift["events"] if e["kind"] in ("feature", "performance")]
    assert shifted["drift_events"] == len(events) > 0
    assert shifted["last_events"] == drift["events"][-20:]
    assert shifted["checked_at"].startswith("2022-03-02T")
    quiet = runs["ml-quiet"]
    assert (quiet["status"], quiet["bar"], quiet["alerts"]) == ("unchecked", None, [])
    (alpha,) = _get(client, "/alpha/drift")["runs"]
    assert (alpha["run_id"], alpha["model_ref"]) == ("ml-alpha", "alpha")


def test_through_the_service_with_real_credentials(api: Api) -> None:
    admin, trader, viewer = (api.users[r] for r in ("admin", "trader", "viewer"))
    assert api.client.get("/api/v1/models", headers=viewer.headers).json() == {"models": []}
    missing = api.client.post(
        "/api/v1/models/syn/promote", json={"version": 1}, headers=admin.headers
    )
    assert missing.status_code == 404 and "unknown model 'syn'" in missing.json()["detail"]
    refused = api.client.post(
        "/api/v1/models/syn/promote", json={"version": 1}, headers=trader.headers
    )
    assert refused.status_code == 403
    bad = api.client.post(
        "/api/v1/models/syn/promote", json={"version": True}, headers=admin.headers
    )
    assert bad.status_code == 422
    assert "body.version: expected a version number from 1" in bad.json()["detail"]
    assert api.client.get("/api/v1/models").status_code == 401
