"""A fresh PostgreSQL schema for a test: the one set-up the PostgreSQL tests share.

The server is read from SAPPHIRE_TEST_POSTGRES_URL (default: the machine's PostgreSQL,
database `test`). An unreachable server skips the test on a laptop and fails it in CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import sqlalchemy as sa

URL = os.environ.get(
    "SAPPHIRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """The URL of a new, empty schema (search_path), dropped afterwards."""
    try:
        engine = sa.create_engine(URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {URL} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {URL} is unreachable: {exc}")
    schema = f"sapphire_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in URL else "?"
    try:
        yield f"{URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
