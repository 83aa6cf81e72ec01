"""Backups of the whole store (ledger, model registry, studies, service tables) and the
model files, restores, and their verification.

A backup is one `.tar.gz`: `manifest.json` (the format, the database's dialect, its
migration revision, every table's row count and content hash, every model file's sha256),
the database and `models/` (the files under `$SAPPHIRE_HOME/models`: the registry's rows
point at them, so a registry without its files is no use).

- SQLite: the database file as SQLite's online backup API copies it: a consistent
  snapshot even while nodes write. Restored with the same API.
- PostgreSQL: a logical dump of every store table (`tables/NAME.jsonl`), read in one
  REPEATABLE READ READ ONLY transaction (one snapshot, as pg_dump takes). Not pg_dump:
  pg_dump refuses a server newer than itself (a Debian client against a container's
  newer server is common) and is a system package the image would need; and its dump
  names the schema it came from, so it cannot be restored into a scratch schema to be
  verified, nor into a store that lives in another schema. The logical dump needs only
  the driver Sapphire already uses and the CREATE right on the database.

Restoring creates the backup's revision with the migrations, loads the rows, then
upgrades to this code's newest revision; a backup from a newer Sapphire is refused.
`verify` restores into a scratch database (a temporary SQLite file, or a scratch
PostgreSQL schema that is dropped afterwards) and compares every table's row count and
content hash, and every model file's hash, with the manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

import sapphire
from sapphire.config import home_subdir
from sapphire.store.models import VERSION_TABLE, metadata
from sapphire.store.schema import (
    alembic_config,
    create_engine,
    head_revision,
    is_memory,
    migrate,
)
from sapphire.store.url import default_url

__all__ = [
    "FORMAT_VERSION",
    "BackupError",
    "Manifest",
    "TableSummary",
    "VerifyReport",
    "backup",
    "read_manifest",
    "restore",
    "summarize",
    "verify",
]

FORMAT_VERSION = 1
MANIFEST, SQLITE_MEMBER, TABLES, MODELS = "manifest.json", "database.sqlite", "tables", "models"
STORE_TABLES = frozenset(metadata.tables)
_BATCH = 1000


class BackupError(ValueError):
    """A backup cannot be made, read, verified or restored (the message says why)."""


@dataclass(frozen=True)
class TableSummary:
    """A table's row count and the sha256 of its rows in primary-key order."""

    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a backup holds (its `manifest.json`)."""

    dialect: str
    revision: str | None
    created: str
    tables: dict[str, TableSummary]
    models: dict[str, str] = field(default_factory=dict)
    sapphire_version: str = sapphire.__version__
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest as JSON text."""
        body = {
            "format": self.format, "sapphire_version": self.sapphire_version,
            "created": self.created, "dialect": self.dialect, "revision": self.revision,
            "tables": {k: {"rows": v.rows, "sha256": v.sha256} for k, v in self.tables.items()},
            "models": self.models,
        }  # fmt: skip
        return json.dumps(body, indent=2, sort_keys=True)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify`: `problems` is empty when the backup restores exactly."""

    manifest: Manifest
    restored: dict[str, TableSummary]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every table and model file matched the manifest."""
        return not self.problems


# -- rows as canonical text ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A column value as JSON: exact decimals as text, bytes as hex, times in ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _line(row: sa.Row[Any]) -> str:
    return json.dumps([_plain(v) for v in row], sort_keys=True, separators=(",", ":"))


def _reflect(conn: Connection) -> sa.MetaData:
    """The store's tables as the database has them now (whatever revision it is at)."""
    names = [n for n in sa.inspect(conn).get_table_names() if n in STORE_TABLES]
    reflected = sa.MetaData()
    reflected.reflect(conn, only=names)
    return reflected


def _ordered(table: sa.Table) -> sa.Select[Any]:
    keys = list(table.primary_key.columns) or list(table.columns)
    return sa.select(*table.columns).order_by(*keys)


def _rows(conn: Connection, table: sa.Table) -> Iterator[str]:
    result = conn.execute(_ordered(table), execution_options={"yield_per": _BATCH})
    for row in result:
        yield _line(row)


def summarize(conn: Connection) -> dict[str, TableSummary]:
    """Row count and content hash of every store table reachable through `conn`."""
    out: dict[str, TableSummary] = {}
    for table in _reflect(conn).sorted_tables:
        digest, count = hashlib.sha256(), 0
        for line in _rows(conn, table):
            digest.update(line.encode() + b"\n")
            count += 1
        out[table.name] = TableSummary(count, digest.hexdigest())
    return dict(sorted(out.items()))


# -- making a backup -------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    if is_memory(url):
        raise BackupError(f"an in-memory database cannot be backed up or restored: {url!r}")
    database = sa.engine.make_url(url).database
    return Path(str(database)).expanduser()


def _dialect(url: str) -> str:
    try:
        name = sa.engine.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        raise BackupError(f"database URL {url!r} is not usable") from None
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL databases, not {name!r}")
    return name


def _safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _snapshot_sqlite(url: str, into: Path) -> None:
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path}")
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(into)
    try:
        source.backup(target)  # the online backup API: a consistent copy while others write
    finally:
        target.close()
        source.close()


def _model_files(models_dir: Path | None) -> dict[str, Path]:
    if models_dir is None or not models_dir.is_dir():
        return {}
    files = {}
    for path in sorted(models_dir.rglob("*")):
        relative = path.relative_to(models_dir)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path
    return files


def _file_sha256(fh: Any) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(datetime.now(UTC).timestamp()), 0o600
    tar.addfile(info, io.BytesIO(data))


def default_backup_path() -> Path:
    """`$SAPPHIRE_HOME/backups/sapphire-<UTC time>.tar.gz`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return home_subdir("backups") / f"sapphire-{stamp}.tar.gz"


def backup(
    url: str | None = None,
    out: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    include_models: bool = True,
) -> tuple[Path, Manifest]:
    """Back up the store at `url` (default: the configured one) and the model files under
    `models_dir` (default `$SAPPHIRE_HOME/models`) to the archive `out`."""
    target = url or default_url()
    dialect = _dialect(target)
    path = Path(out) if out is not None else default_backup_path()
    if path.exists():
        raise BackupError(f"{path} exists: choose a new file for the backup")
    models = Path(models_dir) if models_dir is not None else home_subdir("models")
    files = _model_files(models) if include_models else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with tempfile.TemporaryDirectory() as scratch, tarfile.open(partial, "w:gz") as tar:
            if dialect == "sqlite":
                copy = Path(scratch) / SQLITE_MEMBER
                _snapshot_sqlite(target, copy)
                engine = sa.create_engine(f"sqlite:///{copy}")
                try:
                    with engine.connect() as conn:
                        tables, revision = summarize(conn), _revision(conn)
                finally:
                    engine.dispose()
                tar.add(copy, SQLITE_MEMBER)
            else:
                tables, revision = _dump_postgres(target, tar, Path(scratch))
            model_hashes = {}
            for name, file in files.items():
                with open(file, "rb") as fh:
                    model_hashes[name] = _file_sha256(fh)
                tar.add(file, f"{MODELS}/{name}")
            manifest = Manifest(
                dialect=dialect, revision=revision, created=datetime.now(UTC).isoformat(),
                tables=tables, models=model_hashes,
            )  # fmt: skip
            _add_bytes(tar, MANIFEST, manifest.to_json().encode())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path, manifest


def _revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _dump_postgres(
    url: str, tar: tarfile.TarFile, scratch: Path
) -> tuple[dict[str, TableSummary], str | None]:
    engine = create_engine(url)
    tables: dict[str, TableSummary] = {}
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            revision = _revision(conn)
            for table in _reflect(conn).sorted_tables:
                digest, count = hashlib.sha256(), 0
                dump = scratch / f"{table.name}.jsonl"
                with open(dump, "wb") as fh:
                    for line in _rows(conn, table):
                        data = line.encode() + b"\n"
                        fh.write(data)
                        digest.update(data)
                        count += 1
                tar.add(dump, f"{TABLES}/{table.name}.jsonl")
                tables[table.name] = TableSummary(count, digest.hexdigest())
            conn.rollback()
    finally:
        engine.dispose()
    return dict(sorted(tables.items())), revision


# -- reading a backup ------------------------------------------------------------------------


def _open(path: str | Path) -> tarfile.TarFile:
    try:
        return tarfile.open(Path(path), "r:gz")
    except FileNotFoundError:
        raise BackupError(f"no backup at {path}") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{path} is not a Sapphire backup (.tar.gz): {exc}") from None


def _manifest_of(tar: tarfile.TarFile, path: str | Path) -> Manifest:
    try:
        member = tar.extractfile(MANIFEST)
    except KeyError:
        member = None
    if member is None:
        raise BackupError(f"{path} has no {MANIFEST}: not a Sapphire backup")
    try:
        body = json.loads(member.read())
        manifest = Manifest(
            dialect=body["dialect"], revision=body["revision"], created=body["created"],
            tables={k: TableSummary(v["rows"], v["sha256"]) for k, v in body["tables"].items()},
            models=dict(body["models"]), sapphire_version=body["sapphire_version"],
            format=body["format"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"{path}: {MANIFEST} is damaged ({exc!r})") from None
    if manifest.format != FORMAT_VERSION:
        raise BackupError(
            f"{path} is backup format {manifest.format}; this Sapphire reads {FORMAT_VERSION}"
        )
    return manifest


def read_manifest(path: str | Path) -> Manifest:
    """The manifest of the backup at `path`."""
    with _open(path) as tar:
        return _manifest_of(tar, path)


def _check_revision(manifest: Manifest) -> None:
    if manifest.revision is None:
        return
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(manifest.revision)
    except CommandError:
        raise BackupError(
            f"the backup is at migration revision {manifest.revision!r}, newer than this "
            f"Sapphire's newest ({head_revision()!r}): upgrade Sapphire to restore it"
        ) from None


# -- restoring -------------------------------------------------------------------------------


def _has_rows(url: str) -> list[str]:
    engine = create_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn:
            return [
                t.name
                for t in _reflect(conn).sorted_tables
                if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()
            ]
    finally:
        engine.dispose()


def _drop_store(url: str) -> None:
    engine = create_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:
            names = sa.inspect(conn).get_table_names()
            reflected = sa.MetaData()
            reflected.reflect(conn, only=[n for n in names if n in STORE_TABLES | {VERSION_TABLE}])
            reflected.drop_all(conn)
    finally:
        engine.dispose()


def _decode(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, sa.JSON | sa.Float):
        return value
    if isinstance(kind, sa.LargeBinary):
        return bytes.fromhex(value)
    if isinstance(kind, sa.DateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, sa.Numeric):
        return Decimal(value)
    return value


def _load_postgres(tar: tarfile.TarFile, manifest: Manifest, url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table in _reflect(conn).sorted_tables:
                if table.name not in manifest.tables:
                    continue
                for column in table.columns:
                    if isinstance(column.type, sa.JSON):
                        column.type.none_as_null = True  # a SQL NULL stays NULL, not JSON null
                member = tar.extractfile(f"{TABLES}/{table.name}.jsonl")
                if member is None:
                    raise BackupError(f"the backup lacks the rows of table {table.name}")
                batch: list[dict[str, Any]] = []
                for raw in member:
                    values = json.loads(raw)
                    batch.append(
                        {c.key: _decode(c, v) for c, v in zip(table.columns, values, strict=True)}
                    )
                    if len(batch) >= _BATCH:
                        conn.execute(sa.insert(table), batch)
                        batch = []
                if batch:
                    conn.execute(sa.insert(table), batch)
                _reset_sequences(conn, table)
    finally:
        engine.dispose()


def _reset_sequences(conn: Connection, table: sa.Table) -> None:
    """Move each serial/identity column's sequence past the restored ids."""
    for column in table.primary_key.columns:
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
            {"t": f'"{table.name}"', "c": column.name},
        ).scalar()
        if sequence is not None:
            top = conn.execute(sa.select(sa.func.max(column))).scalar()
            conn.execute(
                sa.text("SELECT setval(:s, :v, :called)"),
                {"s": sequence, "v": top if top is not None else 1, "called": top is not None},
            )


def _restore_database(tar: tarfile.TarFile, manifest: Manifest, url: str) -> None:
    if manifest.dialect == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            member = tar.extractfile(SQLITE_MEMBER)
            if member is None:
                raise BackupError(f"the backup lacks its database ({SQLITE_MEMBER})")
            copy = Path(scratch) / SQLITE_MEMBER
            with open(copy, "wb") as fh:
                shutil.copyfileobj(member, fh)
            source, destination = sqlite3.connect(copy), sqlite3.connect(target)
            try:
                source.backup(destination)
            finally:
                destination.close()
                source.close()
    else:
        if manifest.revision is not None:
            migrate(url, manifest.revision)
        _load_postgres(tar, manifest, url)


def _restore_models(tar: tarfile.TarFile, manifest: Manifest, into: Path, replace: bool) -> int:
    written = 0
    for name, sha in manifest.models.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BackupError(f"the backup names a model file outside the models folder: {name!r}")
        destination = into / relative
        if destination.exists():
            with open(destination, "rb") as fh:
                if _file_sha256(fh) == sha:
                    continue
            if not replace:
                raise BackupError(
                    f"model file {destination} differs from the backup's: pass --yes to replace it"
                )
        member = tar.extractfile(f"{MODELS}/{name}")
        if member is None:
            raise BackupError(f"the backup lacks the model file {name}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
        with open(partial, "wb") as fh:
            shutil.copyfileobj(member, fh)
        os.replace(partial, destination)
        written += 1
    return written


def restore(
    path: str | Path,
    url: str | None = None,
    *,
    replace: bool = False,
    models_dir: str | Path | None = None,
    upgrade: bool = True,
) -> Manifest:
    """Restore the backup at `path` into the store at `url` (default: the configured one)
    and its model files into `models_dir` (default `$SAPPHIRE_HOME/models`).

    A store that holds rows is refused unless `replace` (its tables are dropped first); a
    backup from a newer Sapphire is refused; an older one is upgraded (unless `upgrade` is
    False, which leaves the restored database at the backup's revision)."""
    target = url or default_url()
    dialect = _dialect(target)
    with _open(path) as tar:
        manifest = _manifest_of(tar, path)
        if manifest.dialect != dialect:
            raise BackupError(
                f"{path} is a {manifest.dialect} backup; it restores into a {manifest.dialect} "
                f"database, not {_safe_url(target)!r}"
            )
        _check_revision(manifest)
        filled = _has_rows(target)
        if filled and not replace:
            raise BackupError(
                f"the database {_safe_url(target)!r} is not empty (rows in "
                f"{', '.join(filled[:5])}{', ...' if len(filled) > 5 else ''}): "
                "pass --yes to replace it"
            )
        if manifest.dialect == "postgresql":
            _drop_store(target)
        _restore_database(tar, manifest, target)
        if manifest.models:
            into = Path(models_dir) if models_dir is not None else home_subdir("models")
            _restore_models(tar, manifest, into, replace)
    if upgrade:
        migrate(target)
    return manifest


# -- verifying -------------------------------------------------------------------------------


@contextmanager
def _scratch(manifest: Manifest, url: str | None) -> Iterator[str]:
    """A scratch database of the backup's dialect, removed afterwards."""
    if manifest.dialect == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'verify.db'}"
        return
    server = url or default_url()
    if _dialect(server) != "postgresql":
        raise BackupError(
            f"a PostgreSQL backup is verified on a PostgreSQL server, not {_safe_url(server)!r}:"
            " pass --url"
        )
    engine = create_engine(server)
    schema = f"sapphire_verify_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        parsed = sa.engine.make_url(server)
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def verify(path: str | Path, url: str | None = None) -> VerifyReport:
    """Restore the backup at `path` into a scratch database (for a PostgreSQL backup, a
    scratch schema on the server at `url`) and compare every table and model file with the
    manifest."""
    manifest = read_manifest(path)
    _check_revision(manifest)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as models, _scratch(manifest, url) as scratch:
        restore(path, scratch, models_dir=models, upgrade=False)
        engine = create_engine(scratch)
        try:
            with engine.connect() as conn:
                restored = summarize(conn)
                revision = _revision(conn)
        finally:
            engine.dispose()
        if revision != manifest.revision:
            problems.append(
                f"revision {revision!r} restored, the backup says {manifest.revision!r}"
            )
        for name in sorted(set(manifest.tables) | set(restored)):
            want, got = manifest.tables.get(name), restored.get(name)
            if want is None or got is None:
                problems.append(
                    f"table {name}: {'missing from the backup' if want is None else 'not restored'}"
                )
            elif want.rows != got.rows:
                problems.append(f"table {name}: {got.rows} rows restored, {want.rows} backed up")
            elif want.sha256 != got.sha256:
                problems.append(f"table {name}: content differs from the backup's hash")
        for name, sha in manifest.models.items():
            with open(Path(models) / name, "rb") as fh:
                if _file_sha256(fh) != sha:
                    problems.append(f"model file {name}: content differs from the backup's hash")
    return VerifyReport(manifest, restored, tuple(problems))
