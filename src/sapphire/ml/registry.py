"""Model registry: immutable, hash-verified model versions with lineage, and aliases moved
atomically with a history that makes `rollback` exact.

```python
registry = ModelRegistry()  # $SAPPHIRE_HOME/sapphire.db and $SAPPHIRE_HOME/models
mv = registry.register("btc-dir", model, lineage={...}, metrics={"cv": {...}})  # v1, candidate
registry.promote("btc-dir@candidate")  # champion -> v1 (a version or alias is required)
model = registry.load("btc-dir@champion")  # the artefact's sha256 is checked first
registry.rollback("btc-dir")  # champion -> where it pointed before its last promotion
```

Refs: `NAME` (the newest version), `NAME@3` or `NAME@v3` (a version), `NAME@champion` (an
alias: one of `ALIASES`). Each alias of a model points at one version (or none); aliases are
independent, so a version may carry several. Promoting a version to an alias takes the alias
from the version that had it (that version keeps its other aliases, if any); every move is a
row of the alias history, and `rollback` undoes the newest move not already undone.

`register` moves `candidate` to the new version by default (`alias=None` leaves it).

Versions are numbered 1, 2, ... per name and never reused: a version's row is reserved
("pending") before its artefact is written and becomes visible ("ready") only after, so a
crash in between leaves a hidden row, never a row without its file. An artefact is written to
`root/NAME/vN/model.pkl` through a temporary file, fsync and an atomic no-clobber link, made
read-only, never overwritten, and verified against its recorded sha256 on every load.
Writers of one model are serialised by the database (SQLite: `BEGIN IMMEDIATE`; PostgreSQL:
a transaction-scoped advisory lock per model name), so concurrent registrations, promotions
and rollbacks from threads or processes leave a consistent state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sapphire import __version__
from sapphire.config import home_subdir
from sapphire.encoding import jsonable
from sapphire.store.models import AliasHistoryRow, ModelAliasRow, ModelVersionRow
from sapphire.store.schema import create_engine, default_url, is_memory, migrate, upgrade_engine

if TYPE_CHECKING:
    from sapphire.ml.models import Model

__all__ = [
    "ALIASES",
    "ARTEFACT_FILE",
    "ModelRegistry",
    "ModelVersion",
    "file_sha256",
    "parse_ref",
    "write_artefact",
]

ALIASES = ("candidate", "challenger", "champion")
ARTEFACT_FILE = "model.pkl"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_VERSION_TAG = re.compile(r"v?([0-9]+)")
_PG_LOCK_KEY = 0x5A9911E6  # first key of the per-model advisory lock (second: crc32 of name)
_MLFLOW_PARAM_CHARS = 500  # the smallest limit of the MLflow versions in use

_versions = cast(sa.Table, ModelVersionRow.__table__)
_aliases = cast(sa.Table, ModelAliasRow.__table__)
_history = cast(sa.Table, AliasHistoryRow.__table__)


def _key(name: str, version: int) -> sa.ColumnElement[bool]:
    return (_versions.c.name == name) & (_versions.c.version == version)


def _ready(*columns: Any) -> sa.Select[Any]:
    """SELECT `columns` (default: all) of the ready versions (pending/failed ones are hidden)."""
    return sa.select(*(columns or [_versions])).where(_versions.c.status == "ready")


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One registered model version: its artefact, hash, lineage, metrics and aliases."""

    name: str
    version: int
    created_ns: int
    task: str
    artefact: Path
    sha256: str
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    aliases: tuple[str, ...]

    @property
    def ref(self) -> str:
        """The exact ref of this version (`NAME@vN`)."""
        return f"{self.name}@v{self.version}"


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and set(name) != {"."}


def check_name(name: object) -> str:
    """Return `name` if it is a valid model name ([A-Za-z0-9_.-], 1..200, not only dots)."""
    if not isinstance(name, str) or not _valid_name(name):
        raise ValueError(
            f"model name {name!r} is invalid: expected 1..200 characters of A-Z a-z 0-9 _ . - "
            "(not only dots)"
        )
    return name


