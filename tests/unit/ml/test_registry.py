"""Model registry on SQLite: versions increment, artefacts are immutable and hash-verified,
alias moves are atomic under concurrent callers, rollback restores the previous champion bit
for bit, refs are parsed strictly and bad ones named.

The `check_*` functions take a database URL and are run on PostgreSQL too
(tests/integration/test_registry_postgres.py).
"""

from __future__ import annotations

import itertools
import os
import stat
import sys
import threading
import types
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from sapphire.ml.models import Model, make_model
from sapphire.ml.registry import (
    ALIASES,
    ModelRegistry,
    file_sha256,
    parse_ref,
    write_artefact,
)

LINEAGE = {
    "feature_spec": {"indicators": ["rsi"], "periods": (14, 50)},
    "data": {"start": "2021-01-01", "end": "2021-02-01", "rows": 300, "sha256": "ab" * 32},
    "params": {"seed": np.int64(3), "lr": np.float64(0.1)},
}


def _fit(seed: int) -> tuple[Model, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=["f0", "f1", "f2", "f3"])
    y = np.where(X["f0"] + 0.5 * rng.normal(size=300) > 0, 1.0, -1.0)
    spec = f"lightgbm:n_estimators=15,num_leaves=7,seed={seed}"
    return make_model(spec, "classification", n_jobs=1).fit(X, y), X


@pytest.fixture(scope="module")
def models() -> list[tuple[Model, pd.DataFrame]]:
    """Three small fitted models whose predictions differ."""
    return [_fit(seed) for seed in (1, 2, 3)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


# -- checks shared with PostgreSQL -----------------------------------------------------------


def check_versions_increment_with_lineage(url: str, root: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, root)
    first = registry.register("btc-dir", models[0][0], lineage=LINEAGE, metrics={"cv": {"ic": 0.1}})
    second = registry.register("btc-dir", models[1][0], lineage=LINEAGE)
    assert (first.version, second.version) == (1, 2)
    assert first.artefact == root / "btc-dir" / "v1" / "model.pkl"
    assert first.sha256 == file_sha256(first.artefact) != second.sha256
    assert first.task == "classification" and first.metrics == {"cv": {"ic": 0.1}}
    assert first.lineage["feature_spec"] == {"indicators": ["rsi"], "periods": [14, 50]}
    assert first.lineage["params"] == {"seed": 3, "lr": 0.1}
    assert first.lineage["code_version"]
    # the candidate alias follows the newest registration
    assert registry.get("btc-dir@candidate").version == 2
    assert [v.aliases for v in registry.versions("btc-dir")] == [(), ("candidate",)]
    for ref in ("btc-dir", "btc-dir@2", "btc-dir@v2", "btc-dir@candidate"):
        assert registry.get(ref) == registry.versions("btc-dir")[1]
    third = registry.register("other", models[2][0], lineage={}, alias=None)
    assert third.version == 1 and third.aliases == ()
    assert registry.models() == ["btc-dir", "other"]
    reopened = ModelRegistry(url, root)  # state lives in the database, not the object
    assert reopened.get("btc-dir@v1") == registry.get("btc-dir@v1")
    registry.close()
    reopened.close()


def check_artefacts_are_immutable(url: str, root: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, root)
    mv = registry.register("imm", models[0][0], lineage={})
    before = mv.artefact.read_bytes()
    assert not os.stat(mv.artefact).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_artefact(models[1][0], mv.artefact)
    assert mv.artefact.read_bytes() == before
    assert [p.name for p in mv.artefact.parent.iterdir()] == ["model.pkl"]  # no temp left
    # a file already at the next version's path (another database sharing the root) is
    # refused too; that version is never visible and the next registration moves on
    squatter = root / "imm" / "v2" / "model.pkl"
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match=r"v2/model\.pkl already exists"):
        registry.register("imm", models[1][0], lineage={})
    assert squatter.read_bytes() == b"not ours"
    assert [v.version for v in registry.versions("imm")] == [1]
    assert registry.get("imm@candidate").version == 1
    assert registry.register("imm", models[1][0], lineage={}).version == 3
    with pytest.raises(ValueError, match="imm has no version 2"):
        registry.get("imm@v2")
    registry.close()


def check_tampered_artefact_is_refused(url: str, root: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, root)
    mv = registry.register("tamper", models[0][0], lineage={})
    model, X = models[0]
    assert np.array_equal(registry.load("tamper@v1").predict(X), model.predict(X))
    data = bytearray(mv.artefact.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(mv.artefact, 0o644)
    mv.artefact.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"artefact of tamper@v1 .* recorded {mv.sha256}"):
        registry.load("tamper")
    mv.artefact.unlink()
    with pytest.raises(ValueError, match="artefact of tamper@v1 is missing"):
        registry.load("tamper@v1")
    registry.close()


