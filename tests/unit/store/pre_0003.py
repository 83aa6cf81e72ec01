"""A database as Sapphire left it before migration 0003: the optimiser's tables created by
its own `metadata.create_all` (outside Alembic), and the checks that such a database
upgrades (shared by the SQLite unit tests and the PostgreSQL integration tests)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sapphire.optimize.storage import StudyStorage, TrialRecord
from sapphire.store import current_revision, head_revision, migrate
from sapphire.store.models import metadata

# the optimiser's tables exactly as optimize/storage.py declared them before 0003
OLD = sa.MetaData()
OLD_STUDIES = sa.Table(
    "optimize_studies",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("strategy", sa.String(500), nullable=False),
    sa.Column("objectives", sa.JSON, nullable=False),
    sa.Column("directions", sa.JSON, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
OLD_TRIALS = sa.Table(
    "optimize_trials",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "study_id",
        sa.Integer,
        sa.ForeignKey("optimize_studies.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("values", sa.JSON, nullable=True),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("moments", sa.JSON, nullable=True),
    sa.Column("extra", sa.JSON, nullable=True),
    sa.Column("duration", sa.Float, nullable=False),
    sa.UniqueConstraint("study_id", "number", name="uq_optimize_trials_study_number"),
)
OLD_CONFIG = {"trials": 3, "sampler": "tpe", "space": {"fast": [2, 40]}}


def make_pre_0003_database(url: str, revision: str | None = "0002") -> None:
    """The store migrated to `revision` (None: never migrated), then the old optimiser's
    tables holding one study, "old-study", with trials 0, 1 and 2."""
    if revision is not None:
        assert migrate(url, revision) == revision
    engine = sa.create_engine(url)
    try:
        OLD.create_all(engine)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            key = conn.execute(
                OLD_STUDIES.insert().values(
                    name="old-study", strategy="sma_cross", objectives=["sharpe"],
                    directions=["maximize"], config=OLD_CONFIG, created_at=now, updated_at=now,
                )
            ).inserted_primary_key  # fmt: skip
            assert key is not None
            conn.execute(
                OLD_TRIALS.insert(),
                [
                    {"study_id": key[0], "number": i, "state": "complete", "params": {"fast": i},
                     "values": [i / 10], "metrics": {"sharpe": i / 10, "calmar": None},
                     "moments": None, "extra": {"error": None, "intermediate": {}},
                     "duration": 0.01}
                    for i in range(3)
                ],
            )  # fmt: skip
    finally:
        engine.dispose()


def schema_diff(url: str) -> list[object]:
    """What Alembic would change to make the database match the models (Sapphire's tables)."""
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


def _trial(number: int) -> TrialRecord:
    return TrialRecord(number, {"fast": number}, [number / 10], "complete", {"sharpe": 1.0},
                       None, 0.01)  # fmt: skip


def assert_pre_0003_database_upgrades(url: str) -> None:
    """Opening the database with the optimiser's storage migrates it to head; the old study
    reads back, takes new trials, keeps its unique constraints, and the schema is the one a
    fresh database gets."""
    storage = StudyStorage(url)
    assert current_revision(url) == head_revision()
    old = storage.get("old-study")
    assert old.config == OLD_CONFIG and old.objectives == ["sharpe"]
    trials = storage.load_trials(old)
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[2].params == {"fast": 2} and trials[2].values == [0.2]
    assert math.isnan(trials[2].metrics["calmar"])
    storage.add_trials(old, [_trial(3)])
    assert [t.number for t in storage.load_trials(old)] == [0, 1, 2, 3]
    with pytest.raises(sa.exc.IntegrityError):  # one trial number per study
        storage.add_trials(old, [_trial(3)])
    with pytest.raises(sa.exc.IntegrityError):  # one study per name
        storage.create("old-study", "sma_cross", ["sharpe"], ["maximize"], {})
    new = storage.create("new-study", "sma_cross", ["sharpe"], ["maximize"], {"trials": 1})
    assert new.id > old.id
    assert [s["name"] for s in storage.list()] == ["old-study", "new-study"]
    assert schema_diff(url) == []