def check_alias(alias: object) -> str:
    """Return `alias` if it is one of `ALIASES`."""
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}: expected one of {', '.join(ALIASES)}")
    return str(alias)


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split a ref into (name, version or None, alias or None); both None means the newest."""
    if not isinstance(ref, str):
        raise ValueError(f"model ref must be a str like 'NAME@v3', got {ref!r}")
    name, sep, tag = ref.partition("@")
    if not _valid_name(name):
        raise ValueError(f"model ref {ref!r} has an invalid name {name!r}")
    if not sep:
        return name, None, None
    number = _VERSION_TAG.fullmatch(tag)
    if number and int(number.group(1)) >= 1:
        return name, int(number.group(1)), None
    if tag in ALIASES:
        return name, None, tag
    raise ValueError(
        f"model ref {ref!r}: after '@' expected a version (3 or v3, from 1) or an alias "
        f"({', '.join(ALIASES)}), got {tag!r}"
    )


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_artefact(model: Model, path: Path) -> str:
    """Write `model` (via `model.save`) to `path` atomically and return its sha256.

    The model is saved to a temporary file beside `path`, hashed, fsynced, made read-only and
    hard-linked into place, which fails if `path` exists: an artefact is never overwritten
    (FileExistsError). The folder is fsynced so that the new name survives a power cut.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"artefact {path} already exists: artefacts are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        reported = model.save(tmp)
        sha = file_sha256(tmp)
        if reported != sha:
            raise ValueError(
                f"{type(model).__name__}.save returned sha256 {reported!r} but wrote {sha}"
            )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(
                f"artefact {path} already exists: artefacts are never overwritten"
            ) from None
        except OSError:  # a file system without hard links: rename (checked absent above)
            os.replace(tmp, path)
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)
    return sha


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` updated with `new`, recursively for keys that hold dicts on both sides."""
    out = dict(old)
    for key, value in new.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Writers take SQLite's write lock when their transaction starts, so that what they
    read (the newest version, an alias) cannot change before they write."""
    immediate = conn.get_execution_options().get("sapphire_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class ModelRegistry:
    """Named, versioned models in a database (`url`) and a folder of artefacts (`root`)."""

    def __init__(self, url: str | None = None, root: Path | None = None) -> None:
        self.url = url or default_url()
        self.root = Path(root) if root is not None else home_subdir("models")
        memory = is_memory(self.url)
        if not memory:
            migrate(self.url)
        self.engine = create_engine(self.url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            self.engine.dispose()
            raise ValueError(f"the model registry supports SQLite and PostgreSQL, not {self!r}")
        if memory:
            upgrade_engine(self.engine)
        elif self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_manual_transactions)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        # One transaction at a time per registry object (an in-memory SQLite database is
        # one shared connection); other objects and processes are serialised by the database.
        self._lock = threading.RLock()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        url = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        return f"ModelRegistry({url!r}, root={str(self.root)!r})"

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock, self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self, name: str) -> Iterator[Connection]:
        """A transaction holding the model's write lock; commits on success."""
        with self._lock, self.engine.connect() as conn:
            conn.execution_options(sapphire_immediate=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    key = zlib.crc32(name.encode()) - 2**31
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:a, :b)"),
                        {"a": _PG_LOCK_KEY, "b": key},
                    )
                yield conn

    # -- registering ------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Model,
        *,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        alias: str | None = "candidate",
    ) -> ModelVersion:
        """Store `model` as the next version of `name` (optionally moving `alias` to it).

        `lineage` records how it was made (feature_spec, label_spec, model_spec, data {start,
        end, rows, sha256}, params, ...; `code_version` defaults to Sapphire's version).
        """
        check_name(name)
        if alias is not None:
            check_alias(alias)
        task = getattr(model, "task", None)
        if not isinstance(task, str) or not task:
            raise ValueError(f"model {model!r} has no task (expected a fitted Model)")
        if not isinstance(lineage, Mapping):
            raise ValueError(f"lineage must be a mapping, got {type(lineage).__name__}")
        stored_lineage = {"code_version": __version__, **jsonable(lineage, "lineage")}
        stored_metrics = jsonable(metrics or {}, "metrics")
        if not isinstance(stored_metrics, dict):
            raise ValueError(f"metrics must be a mapping, got {type(metrics).__name__}")
        with self._write(name) as conn:
            latest = conn.execute(
                sa.select(sa.func.max(_versions.c.version)).where(_versions.c.name == name)
            ).scalar()
            version = int(latest or 0) + 1
            relative = f"{name}/v{version}/{ARTEFACT_FILE}"
            conn.execute(
                _versions.insert().values(
                    name=name, version=version, created_ns=time.time_ns(), task=task,
                    artefact=relative, sha256="", lineage=stored_lineage,
                    metrics=stored_metrics, status="pending",
                )
            )  # fmt: skip
        try:
            sha = write_artefact(model, self.root / relative)
        except BaseException:
            with suppress(sa.exc.SQLAlchemyError), self._write(name) as conn:
                conn.execute(_versions.update().where(_key(name, version)).values(status="failed"))
            raise
        with self._write(name) as conn:
            conn.execute(
                _versions.update()
                .where(_key(name, version) & (_versions.c.status == "pending"))
                .values(sha256=sha, status="ready")
            )
            if alias is not None:
                self._move(conn, name, alias, version, "register")
        return self.get(f"{name}@v{version}")

    def set_metrics(self, ref: str, metrics: Mapping[str, Any]) -> ModelVersion:
        """Merge `metrics` (e.g. {"backtest": {...}}) into a version's metrics (nested dicts
        are merged, other values replaced); returns the updated version."""
        stored = jsonable(metrics, "metrics")
        if not isinstance(stored, dict):
            raise ValueError(f"metrics must be a mapping, got {type(metrics).__name__}")
        name = parse_ref(ref)[0]
        with self._write(name) as conn:
            row = self._resolve(conn, ref)
            merged = _merge(dict(row.metrics), stored)
            conn.execute(_versions.update().where(_key(name, row.version)).values(metrics=merged))
        return self.get(f"{name}@v{row.version}")

    # -- aliases ----------------------------------------------------------------------------

    def promote(self, ref: str, alias: str = "champion") -> ModelVersion:
        """Point `alias` at the version `ref` names, in one transaction with its history row.

        The version that held the alias loses it (and keeps any other alias it has); the
        history remembers it, so `rollback(name, alias)` brings it back. Promoting the version
        the alias already points at changes nothing. `ref` must name the version (NAME@3) or
        an alias (NAME@candidate): a bare NAME is refused, as "the newest" may not be the
        version that was reviewed.
        """
        check_alias(alias)
        name, number, tag = parse_ref(ref)
        if number is None and tag is None:
            versions = self.versions(name)
            listed = ", ".join(
                f"v{v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases else "")
                for v in versions
            )
            raise ValueError(
                f"promote {ref!r}: name the version to point {alias!r} at, e.g. "
                f"{name}@{versions[-1].version} or {name}@candidate; {name} has {listed}"
            )
        with self._write(name) as conn:
            version = self._resolve(conn, ref).version
            self._move(conn, name, alias, version, "promote")
        return self.get(f"{name}@v{version}")

    def rollback(self, name: str, alias: str = "champion") -> ModelVersion:
        """Point `alias` back at the version it pointed at before its newest move that is
        not already undone (repeated rollbacks walk back through the history)."""
        check_name(name)
        check_alias(alias)
        with self._write(name) as conn:
            self._require_model(conn, name)
            stack = self._alias_stack(conn, name, alias)
            current = self._alias_version(conn, name, alias)
            if current is None or len(stack) < 2:
                raise ValueError(
                    f"{name}@{alias} has no earlier version to roll back to "
                    f"(now: {'v' + str(current) if current else 'unset'})"
                )
            if stack[-1] != current:
                raise ValueError(
                    f"{name}@{alias} points at v{current} but its history ends at v{stack[-1]}: "
                    "the registry tables were edited by hand; refusing to roll back"
                )
            target = stack[-2]
            self._set_alias(conn, name, alias, target, current, "rollback")
        return self.get(f"{name}@v{target}")

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of model `name`, oldest first (id, name, alias, version,
        previous_version, set_ns, action)."""
        check_name(name)
        with self._read() as conn:
            self._require_model(conn, name)
            rows = conn.execute(
                sa.select(_history).where(_history.c.name == name).order_by(_history.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def _move(self, conn: Connection, name: str, alias: str, version: int, action: str) -> None:
        previous = self._alias_version(conn, name, alias)
        if previous != version:
            self._set_alias(conn, name, alias, version, previous, action)

    def _set_alias(
        self,
        conn: Connection,
        name: str,
        alias: str,
        version: int,
        previous: int | None,
        action: str,
    ) -> None:
        now = time.time_ns()
        key = (_aliases.c.name == name) & (_aliases.c.alias == alias)
        if previous is None:
            conn.execute(
                _aliases.insert().values(name=name, alias=alias, version=version, set_ns=now)
            )
        else:
            conn.execute(_aliases.update().where(key).values(version=version, set_ns=now))
        conn.execute(
            _history.insert().values(
                name=name, alias=alias, version=version, previous_version=previous,
                set_ns=now, action=action,
            )
        )  # fmt: skip

    @staticmethod
    def _alias_version(conn: Connection, name: str, alias: str) -> int | None:
        key = (_aliases.c.name == name) & (_aliases.c.alias == alias)
        found = conn.execute(sa.select(_aliases.c.version).where(key)).scalar()
        return None if found is None else int(found)

    @staticmethod
    def _alias_stack(conn: Connection, name: str, alias: str) -> list[int]:
        """The alias's versions as an undo stack: moves push, rollbacks pop."""
        rows = conn.execute(
            sa.select(_history.c.version, _history.c.action)
            .where((_history.c.name == name) & (_history.c.alias == alias))
            .order_by(_history.c.id)
        )
        stack: list[int] = []
        for version, action in rows:
            if action == "rollback":
                del stack[-1:]
            else:
                stack.append(int(version))
        return stack

    # -- reading ----------------------------------------------------------------------------

    def get(self, ref: str) -> ModelVersion:
        """The version `ref` names ("NAME", "NAME@3", "NAME@v3", "NAME@champion")."""
        with self._read() as conn:
            row = self._resolve(conn, ref)
            return self._version(row, self._aliases_of(conn, row.name).get(row.version, ()))

    def load(self, ref: str) -> Model:
        """The model `ref` names, after checking its artefact's sha256."""
        from sapphire.ml.models import Model

        mv = self.get(ref)
        self._verify(mv)
        return Model.load(mv.artefact, sha256=mv.sha256)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of model `name`, oldest first."""
        check_name(name)
        with self._read() as conn:
            self._require_model(conn, name)
            query = _ready().where(_versions.c.name == name).order_by(_versions.c.version)
            rows = conn.execute(query).all()
            aliases = self._aliases_of(conn, name)
            return [self._version(row, aliases.get(row.version, ())) for row in rows]

    def models(self) -> list[str]:
        """The names of the registered models, sorted."""
        with self._read() as conn:
            return self._names(conn)

    def _verify(self, mv: ModelVersion) -> None:
        if not mv.artefact.is_file():
            raise ValueError(f"artefact of {mv.ref} is missing: {mv.artefact}")
        actual = file_sha256(mv.artefact)
        if actual != mv.sha256:
            raise ValueError(
                f"artefact of {mv.ref} at {mv.artefact} has sha256 {actual}, the registry "
                f"recorded {mv.sha256}: it was modified or corrupted; refusing to load it"
            )

    @staticmethod
    def _names(conn: Connection) -> list[str]:
        names = conn.execute(_ready(_versions.c.name).distinct()).scalars()
        return sorted(str(name) for name in names)

    def _require_model(self, conn: Connection, name: str) -> None:
        query = _ready(_versions.c.version).where(_versions.c.name == name).limit(1)
        if conn.execute(query).first() is None:
            known = ", ".join(self._names(conn)) or "none"
            raise ValueError(f"unknown model {name!r} (registered: {known})")

    def _resolve(self, conn: Connection, ref: str) -> Any:
        """The ready version row `ref` names; ValueError naming the ref if there is none."""
        name, version, alias = parse_ref(ref)
        self._require_model(conn, name)
        if alias is not None:
            version = self._alias_version(conn, name, alias)
            if version is None:
                raise ValueError(f"model ref {ref!r}: {name} has no {alias} (alias not set)")
        ready = _ready().where(_versions.c.name == name)
        if version is None:
            row = conn.execute(ready.order_by(_versions.c.version.desc()).limit(1)).first()
        else:
            row = conn.execute(ready.where(_versions.c.version == version)).first()
        if row is None:
            query = _ready(_versions.c.version).where(_versions.c.name == name)
            listed = ", ".join(f"v{n}" for n in sorted(conn.execute(query).scalars()))
            raise ValueError(f"model ref {ref!r}: {name} has no version {version} ({listed})")
        return row

    @staticmethod
    def _aliases_of(conn: Connection, name: str) -> dict[int, tuple[str, ...]]:
        rows = conn.execute(
            sa.select(_aliases.c.version, _aliases.c.alias).where(_aliases.c.name == name)
        )
        found: dict[int, list[str]] = {}
        for version, alias in rows:
            found.setdefault(int(version), []).append(str(alias))
        return {v: tuple(a for a in ALIASES if a in names) for v, names in found.items()}

    def _version(self, row: Any, aliases: tuple[str, ...]) -> ModelVersion:
        return ModelVersion(
            name=row.name, version=int(row.version), created_ns=int(row.created_ns),
            task=row.task, artefact=self.root / row.artefact, sha256=row.sha256,
            lineage=dict(row.lineage), metrics=dict(row.metrics), aliases=aliases,
        )  # fmt: skip

    # -- MLflow -----------------------------------------------------------------------------

    def export_mlflow(self, ref: str, tracking_uri: str | None = None) -> str:
        """Log a version to MLflow (experiment = model name: params from the lineage, numeric
        metrics, the artefact and the full record as JSON); returns the MLflow run id."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ImportError(
                "export_mlflow needs MLflow, which is not installed: pip install mlflow"
            ) from None
        mv = self.get(ref)
        self._verify(mv)
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(mv.name)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(mv.name)
        )
        tags = {
            "sapphire.ref": mv.ref, "sapphire.sha256": mv.sha256, "sapphire.task": mv.task,
            "sapphire.aliases": ",".join(mv.aliases),
        }  # fmt: skip
        run = client.create_run(experiment_id, tags=tags, run_name=mv.ref)
        run_id = str(run.info.run_id)
        for key, value in _flatten(mv.lineage).items():
            text = value if isinstance(value, str) else json.dumps(value)
            client.log_param(run_id, key, text[:_MLFLOW_PARAM_CHARS])
        for key, value in _flatten(mv.metrics).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                client.log_metric(run_id, key, float(value))
        record = {"ref": mv.ref, "sha256": mv.sha256, "lineage": mv.lineage}
        client.log_dict(run_id, {**record, "metrics": mv.metrics}, "sapphire/version.json")
        client.log_artifact(run_id, str(mv.artefact), artifact_path="model")
        client.set_terminated(run_id)
        return run_id


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
