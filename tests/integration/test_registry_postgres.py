"""The model registry on PostgreSQL (SAPPHIRE_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test): the same checks as on SQLite
(tests/unit/ml/test_registry.py) — versions, immutable and hash-verified artefacts, exact
rollback, concurrent promotions and registrations serialised by the advisory lock.

Each test works in a fresh schema (search_path) and drops it afterwards. Skipped if
PostgreSQL is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "ml"))
from test_registry import SHARED_CHECKS, _fit

URL = os.environ.get(
    "SAPPHIRE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_url() -> Iterator[str]:
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


@pytest.fixture(scope="module")
def models() -> list[Any]:
    """Three small fitted models whose predictions differ."""
    return [_fit(seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("check", SHARED_CHECKS, ids=lambda c: c.__name__[6:])
def test_on_postgres(check: Any, pg_url: str, tmp_path: Path, models: list[Any]) -> None:
    check(pg_url, tmp_path / "models", models)
