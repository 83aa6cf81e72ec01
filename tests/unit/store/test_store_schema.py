"""Migrations: an empty SQLite upgrades to head, the models agree with the migrations, the
optimiser's tables are migrated with the rest (0003, also on a database whose study
tables predate it), the store imports no package above it, and the migrations ship as
package data."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout
from pathlib import Path, PurePosixPath

import pytest
import sqlalchemy as sa
from alembic import command
from pre_0003 import assert_pre_0003_database_upgrades, make_pre_0003_database, schema_diff

from sapphire.optimize.storage import StudyStorage
from sapphire.store import (
    Store,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    migrate,
)
from sapphire.store.models import VERSION_TABLE
from sapphire.store.schema import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[3]
STORE_TABLES = {
    "instruments", "strategy_runs", "orders", "order_events", "fills", "positions",
    "balances", "equity_snapshots", "equity_snapshot_strategies", "risk_events",
    "ml_model_versions", "ml_model_aliases", "ml_alias_history",
    "optimize_studies", "optimize_trials", "users", "refresh_tokens", "api_keys",
    "audit_log", "exchange_keys", "graduation_decisions",
}  # fmt: skip
_diff = schema_diff


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


def test_the_optimisers_tables_are_migrated_with_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    studies = StudyStorage(url)  # an empty database: the storage runs the migrations
    assert current_revision(url) == head_revision()
    studies.create("s1", "sma_cross", ["sharpe"], ["maximize"], {"trials": 3})
    with Store(url) as store:
        store.start_run("r", "paper", 0)
    assert studies.get("s1").config == {"trials": 3}
    assert _diff(url) == []
    inspector = sa.inspect(sa.create_engine(url))
    assert [ix["column_names"] for ix in inspector.get_indexes("optimize_trials")] == [["study_id"]]
    uniques = inspector.get_unique_constraints("optimize_trials")
    assert [uq["column_names"] for uq in uniques] == [["study_id", "number"]]
    assert downgrade(url, "0002") == "0002"  # 0003 owns the study tables
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert not tables & {"optimize_studies", "optimize_trials"}
    assert "strategy_runs" in tables
    assert downgrade(url, "base") is None
    assert not set(sa.inspect(sa.create_engine(url)).get_table_names()) & STORE_TABLES
    assert migrate(url) == head_revision()


@pytest.mark.parametrize("revision", ["0002", None], ids=["at-0002", "never-migrated"])
def test_a_database_whose_study_tables_predate_0003_upgrades(
    tmp_path: Path, revision: str | None
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_pre_0003_database(url, revision)
    assert current_revision(url) == revision
    assert_pre_0003_database_upgrades(url)
    assert downgrade(url, "0002") == "0002" and migrate(url) == head_revision()


def test_an_in_memory_study_storage_gets_the_schema() -> None:
    storage = StudyStorage("sqlite://")
    study = storage.create("m", "sma_cross", ["sharpe"], ["maximize"], {"trials": 1})
    assert storage.get("m").id == study.id


def test_offline_sql_creates_the_study_tables() -> None:
    config = alembic_config("postgresql+psycopg://user@localhost/db")
    out = io.StringIO()
    config.stdout = out
    with redirect_stdout(out):
        command.upgrade(config, "0002:0003", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE optimize_studies" in sql and "CREATE TABLE optimize_trials" in sql
    assert "CREATE INDEX ix_optimize_trials_study_id" in sql


def test_the_store_imports_no_package_above_it(tmp_path: Path) -> None:
    """store may import only domain (DESIGN.md, "Layers"), even while it migrates."""
    code = (
        "import sys\n"
        "from sapphire.store import Store, migrate\n"
        "migrate(sys.argv[1])\n"
        "with Store(sys.argv[1]):\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules\n"
        "    if m.startswith('sapphire.') and hasattr(sys.modules[m], '__path__')})))\n"
    )
    url = f"sqlite:///{tmp_path / 'layers.db'}"
    out = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
    ).stdout
    packages = set(out.split())
    assert "optimize" not in packages
    assert packages <= {"domain", "store"}, packages


def test_a_store_without_upgrade_refuses_an_old_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    head = head_revision()
    with pytest.raises(ValueError, match=f"is at schema revision None, this version needs {head}"):
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
