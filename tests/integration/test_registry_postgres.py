"""The model registry on PostgreSQL (SAPPHIRE_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test): the same checks as on SQLite
(tests/unit/ml/test_registry.py) — versions, immutable and hash-verified artefacts, exact
rollback, concurrent promotions and registrations serialised by the advisory lock.

Each test works in a fresh schema (search_path) and drops it afterwards. Skipped if
PostgreSQL is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "ml"))
from postgres_schema import fresh_schema
from test_registry import SHARED_CHECKS, _fit


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="module")
def models() -> list[Any]:
    """Three small fitted models whose predictions differ."""
    return [_fit(seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("check", SHARED_CHECKS, ids=lambda c: c.__name__[6:])
def test_on_postgres(check: Any, pg_url: str, tmp_path: Path, models: list[Any]) -> None:
    check(pg_url, tmp_path / "models", models)
