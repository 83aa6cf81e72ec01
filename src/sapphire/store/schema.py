"""Creating and upgrading the store's schema with Alembic, configured from Python.

`migrate(url)` upgrades a database to the newest revision (creating the tables in an empty
one); it is idempotent and safe to call at every start. There is no alembic.ini: the
migrations ship inside the package (`sapphire/store/migrations`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from sapphire.store.models import VERSION_TABLE
from sapphire.store.url import default_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic's `context`/`op` are process-wide proxies: one migration at a time per process.
_ALEMBIC_LOCK = threading.Lock()

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "create_engine",
    "current_revision",
    "default_url",
    "head_revision",
    "migrate",
]


def _sqlite_pragmas(foreign_keys: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        """WAL (readers never block the writer, shared with the optimiser's tables) and
        synchronous=FULL: a committed transaction survives a process crash *and* a power
        cut (one fsync per commit; the ledger is worth it)."""
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    return on_connect


def create_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """An engine for `url`; SQLite files get their folder created, WAL, synchronous=FULL and
    enforced foreign keys. A bad URL or a missing driver raises ValueError naming it."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"database URL must be a non-empty string, got {url!r}")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"database URL {url!r} is not usable: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = os.path.dirname(os.path.abspath(parsed.database))
        os.makedirs(folder, exist_ok=True)
    options: dict[str, Any] = {}
    if is_memory(url):  # one shared connection, or every connection sees a new database
        options = {"poolclass": sa.pool.StaticPool, "connect_args": {"check_same_thread": False}}
    try:
        engine = sa.create_engine(url, **options)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ValueError(f"database URL {_safe(url)!r} is not usable: {exc}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas(foreign_keys))
    return engine


def is_memory(url: str) -> bool:
    """True for an in-memory SQLite URL (`sqlite://`, `sqlite:///:memory:`)."""
    parsed = sa.engine.make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _safe(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` for the store's migrations (for `alembic.command.*` calls, e.g.
    `command.revision(alembic_config(url), message="...", autogenerate=True)`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Sapphire."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only if the package data went missing
        raise ValueError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database at `url` is at (None: never migrated)."""
    engine = create_engine(url or default_url(), foreign_keys=False)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def migrate(url: str | None = None, revision: str = "head") -> str | None:
    """Upgrade the database at `url` (default: `$SAPPHIRE_HOME/sapphire.db` or
    `SAPPHIRE_DATABASE_URL`) to `revision`; returns the revision it is at afterwards.

    Idempotent. Concurrent upgrades of one PostgreSQL database wait for each other (an
    advisory lock), and so do those of one process (Alembic's context is process-wide).
    """
    target = url or default_url()
    engine = create_engine(target, foreign_keys=False)
    try:
        return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, revision: str = "head") -> str | None:
    """`migrate` through an existing engine (how an in-memory SQLite store is created)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with _ALEMBIC_LOCK, engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def downgrade(url: str, revision: str) -> str | None:
    """Downgrade the database at `url` to `revision` ("base" drops the store's tables)."""
    engine = create_engine(url, foreign_keys=False)
    config = alembic_config(url)
    try:
        with _ALEMBIC_LOCK, engine.connect() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
            conn.commit()
            return MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
    finally:
        engine.dispose()