def check_rollback_restores_the_previous_champion(url: str, root: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, root)
    for model, _ in models:
        registry.register("rb", model, lineage={})
    X = models[0][1]
    with pytest.raises(ValueError, match="rb has no champion"):
        registry.load("rb@champion")
    # a bare name would silently mean "the newest": the version must be named
    bare = r"promote 'rb': name the version .* rb@3 or rb@candidate; rb has v1, v2, v3 \(cand"
    with pytest.raises(ValueError, match=bare):
        registry.promote("rb")
    with pytest.raises(ValueError, match="rb has no champion"):
        registry.load("rb@champion")
    registry.promote("rb@v1")
    with pytest.raises(ValueError, match="rb@champion has no earlier version to roll back to"):
        registry.rollback("rb")
    registry.promote("rb@v2")
    assert registry.promote("rb@2").aliases == ("champion",)  # no-op: no history row
    champion = registry.promote("rb@v3")
    assert champion.version == 3 and registry.get("rb@v2").aliases == ()
    assert np.array_equal(registry.load("rb@champion").predict(X), models[2][0].predict(X))

    assert registry.rollback("rb").version == 2
    restored = registry.load("rb@champion").predict(X)
    assert np.array_equal(restored, models[1][0].predict(X))  # bit for bit
    assert not np.array_equal(restored, models[2][0].predict(X))
    assert registry.rollback("rb").version == 1  # repeated rollbacks walk back
    assert np.array_equal(registry.load("rb@champion").predict(X), models[0][0].predict(X))
    with pytest.raises(ValueError, match="no earlier version"):
        registry.rollback("rb")
    registry.promote("rb@v3")
    assert registry.rollback("rb").version == 1  # undoes the newest move only

    history = [h for h in registry.history("rb") if h["alias"] == "champion"]
    assert [(h["action"], h["previous_version"], h["version"]) for h in history] == [
        ("promote", None, 1), ("promote", 1, 2), ("promote", 2, 3), ("rollback", 3, 2),
        ("rollback", 2, 1), ("promote", 1, 3), ("rollback", 3, 1),
    ]  # fmt: skip
    candidate = [h["version"] for h in registry.history("rb") if h["alias"] == "candidate"]
    assert candidate == [1, 2, 3]
    assert registry.rollback("rb", "candidate").version == 2  # aliases roll back separately
    assert registry.get("rb@champion").version == 1
    registry.close()


