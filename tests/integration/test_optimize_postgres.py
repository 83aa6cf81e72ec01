"""Studies stored in PostgreSQL (SAPPHIRE_TEST_POSTGRES_URL; skipped if unreachable, not in CI).

The tests run in a fresh schema (search_path), which the first study migrates like any
other Sapphire database; it is dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from postgres_schema import fresh_schema

from sapphire.optimize.storage import StudyStorage
from sapphire.optimize.study import list_studies, load_study, optimize, resume
from sapphire.store import current_revision, head_revision


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def study_name(pg_url: str) -> object:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    store = StudyStorage(pg_url)
    if store.find(name) is not None:
        store.delete(name)


def test_study_stored_in_postgres_resumes_and_lists(
    pg_url: str, study_name: str, btc_df: pd.DataFrame
) -> None:
    frame = btc_df.iloc[:4000].reset_index(drop=True)
    kw = {"progress": False, "size": 0.95, "size_mode": "equity", "fee": 0.0005}
    first = optimize(frame, "sma_cross", trials=8, sampler="tpe", seed=1, study=study_name,
                     storage=pg_url, space={"fast": (2, 30), "slow": (10, 120)}, **kw)  # fmt: skip
    assert current_revision(pg_url) == head_revision()  # the storage migrated the schema
    again = resume(study_name, trials=14, storage=pg_url, progress=False, data=frame)
    assert again.n_trials == 14 and [t.number for t in again.trials] == list(range(14))
    loaded = load_study(study_name, storage=pg_url)
    assert loaded.best_value == again.best_value
    assert [t.params for t in loaded.trials[:8]] == [t.params for t in first.trials]
    assert any(s["name"] == study_name and s["n_trials"] == 14 for s in list_studies(pg_url))
    with pytest.raises(ValueError, match="already exists with a different configuration"):
        optimize(frame, "sma_cross", trials=8, sampler="random", seed=1, study=study_name,
                 storage=pg_url, **kw)  # fmt: skip
