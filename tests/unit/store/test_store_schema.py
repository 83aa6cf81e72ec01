"""Migrations: an empty SQLite upgrades to head, the models agree with the migrations, the
optimiser's tables in the same file survive, and the migrations ship as package data."""

from __future__ import annotations

import io
import tomllib
from contextlib import redirect_stdout
from pathlib import Path, PurePosixPath

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sapphire.optimize.storage import StudyStorage
from sapphire.store import (
    Store,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    migrate,
)
from sapphire.store.models import VERSION_TABLE, metadata
from sapphire.store.schema import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[3]
STORE_TABLES = {
    "instruments", "strategy_runs", "orders", "order_events", "fills", "positions",
    "balances", "equity_snapshots", "equity_snapshot_strategies", "risk_events",
    "ml_model_versions", "ml_model_aliases", "ml_alias_history",
}  # fmt: skip


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _p: (
                        kind != "table" or name in metadata.tables
                    ),
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrate_an_empty_sqlite_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'new.db'}"
    assert current_revision(url) is None
    assert migrate(url) == head_revision()
    assert migrate(url) == head_revision()  # idempotent
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert tables == STORE_TABLES | {VERSION_TABLE}
    assert _diff(url) == []  # the models and the migrations agree


def test_the_indexes_the_dashboard_needs_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ix.db'}"
    migrate(url)
    inspector = sa.inspect(sa.create_engine(url))
    columns = {
        table: [tuple(ix["column_names"]) for ix in inspector.get_indexes(table)]
        for table in ("orders", "fills", "equity_snapshots")
    }
    assert ("strategy_id", "is_open") in columns["orders"]  # open orders by strategy
    assert ("ts_ns",) in columns["fills"]  # fills by time
    assert ("run_id", "ts_ns") in columns["equity_snapshots"]  # equity by run


def test_the_optimisers_tables_live_beside_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    studies = StudyStorage(url)
    studies.create("s1", "sma_cross", ["sharpe"], ["maximize"], {"trials": 3})
    with Store(url) as store:
        store.start_run("r", "paper", 0)
    assert studies.get("s1").config == {"trials": 3}
    assert _diff(url) == []  # optimize_* tables are not the store's business
    assert downgrade(url, "base") is None
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert not tables & STORE_TABLES
    assert {"optimize_studies", "optimize_trials"} <= tables
    assert StudyStorage(url).get("s1").name == "s1"
    assert migrate(url) == head_revision()


def test_a_store_without_upgrade_refuses_an_old_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(ValueError, match="is at schema revision None, this version needs 0002"):
        Store(url, upgrade=False)
    migrate(url)
    with Store(url, upgrade=False) as store:
        assert store.runs() == []


def test_bad_urls_are_named() -> None:
    with pytest.raises(ValueError, match="database URL 'nonsense' is not usable"):
        migrate("nonsense")
    with pytest.raises(ValueError, match="is not usable"):
        migrate("nosuchdialect://x/y")


def test_offline_sql_for_postgresql_uses_numeric() -> None:
    config = alembic_config("postgresql+psycopg://user@localhost/db")
    out = io.StringIO()
    config.stdout = out
    with redirect_stdout(out):
        command.upgrade(config, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE orders" in sql and "quantity NUMERIC NOT NULL" in sql
    assert f"CREATE TABLE {VERSION_TABLE}" in sql


def test_every_migration_file_is_package_data() -> None:
    """A regular (non-editable) install must carry env.py, the template and the versions."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["sapphire.store"]
    files = [
        p.relative_to(MIGRATIONS_DIR.parent).as_posix()
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "migrations/versions/0001_initial_schema.py" in files
    assert "migrations/script.py.mako" in files and "migrations/env.py" in files

    def covered(path: str, pattern: str) -> bool:  # setuptools globs: "*" stays in a folder
        a, b = PurePosixPath(path), PurePosixPath(pattern)
        return len(a.parts) == len(b.parts) and a.match(pattern)

    missing = [f for f in files if not any(covered(f, g) for g in globs)]
    assert missing == []
