"""Backups of a SQLite store: consistent while written, restored exactly (every table's
rows and hash, the model files), verified in a scratch database, refused when they would
overwrite data or come from a newer Sapphire, upgraded when they come from an older one."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from sapphire.ops.backup import (
    BackupError,
    backup,
    read_manifest,
    restore,
    summarize,
    verify,
)
from sapphire.store import current_revision, head_revision, migrate
from sapphire.store.models import metadata
from sapphire.store.schema import create_engine

T = metadata.tables


def fill(url: str, runs: int = 3) -> None:
    """Rows in tables of every column kind: exact decimals, JSON, datetimes, bytes, ids."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(T["instruments"]), [{
            "instrument_id": "BTCUSDT.BYBIT", "symbol": "BTCUSDT", "venue": "BYBIT",
            "base": "BTC", "quote": "USDT", "settlement": "USDT", "contract_type": "LINEAR",
            "tick_size": Decimal("0.10"), "lot_size": Decimal("0.001"), "min_qty": None,
            "max_qty": Decimal("1234567890.123456789012345678"), "min_notional": None,
            "max_notional": None, "maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.00055"),
            "multiplier": Decimal("1"),
        }])  # fmt: skip
        conn.execute(sa.insert(T["strategy_runs"]), [{
            "run_id": f"run-{i}", "mode": "PAPER", "status": "RUNNING", "strategy_ids": ["s1"],
            "config": {"fee": "0.001", "nested": {"b": [1, 2], "a": None}},
            "ts_started": 1_700_000_000_000_000_000 + i, "ts_finished": None, "reason": None,
        } for i in range(runs)])  # fmt: skip
        when = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
        conn.execute(sa.insert(T["optimize_studies"]), [{
            "id": 1, "name": "sma", "strategy": "SmaCross", "objectives": ["sharpe"],
            "directions": ["maximize"], "config": {}, "created_at": when, "updated_at": when,
        }])  # fmt: skip
        conn.execute(sa.insert(T["optimize_trials"]), [{
            "study_id": 1, "number": n, "state": "COMPLETE", "params": {"fast": n},
            "values": [0.5 + n], "metrics": {"sharpe": 1.25}, "moments": None, "extra": None,
            "duration": 0.125,
        } for n in range(2)])  # fmt: skip
        conn.execute(sa.insert(T["exchange_keys"]), [{
            "name": "main", "exchange": "bybit", "env": "testnet", "key_hint": "ab…yz",
            "ciphertext": b"\x00\xff secret", "nonce": b"\x01" * 12, "salt": b"\x02" * 16,
            "kdf": "scrypt", "key_check": "c" * 64, "ts_created": 1, "ts_updated": 2,
        }])  # fmt: skip
        conn.execute(sa.insert(T["ml_model_versions"]), [{
            "name": "m", "version": 1, "created_ns": 5, "task": "classify",
            "artefact": "m/v1/model.pkl", "sha256": "0" * 64, "lineage": {"data": "x"},
            "metrics": {}, "status": "ready",
        }])  # fmt: skip
    engine.dispose()


def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        out = {
            name: [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]
            for name, table in T.items()
        }
    engine.dispose()
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    migrate(url)
    fill(url)
    return url


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "m" / "v1").mkdir(parents=True)
    (folder / "m" / "v1" / "model.pkl").write_bytes(b"pickled model \x00\x01")
    (folder / ".m.tmp").write_bytes(b"half-written")  # a write in progress is left out
    return folder


def test_backup_restore_round_trip_is_exact(db: str, models: Path, tmp_path: Path) -> None:
    path, manifest = backup(db, tmp_path / "b.tar.gz", models_dir=models)
    assert manifest.dialect == "sqlite" and manifest.revision == head_revision()
    assert manifest.tables["strategy_runs"].rows == 3
    assert manifest.tables["optimize_trials"].rows == 2 and manifest.tables["orders"].rows == 0
    assert set(manifest.tables) == set(T)
    assert list(manifest.models) == ["m/v1/model.pkl"]
    assert read_manifest(path) == manifest

    target, into = f"sqlite:///{tmp_path / 'restored.db'}", tmp_path / "restored-models"
    restored = restore(path, target, models_dir=into)
    assert restored == manifest
    assert snapshot(target) == snapshot(db)
    assert (into / "m" / "v1" / "model.pkl").read_bytes() == b"pickled model \x00\x01"
    assert not (into / ".m.tmp").exists()
    engine = create_engine(target)
    with engine.connect() as conn:
        assert summarize(conn) == manifest.tables
        got = conn.execute(sa.select(T["instruments"].c.max_qty)).scalar()
        keys = conn.execute(sa.select(T["exchange_keys"].c.ciphertext)).scalar()
    engine.dispose()
    assert got == Decimal("1234567890.123456789012345678") and keys == b"\x00\xff secret"
    assert verify(path).ok


def test_the_hash_sees_a_changed_value(db: str, tmp_path: Path) -> None:
    _, manifest = backup(db, tmp_path / "b.tar.gz", include_models=False)
    engine = create_engine(db)
    with engine.begin() as conn:
        conn.execute(sa.update(T["instruments"]).values(tick_size=Decimal("0.1")))
        after = summarize(conn)
    engine.dispose()
    assert after["instruments"].rows == manifest.tables["instruments"].rows
    assert after["instruments"].sha256 != manifest.tables["instruments"].sha256
    assert after["strategy_runs"] == manifest.tables["strategy_runs"]


