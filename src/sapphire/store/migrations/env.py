"""Alembic environment of the store, configured from Python (`sapphire.store.schema`).

`config.attributes["connection"]` is the connection to migrate; without one (offline
`--sql` mode or a plain `alembic` call) the URL comes from `config.attributes["url"]` or the
`sqlalchemy.url` option. Only Sapphire's tables (`sapphire.store.models`: the ledger, the
model registry, the optimiser's studies) are compared and migrated: other applications'
tables in the same database are left alone.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from sapphire.store.models import VERSION_TABLE, metadata

config = context.config

#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades.
ADVISORY_LOCK_KEY = 0x5A9911E5


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Compare only Sapphire's own tables (not other applications')."""
    if type_ == "table":
        return name in metadata.tables
    return True


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",  # SQLite ALTERs go through copies
    }


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise ValueError("no database URL given to the store's migrations")
    return str(url)


def run_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(sa.engine.make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})"))
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
