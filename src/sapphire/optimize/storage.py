"""Where studies live: the tables `optimize_studies` and `optimize_trials` of Sapphire's
database (`sapphire.store`: its models and migrations define them).

The default is `sapphire.store.default_url()` (the SQLite file `$SAPPHIRE_HOME/sapphire.db`
unless `SAPPHIRE_DATABASE_URL` says otherwise); `storage=` / `--storage` points elsewhere,
e.g. `postgresql+psycopg://user@host:5432/db`, so a study can be shared between machines.
Opening a database upgrades its schema with the store's migrations. Trials are written in
batches (one transaction per batch of finished trials).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sapphire.encoding import jsonable, to_json
from sapphire.store.models import StudyRow, TrialRow
from sapphire.store.schema import is_memory, migrate, upgrade_engine
from sapphire.store.url import default_url

STATES = ("complete", "pruned", "failed", "infeasible", "ruined")

studies_table = cast(sa.Table, StudyRow.__table__)
trials_table = cast(sa.Table, TrialRow.__table__)


@dataclass
class TrialRecord:
    """One finished trial.

    `state` is "complete", "pruned", "failed" (an error, or a non-finite objective),
    "infeasible" (Strategy.check() refused the parameters, too few trades or a constraint
    was violated) or "ruined" (the equity reached zero: `backtest.metrics.is_ruined`);
    only complete trials have `values`. `intermediate` holds the pruning stages' values.
    `in_sample`, `caveats` and `settings` are those of the trial's full backtest
    (`evaluate_trial`): the bars a fitted model scored inside its training window, the
    strategy's caveats, the costs and sizing (empty for a trial that never ran).
    """

    number: int
    params: dict[str, Any]
    values: list[float] | None
    state: str
    metrics: dict[str, float]
    moments: dict[str, Any] | None
    duration_s: float
    error: str | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    in_sample: dict[str, Any] | None = None
    caveats: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


class _Encoded(str):
    """JSON text encoded already; the storage engine's serializer passes it through."""


def _serialize(value: Any) -> str:
    """The engine's JSON serializer: pre-encoded text as it is, anything else encoded."""
    return value if type(value) is _Encoded else json.dumps(value)


def _encode(value: Any) -> _Encoded:
    """JSON text of `value` (`sapphire.encoding.to_json`: NaN and +-inf as null)."""
    return _Encoded(to_json(value))


def _config(config: dict[str, Any]) -> dict[str, Any]:
    """A study's config as plain JSON data, as it reads back from the database."""
    return cast(dict[str, Any], jsonable(config, "study config", str_keys=True))


def _extra(r: TrialRecord) -> dict[str, Any]:
    return {
        "error": r.error,
        "intermediate": r.intermediate,
        "in_sample": r.in_sample,
        "caveats": r.caveats,
        "settings": r.settings,
    }


def _metrics_back(raw: dict[str, Any] | None) -> dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in (raw or {}).items()}


_ENGINES: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers (`sapphire optimize list`) never block a running study, and a commit
    needs no fsync of the main file (a committed batch survives a crash of the process;
    only a power cut may lose the last batches)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _engine(url: str) -> Engine:
    engine = _ENGINES.get(url)
    if engine is None:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            engine = sa.create_engine(url, future=True, json_serializer=_serialize)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ValueError(f"storage URL {url!r} is not usable: {exc}") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        if is_memory(url):  # a private database: its schema goes through this engine
            upgrade_engine(engine)
        else:
            migrate(url)
        _ENGINES[url] = engine
    return engine