def check_concurrent_moves_stay_consistent(url: str, root: Path, models: list[Any]) -> None:
    """Threads with their own registry (own connections) promote and roll back at once: the
    alias history stays one unbroken chain that ends where the alias points."""
    with ModelRegistry(url, root) as registry:
        for model, _ in models:
            registry.register("conc", model, lineage={})
    workers = 4
    registries = [ModelRegistry(url, root) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for k in range(12):
                if (i + k) % 3:
                    registries[i].promote(f"conc@v{1 + (i + k) % 3}")
                else:
                    try:
                        registries[i].rollback("conc")
                    except ValueError as exc:  # nothing left to undo: allowed
                        assert "no earlier version" in str(exc)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = [h for h in registries[0].history("conc") if h["alias"] == "champion"]
    assert len(history) > workers
    assert history[0]["previous_version"] is None
    for before, after in itertools.pairwise(history):
        assert after["previous_version"] == before["version"], (before, after)
    assert registries[0].get("conc@champion").version == history[-1]["version"]

    # concurrent registrations get distinct, consecutive versions with intact artefacts
    barrier = threading.Barrier(workers)

    def register(i: int) -> None:
        barrier.wait()
        registries[i].register("burst", models[i % 3][0], lineage={"worker": i})

    threads = [threading.Thread(target=register, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = registries[0].versions("burst")
    assert [v.version for v in versions] == list(range(1, workers + 1))
    assert sorted(v.lineage["worker"] for v in versions) == list(range(workers))
    assert all(file_sha256(v.artefact) == v.sha256 for v in versions)
    assert registries[0].get("burst@candidate").version in range(1, workers + 1)
    for registry in registries:
        registry.close()


def check_unknown_refs_are_named(url: str, root: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, root)
    registry.register("known", models[0][0], lineage={})
    cases = {
        "nope": "unknown model 'nope' \\(registered: known\\)",
        "nope@champion": "unknown model 'nope'",
        "known@v7": "model ref 'known@v7': known has no version 7 \\(v1\\)",
        "known@challenger": "model ref 'known@challenger': known has no challenger",
        "known@best": "after '@' expected a version .* got 'best'",
        "known@v0": "got 'v0'",
        "bad name@1": "invalid name 'bad name'",
    }
    for ref, message in cases.items():
        with pytest.raises(ValueError, match=message):
            registry.get(ref)
    with pytest.raises(ValueError, match="unknown alias 'best': expected one of candidate"):
        registry.promote("known@v1", "best")
    with pytest.raises(ValueError, match="unknown model 'ghost'"):
        registry.rollback("ghost")
    registry.close()


SHARED_CHECKS = [
    check_versions_increment_with_lineage,
    check_artefacts_are_immutable,
    check_tampered_artefact_is_refused,
    check_rollback_restores_the_previous_champion,
    check_concurrent_moves_stay_consistent,
    check_unknown_refs_are_named,
]


@pytest.mark.parametrize("check", SHARED_CHECKS, ids=lambda c: c.__name__[6:])
def test_on_sqlite(check: Any, url: str, tmp_path: Path, models: list[Any]) -> None:
    check(url, tmp_path / "models", models)


# -- SQLite-only and pure-function tests -----------------------------------------------------


def test_defaults_live_in_sapphire_home(sapphire_home: Path, models: list[Any]) -> None:
    with ModelRegistry() as registry:
        mv = registry.register("home", models[0][0], lineage={})
    assert mv.artefact == sapphire_home / "models" / "home" / "v1" / "model.pkl"
    assert (sapphire_home / "sapphire.db").is_file()


def test_an_in_memory_registry_works(tmp_path: Path, models: list[Any]) -> None:
    with ModelRegistry("sqlite://", tmp_path) as registry:
        registry.register("mem", models[0][0], lineage={})
        registry.register("mem", models[1][0], lineage={})
        registry.promote("mem@v1")
        registry.promote("mem@v2")
        assert registry.rollback("mem").version == 1


def test_set_metrics_merges_nested_metrics(url: str, tmp_path: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, tmp_path)
    registry.register("met", models[0][0], lineage={}, metrics={"cv": {"ic": 0.05, "n": 5}})
    updated = registry.set_metrics(
        "met@candidate", {"cv": {"ic": 0.06}, "backtest": {"sharpe": np.float64(1.5), "x": np.nan}}
    )
    expected = {"cv": {"ic": 0.06, "n": 5}, "backtest": {"sharpe": 1.5, "x": None}}
    assert updated.metrics == expected and registry.get("met").metrics == expected
    assert updated.sha256 == registry.get("met@v1").sha256  # the artefact is untouched


def test_names_and_json_are_validated(url: str, tmp_path: Path, models: list[Any]) -> None:
    registry = ModelRegistry(url, tmp_path)
    for bad in ("", "..", "a/b", "a b", "x" * 201):
        with pytest.raises(ValueError, match=r"model name .* is invalid"):
            registry.register(bad, models[0][0], lineage={})
    with pytest.raises(ValueError, match=r"lineage\['when'\] is a object"):
        registry.register("ok", models[0][0], lineage={"when": object()})
    with pytest.raises(ValueError, match="non-str key 1"):
        registry.register("ok", models[0][0], lineage=cast(Any, {1: "x"}))
    with pytest.raises(ValueError, match="unknown alias 'prod'"):
        registry.register("ok", models[0][0], lineage={}, alias="prod")
    with pytest.raises(ValueError, match="has no task"):
        registry.register("ok", cast(Any, object()), lineage={})
    assert registry.models() == []


def test_parse_ref() -> None:
    assert parse_ref("m") == ("m", None, None)
    assert parse_ref("m.v2@12") == ("m.v2", 12, None)
    assert parse_ref("m@v3") == ("m", 3, None)
    assert [parse_ref(f"m@{alias}")[2] for alias in ALIASES] == list(ALIASES)


def test_export_mlflow_needs_mlflow(
    url: str, tmp_path: Path, models: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    registry = ModelRegistry(url, tmp_path)
    registry.register("exp", models[0][0], lineage={})
    with pytest.raises(ImportError, match="pip install mlflow"):
        registry.export_mlflow("exp")


def test_export_mlflow_logs_the_version(
    url: str, tmp_path: Path, models: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []

    class FakeClient:  # the MlflowClient calls export_mlflow makes
        def __init__(self, tracking_uri: str | None = None) -> None:
            calls.append(("uri", tracking_uri))

        def get_experiment_by_name(self, name: str) -> None:
            return None

        def create_experiment(self, name: str) -> str:
            calls.append(("experiment", name))
            return "7"

        def create_run(self, experiment_id: str, tags: Any, run_name: str) -> Any:
            calls.append(("run", (experiment_id, run_name, tags["sapphire.sha256"])))
            return types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))

        def __getattr__(self, method: str) -> Any:
            return lambda *args, **kwargs: calls.append((method, args[1:]))

    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = FakeClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "mlflow.tracking", tracking)
    registry = ModelRegistry(url, tmp_path)
    mv = registry.register("exp", models[0][0], lineage=LINEAGE, metrics={"cv": {"ic": 0.1}})
    assert registry.export_mlflow("exp@candidate", "file:///tmp/mlruns") == "r1"
    assert ("uri", "file:///tmp/mlruns") in calls and ("experiment", "exp") in calls
    assert ("run", ("7", "exp@v1", mv.sha256)) in calls
    assert ("log_param", ("data.rows", "300")) in calls
    assert ("log_metric", ("cv.ic", 0.1)) in calls
    assert ("log_artifact", (str(mv.artefact),)) in calls
    assert calls[-1] == ("set_terminated", ())
