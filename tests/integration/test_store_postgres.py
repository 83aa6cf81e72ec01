"""The store on PostgreSQL (SAPPHIRE_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test): migrations from an empty schema and
from one whose optimiser tables predate them, the models agreeing with them, NUMERIC
columns and exact round trips of every entity.

Each test run works in a fresh schema (search_path) and drops it afterwards. Skipped if
PostgreSQL is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "store"))
from postgres_schema import fresh_schema
from pre_0003 import assert_pre_0003_database_upgrades, make_pre_0003_database
from store_helpers import D28, assert_round_trip

from sapphire.store import Store, current_revision, downgrade, head_revision, migrate
from sapphire.store.models import VERSION_TABLE, metadata


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def test_migrations_on_an_empty_schema(pg_url: str) -> None:
    assert current_revision(pg_url) is None
    assert migrate(pg_url) == head_revision()
    assert migrate(pg_url) == head_revision()  # idempotent
    engine = sa.create_engine(pg_url)
    try:
        inspector = sa.inspect(engine)
        assert set(metadata.tables) | {VERSION_TABLE} <= set(inspector.get_table_names())
        numeric = {c["name"]: c["type"] for c in inspector.get_columns("orders")}
        assert isinstance(numeric["quantity"], sa.Numeric) and numeric["quantity"].scale is None
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
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_every_entity_round_trips_exactly(pg_url: str) -> None:
    with Store(pg_url) as store:
        assert_round_trip(store, f"pg-{uuid.uuid4().hex[:8]}")
        with store.engine.connect() as conn:  # exact NUMERIC arithmetic in SQL, too
            total = conn.execute(sa.text("SELECT sum(last_qty) FROM fills")).scalar()
        assert total == D28 + Decimal("0.500")


def test_downgrade_to_base_and_back(pg_url: str) -> None:
    migrate(pg_url)
    assert downgrade(pg_url, "base") is None
    engine = sa.create_engine(pg_url)
    try:
        assert not set(metadata.tables) & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert migrate(pg_url) == head_revision()


def test_concurrent_upgrades_wait_for_each_other(pg_url: str) -> None:
    """Processes starting at once on an empty database: the advisory lock lets one create
    the schema while the others wait, then find it at head."""
    downgrade(pg_url, "base")
    code = "import sys; from sapphire.store import migrate; print(migrate(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [head_revision()] * 3
    with ThreadPoolExecutor(max_workers=3) as pool:  # and threads of one process
        assert list(pool.map(lambda _: migrate(pg_url), range(3))) == [head_revision()] * 3


@pytest.mark.parametrize("revision", ["0002", None], ids=["at-0002", "never-migrated"])
def test_a_schema_whose_study_tables_predate_0003_upgrades(
    empty_pg_url: str, revision: str | None
) -> None:
    make_pre_0003_database(empty_pg_url, revision)
    assert current_revision(empty_pg_url) == revision
    assert_pre_0003_database_upgrades(empty_pg_url)
    engine = sa.create_engine(empty_pg_url)
    try:  # the constraints PostgreSQL had named by default now have the schema's names
        inspector = sa.inspect(engine)
        assert inspector.get_pk_constraint("optimize_studies")["name"] == "pk_optimize_studies"
        assert inspector.get_pk_constraint("optimize_trials")["name"] == "pk_optimize_trials"
        assert [fk["name"] for fk in inspector.get_foreign_keys("optimize_trials")] == [
            "fk_optimize_trials_study_id_optimize_studies"
        ]
        assert {uq["name"] for uq in inspector.get_unique_constraints("optimize_studies")} == {
            "uq_optimize_studies_name"
        }
    finally:
        engine.dispose()
    assert downgrade(empty_pg_url, "0002") == "0002"
    assert migrate(empty_pg_url) == head_revision()