@dataclass
class StoredStudy:
    """A study's row."""

    id: int
    name: str
    strategy: str
    objectives: list[str]
    directions: list[str]
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class StudyStorage:
    """Read and write studies and their trials at one SQLAlchemy URL."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        self.engine = _engine(self.url)

    def find(self, name: str) -> StoredStudy | None:
        """The study called `name`, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(studies_table).where(studies_table.c.name == name)
            ).one_or_none()
        if row is None:
            return None
        return StoredStudy(
            id=row.id,
            name=row.name,
            strategy=row.strategy,
            objectives=list(row.objectives),
            directions=list(row.directions),
            config=dict(row.config),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def get(self, name: str) -> StoredStudy:
        """The study called `name`; a ValueError lists the known names if there is none."""
        found = self.find(name)
        if found is None:
            with self.engine.connect() as conn:
                names = [r[0] for r in conn.execute(sa.select(studies_table.c.name))]
            known = ", ".join(sorted(names)[:20]) or "(none)"
            raise ValueError(f"no study named {name!r} in {self._safe_url()}; known: {known}")
        return found

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def create(
        self,
        name: str,
        strategy: str,
        objectives: Sequence[str],
        directions: Sequence[str],
        config: dict[str, Any],
    ) -> StoredStudy:
        """Insert a new study row (the name must be new)."""
        now = datetime.now(UTC)
        clean = _config(config)
        with self.engine.begin() as conn:
            result = conn.execute(
                studies_table.insert().values(
                    name=name,
                    strategy=strategy,
                    objectives=list(objectives),
                    directions=list(directions),
                    config=clean,
                    created_at=now,
                    updated_at=now,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        return StoredStudy(
            int(key[0]), name, strategy, list(objectives), list(directions), clean, now, now,
        )  # fmt: skip

    def update_config(self, study: StoredStudy, config: dict[str, Any]) -> None:
        """Replace a study's config (e.g. a new target number of trials)."""
        clean = _config(config)
        with self.engine.begin() as conn:
            conn.execute(
                studies_table.update()
                .where(studies_table.c.id == study.id)
                .values(config=clean, updated_at=datetime.now(UTC))
            )
        study.config = clean

    def add_trials(self, study: StoredStudy, records: Sequence[TrialRecord]) -> None:
        """Insert finished trials in one transaction."""
        if not records:
            return
        rows = [
            {
                "study_id": study.id,
                "number": r.number,
                "state": r.state,
                "params": _encode(r.params),
                "values": _encode(r.values) if r.values is not None else None,
                "metrics": _encode(r.metrics),
                "moments": _encode(r.moments) if r.moments is not None else None,
                "extra": _encode(_extra(r)),
                "duration": float(r.duration_s),
            }
            for r in records
        ]
        with self.engine.begin() as conn:
            conn.execute(trials_table.insert(), rows)
            conn.execute(
                studies_table.update()
                .where(studies_table.c.id == study.id)
                .values(updated_at=datetime.now(UTC))
            )

    def load_trials(self, study: StoredStudy) -> list[TrialRecord]:
        """Every stored trial of the study, by number."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(trials_table)
                .where(trials_table.c.study_id == study.id)
                .order_by(trials_table.c.number)
            ).all()
        out = []
        for row in rows:
            extra = row.extra or {}
            out.append(
                TrialRecord(
                    number=row.number,
                    params=dict(row.params),
                    values=list(row.values) if row.values is not None else None,
                    state=row.state,
                    metrics=_metrics_back(row.metrics),
                    moments=row.moments,
                    duration_s=row.duration,
                    error=extra.get("error"),
                    intermediate={int(k): v for k, v in (extra.get("intermediate") or {}).items()},
                    in_sample=extra.get("in_sample"),
                    caveats=list(extra.get("caveats") or []),
                    settings=dict(extra.get("settings") or {}),
                )
            )
        return out

    def list(self) -> list[dict[str, Any]]:
        """One dict per study: name, strategy, objectives, directions, trials, target, dates."""
        count = (
            sa.select(trials_table.c.study_id, sa.func.count().label("n"))
            .group_by(trials_table.c.study_id)
            .subquery()
        )
        query = (
            sa.select(studies_table, sa.func.coalesce(count.c.n, 0).label("n_trials"))
            .outerjoin(count, count.c.study_id == studies_table.c.id)
            .order_by(studies_table.c.created_at)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "name": r.name,
                "strategy": r.strategy,
                "objectives": list(r.objectives),
                "directions": list(r.directions),
                "n_trials": int(r.n_trials),
                "target_trials": (r.config or {}).get("trials"),
                "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(),
            }
            for r in rows
        ]

    def delete(self, name: str) -> None:
        """Delete a study and its trials (a ValueError if there is none)."""
        study = self.get(name)
        with self.engine.begin() as conn:
            conn.execute(trials_table.delete().where(trials_table.c.study_id == study.id))
            conn.execute(studies_table.delete().where(studies_table.c.id == study.id))
