"""Backups of a PostgreSQL store (each test in its own scratch schema, dropped after):
a one-snapshot logical dump restored exactly, sequences moved past the restored ids, a
scratch-schema verification that is cleaned up, and the refusals of a non-empty store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres_schema import URL, fresh_schema

from sapphire.ops.backup import BackupError, backup, restore, summarize, verify
from sapphire.store import current_revision, head_revision, migrate
from sapphire.store.models import metadata
from sapphire.store.schema import create_engine

T = metadata.tables
D28 = Decimal("1234567890.123456789012345678")


@pytest.fixture
def pg() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def pg2() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def fill(url: str, runs: int = 3) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(T["instruments"]), [{
            "instrument_id": "BTCUSDT.BYBIT", "symbol": "BTCUSDT", "venue": "BYBIT",
            "base": "BTC", "quote": "USDT", "settlement": "USDT", "contract_type": "LINEAR",
            "tick_size": Decimal("0.10"), "lot_size": Decimal("0.001"), "min_qty": None,
            "max_qty": D28, "min_notional": None, "max_notional": None,
            "maker_fee": Decimal("0.0002"), "taker_fee": Decimal("0.00055"),
            "multiplier": Decimal("1"),
        }])  # fmt: skip
        conn.execute(sa.insert(T["strategy_runs"]), [{
            "run_id": f"run-{i}", "mode": "PAPER", "status": "RUNNING", "strategy_ids": ["s"],
            "config": {"nested": {"b": [1, 2], "a": None}}, "ts_started": i,
        } for i in range(runs)])  # fmt: skip
        when = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
        study = conn.execute(sa.insert(T["optimize_studies"]).values(
            name="sma", strategy="SmaCross", objectives=["sharpe"], directions=["maximize"],
            config={}, created_at=when, updated_at=when,
        ).returning(T["optimize_studies"].c.id)).scalar_one()  # fmt: skip
        conn.execute(sa.insert(T["optimize_trials"]), [{
            "study_id": study, "number": n, "state": "COMPLETE", "params": {"fast": n},
            "values": [0.5], "metrics": {}, "moments": None, "extra": None, "duration": 0.1,
        } for n in range(2)])  # fmt: skip
        conn.execute(sa.insert(T["exchange_keys"]), [{
            "name": "main", "exchange": "bybit", "env": "testnet", "key_hint": "ab",
            "ciphertext": b"\x00\xff secret", "nonce": b"\x01" * 12, "salt": b"\x02" * 16,
            "kdf": "scrypt", "key_check": "c" * 64, "ts_created": 1, "ts_updated": 2,
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


def schemas() -> set[str]:
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT nspname FROM pg_namespace")).scalars())
    engine.dispose()
    return {n for n in names if n.startswith("sapphire_verify_")}


def test_postgres_round_trip_and_verify(pg: str, pg2: str, tmp_path: Path) -> None:
    migrate(pg)
    fill(pg)
    before = schemas()
    path, manifest = backup(pg, tmp_path / "pg.tar.gz", include_models=False)
    assert manifest.dialect == "postgresql" and manifest.revision == head_revision()
    assert manifest.tables["strategy_runs"].rows == 3 and set(manifest.tables) == set(T)
    report = verify(path, pg)
    assert report.ok, report.problems
    assert report.restored == manifest.tables
    assert schemas() == before  # the scratch schema is dropped

    restore(path, pg2)
    assert snapshot(pg2) == snapshot(pg)
    assert current_revision(pg2) == head_revision()
    engine = create_engine(pg2)
    with engine.begin() as conn:
        assert summarize(conn) == manifest.tables
        assert conn.execute(sa.select(T["instruments"].c.max_qty)).scalar() == D28
        nulls = conn.execute(
            sa.text("SELECT metrics IS NULL, moments IS NULL FROM optimize_trials LIMIT 1")
        ).one()
        assert tuple(nulls) == (False, True)  # a SQL NULL stays NULL, not JSON null
        # the serial ids continue after the restored ones
        new_id = conn.execute(sa.insert(T["exchange_keys"]).values(
            name="second", exchange="bybit", env="testnet", key_hint="x", ciphertext=b"c",
            nonce=b"n", salt=b"s", kdf="k", key_check="c" * 64, ts_created=3, ts_updated=3,
        ).returning(T["exchange_keys"].c.id)).scalar_one()  # fmt: skip
        old_ids = conn.execute(sa.select(sa.func.min(T["exchange_keys"].c.id))).scalar_one()
    engine.dispose()
    assert new_id > old_ids


def test_postgres_restore_refusals(pg: str, pg2: str, tmp_path: Path) -> None:
    migrate(pg)
    fill(pg)
    path, _ = backup(pg, tmp_path / "pg.tar.gz", include_models=False)
    migrate(pg2)
    fill(pg2, runs=5)
    with pytest.raises(BackupError, match=r"is not empty \(rows in .*--yes"):
        restore(path, pg2)
    assert len(snapshot(pg2)["strategy_runs"]) == 5
    restore(path, pg2, replace=True)
    assert snapshot(pg2) == snapshot(pg)
    with pytest.raises(BackupError, match="postgresql backup; it restores into a postgresql"):
        restore(path, f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(BackupError, match="verified on a PostgreSQL server"):
        verify(path, f"sqlite:///{tmp_path / 'x.db'}")


def test_an_older_postgres_backup_is_upgraded(pg: str, pg2: str, tmp_path: Path) -> None:
    migrate(pg, "0002")
    path, manifest = backup(pg, tmp_path / "old.tar.gz", include_models=False)
    assert manifest.revision == "0002"
    restore(path, pg2)
    assert current_revision(pg2) == head_revision()