def test_verify_finds_a_damaged_backup(db: str, models: Path, tmp_path: Path) -> None:
    path, _ = backup(db, tmp_path / "b.tar.gz", models_dir=models)
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(path) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                body = json.loads(data)
                body["tables"]["strategy_runs"]["rows"] = 4
                body["tables"]["instruments"]["sha256"] = "f" * 64
                data = json.dumps(body).encode()
            elif member.name.startswith("models/"):
                data = b"tampered"
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    report = verify(damaged)
    assert not report.ok
    assert report.problems == (
        "table instruments: content differs from the backup's hash",
        "table strategy_runs: 3 rows restored, 4 backed up",
        "model file m/v1/model.pkl: content differs from the backup's hash",
    )


def test_backup_is_consistent_while_a_node_writes(db: str, tmp_path: Path) -> None:
    stop, started = threading.Event(), threading.Event()

    def writer() -> None:
        engine = create_engine(db)
        i = 100
        while not stop.is_set():
            with engine.begin() as conn:  # a run and its instrument row in one transaction
                conn.execute(sa.insert(T["strategy_runs"]), {
                    "run_id": f"w-{i}", "mode": "PAPER", "status": "RUNNING",
                    "strategy_ids": [], "config": {}, "ts_started": i,
                })  # fmt: skip
                conn.execute(sa.update(T["instruments"]).values(symbol=f"S{i}"))
            started.set()
            i += 1
        engine.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(10)
    try:
        paths = [backup(db, tmp_path / f"b{n}.tar.gz", include_models=False) for n in range(3)]
    finally:
        stop.set()
        thread.join()
    for path, manifest in paths:
        target = f"sqlite:///{tmp_path / (path.name + '.db')}"
        restore(path, target)
        rows = snapshot(target)
        ids = [str(r[0]) for r in rows["strategy_runs"]]
        newest = max(int(i.split("-")[1]) for i in ids if i.startswith("w-"))
        assert rows["instruments"][0][1] == f"S{newest}"  # both writes of a commit, or neither
        assert len(rows["strategy_runs"]) == manifest.tables["strategy_runs"].rows
    assert paths[-1][1].tables["strategy_runs"].rows > 3


def test_restore_refuses_a_non_empty_database_unless_told(db: str, tmp_path: Path) -> None:
    path, _ = backup(db, tmp_path / "b.tar.gz", include_models=False)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(other)
    fill(other, runs=7)
    with pytest.raises(BackupError, match=r"is not empty \(rows in .*strategy_runs.*--yes"):
        restore(path, other)
    assert len(snapshot(other)["strategy_runs"]) == 7
    restore(path, other, replace=True)
    assert snapshot(other) == snapshot(db)


def test_restore_refuses_a_changed_model_file_unless_told(
    db: str, models: Path, tmp_path: Path
) -> None:
    path, _ = backup(db, tmp_path / "b.tar.gz", models_dir=models)
    into = tmp_path / "elsewhere"
    (into / "m" / "v1").mkdir(parents=True)
    (into / "m" / "v1" / "model.pkl").write_bytes(b"another model")
    target = f"sqlite:///{tmp_path / 't.db'}"
    with pytest.raises(BackupError, match=r"model file .*model.pkl differs .*--yes"):
        restore(path, target, models_dir=into)
    restore(path, target, models_dir=into, replace=True)
    assert (into / "m" / "v1" / "model.pkl").read_bytes() == b"pickled model \x00\x01"


def test_an_older_backup_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    old = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(old, "0002")
    path, manifest = backup(old, tmp_path / "old.tar.gz", include_models=False)
    assert manifest.revision == "0002" and "optimize_studies" not in manifest.tables
    assert verify(path).ok
    target = f"sqlite:///{tmp_path / 'new.db'}"
    restore(path, target)
    assert current_revision(target) == head_revision()

    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(path) as src, tarfile.open(newer, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                data = data.replace(b'"revision": "0002"', b'"revision": "9999"')
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(BackupError, match=r"revision '9999', newer than this Sapphire"):
        restore(newer, f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(BackupError, match="newer than this Sapphire"):
        verify(newer)


def test_bad_inputs_are_named(db: str, tmp_path: Path) -> None:
    path, _ = backup(db, tmp_path / "b.tar.gz", include_models=False)
    with pytest.raises(BackupError, match=r"b.tar.gz exists"):
        backup(db, path)
    with pytest.raises(BackupError, match="no backup at"):
        read_manifest(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BackupError, match=r"junk.tar.gz is not a Sapphire backup"):
        restore(tmp_path / "junk.tar.gz", db)
    with pytest.raises(BackupError, match="in-memory database"):
        backup("sqlite://", tmp_path / "m.tar.gz")
    with pytest.raises(BackupError, match="not 'mysql'"):
        backup("mysql://u@h/db", tmp_path / "x.tar.gz")
    with pytest.raises(BackupError, match=r"no SQLite database at .*absent.db"):
        backup(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path / "y.tar.gz")
    with pytest.raises(BackupError, match="sqlite backup; it restores into a sqlite database"):
        restore(path, "postgresql+psycopg://u@127.0.0.1:1/none")
    assert not list(tmp_path.glob(".*.partial"))


def test_default_paths_live_in_the_data_directory(db: str, sapphire_home: Path) -> None:
    (sapphire_home / "models" / "x").mkdir(parents=True)
    (sapphire_home / "models" / "x" / "model.pkl").write_bytes(b"m")
    path, manifest = backup(db)
    assert path.parent == sapphire_home / "backups" and path.name.endswith(".tar.gz")
    assert list(manifest.models) == ["x/model.pkl"]
    with sqlite3.connect(tmp := sapphire_home / "x.db"):
        pass
    restore(path, f"sqlite:///{tmp}")
    assert current_revision(f"sqlite:///{tmp}") == head_revision()
