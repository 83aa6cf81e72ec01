"""`StoreBase`: the ledger's database connection, its transactions and the helpers every
repository of `Store` shares (id checks, upserts, the run a write goes to).

Every write runs in `_tx()`: the transaction of an enclosing `atomic()` block, or one of
its own, committed before the call returns. Reads run in `_read()`, which sees the
enclosing transaction's uncommitted writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from sapphire.store.models import StrategyRunRow
from sapphire.store.schema import (
    create_engine,
    current_revision,
    head_revision,
    is_memory,
    upgrade_engine,
)
from sapphire.store.schema import migrate as migrate_schema
from sapphire.store.url import default_url

__all__ = ["StoreBase", "StoreIntegrityError", "id_text", "run_text", "upsert"]


class StoreIntegrityError(ValueError):
    """The stored history disagrees with what is being recorded or rebuilt."""


def id_text(value: object, name: str, max_len: int) -> str:
    """`value` as the text of an id column of at most `max_len` characters."""
    text = str(value)
    if not text or len(text) > max_len:
        raise ValueError(f"{name} must be 1..{max_len} characters, got {text!r}")
    return text


def run_text(run_id: object) -> str:
    """`run_id` checked: a non-empty str without padding, at most 100 characters."""
    if not isinstance(run_id, str) or not run_id or run_id != run_id.strip():
        raise ValueError(f"run_id must be a non-empty str without padding, got {run_id!r}")
    return id_text(run_id, "run_id", 100)


def upsert(conn: Connection, table: sa.Table, values: dict[str, Any], keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE on SQLite and PostgreSQL."""
    dialect = conn.dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert(table)
    elif dialect == "sqlite":
        insert = sqlite.insert(table)
    else:
        raise ValueError(f"the store supports SQLite and PostgreSQL, not {dialect}")
    update = {k: insert.excluded[k] for k in values if k not in keys}
    conn.execute(insert.values(**values).on_conflict_do_update(index_elements=keys, set_=update))


class StoreBase:
    """The engine at one database URL, its transactions and the current run; `Store`
    adds the repositories."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or default_url()
        memory = is_memory(self.url)
        if upgrade and not memory:
            migrate_schema(self.url)
        elif not upgrade:
            at, head = current_revision(self.url), head_revision()
            if at != head:
                raise ValueError(
                    f"database {self._safe_url()} is at schema revision {at}, this version "
                    f"needs {head}: run sapphire.store.migrate(url)"
                )
        self.engine: Engine = create_engine(self.url)
        if upgrade and memory:  # a private database that lives as long as this engine
            upgrade_engine(self.engine)
        self._local = threading.local()
        #: The run that `record_*`/`save_*` calls without `run_id=` write to.
        self.run_id: str | None = None
        self._known_runs: set[str] = set()  # runs seen to exist (runs are never deleted)

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self._safe_url()!r})"

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run the store calls inside the block in one transaction (nested blocks join it);
        an exception rolls all of them back."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with _refused(), self.engine.begin() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with _refused(), self.engine.begin() as new:
            yield new

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as new:
            yield new

    # -- the current run ----------------------------------------------------------------

    def _run_of(self, run_id: str | None) -> str:
        """The run a write goes to; ValueError naming it if it was never started."""
        run = run_id if run_id is not None else self.run_id
        if run is None:
            raise ValueError("no run: call start_run/resume_run or pass run_id=")
        run = run_text(run)
        if run not in self._known_runs:
            with self._read() as conn:
                found = conn.execute(
                    sa.select(StrategyRunRow.run_id).where(StrategyRunRow.run_id == run)
                ).first()
            if found is None:
                raise ValueError(f"no run {run!r}: start it with start_run first")
            self._known_runs.add(run)
        return run


@contextmanager
def _refused() -> Iterator[None]:
    """A constraint the database enforces (unique ids, foreign keys) -> StoreIntegrityError."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise StoreIntegrityError(f"the database refused the write: {exc.orig}") from exc
