"""Study storage on SQLite: tables, batched trials, listing, errors, default URL."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from sapphire.optimize.storage import StudyStorage, TrialRecord
from sapphire.store import default_url


def _record(number: int, state: str = "complete") -> TrialRecord:
    return TrialRecord(
        number=number,
        params={"fast": number, "short": bool(number % 2)},
        values=[float(number) / 10] if state == "complete" else None,
        state=state,
        metrics={"sharpe": float(number), "calmar": math.inf, "win_rate": math.nan},
        moments={"sr": 0.1, "blocks": [[10.0, 0.1, 0.01]]} if state == "complete" else None,
        duration_s=0.002,
        error=None if state == "complete" else "why",
        intermediate={0: 0.5} if state == "pruned" else {},
    )


def test_default_url_is_sqlite_under_sapphire_home(
    sapphire_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_url() == f"sqlite:///{sapphire_home / 'sapphire.db'}"
    store = StudyStorage()
    store.create("s", "sma_cross", ["sharpe"], ["maximize"], {"trials": 3})
    assert (sapphire_home / "sapphire.db").is_file()
    monkeypatch.setenv("SAPPHIRE_DATABASE_URL", "sqlite:///elsewhere.db")
    assert default_url() == "sqlite:///elsewhere.db"


def test_round_trip_of_studies_and_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'dir' / 'studies.db'}"
    store = StudyStorage(url)
    study = store.create("s1", "sma_cross", ["sharpe"], ["maximize"], {"trials": 5, "x": [1, 2]})
    records = [_record(0), _record(1, "infeasible"), _record(2, "pruned"), _record(3)]
    store.add_trials(study, records[:2])
    store.add_trials(study, records[2:])
    back = store.load_trials(store.get("s1"))
    assert [r.number for r in back] == [0, 1, 2, 3]
    assert back[0].params == {"fast": 0, "short": False} and back[0].values == [0.0]
    assert back[0].metrics["sharpe"] == 0.0
    # non-finite metrics are stored as JSON null and read back as NaN
    assert math.isnan(back[0].metrics["calmar"]) and math.isnan(back[0].metrics["win_rate"])
    assert back[0].moments == {"sr": 0.1, "blocks": [[10.0, 0.1, 0.01]]}
    assert back[1].state == "infeasible" and back[1].values is None and back[1].error == "why"
    assert back[2].intermediate == {0: 0.5}
    assert store.get("s1").config == {"trials": 5, "x": [1, 2]}
    store.update_config(study, {"trials": 9})
    assert store.get("s1").config == {"trials": 9}
    listed = store.list()
    assert listed[0]["name"] == "s1" and listed[0]["n_trials"] == 4
    assert listed[0]["target_trials"] == 9


def test_names_are_unique_and_unknown_names_are_clear(tmp_path: Path) -> None:
    store = StudyStorage(f"sqlite:///{tmp_path / 'a.db'}")
    store.create("one", "sma_cross", ["sharpe"], ["maximize"], {})
    with pytest.raises(sa.exc.IntegrityError):
        store.create("one", "sma_cross", ["sharpe"], ["maximize"], {})
    with pytest.raises(ValueError, match=r"no study named 'two' .* known: one"):
        store.get("two")
    store.delete("one")
    assert store.list() == [] and store.find("one") is None


def test_trial_numbers_are_unique_per_study(tmp_path: Path) -> None:
    store = StudyStorage(f"sqlite:///{tmp_path / 'b.db'}")
    study = store.create("s", "sma_cross", ["sharpe"], ["maximize"], {})
    store.add_trials(study, [_record(0)])
    with pytest.raises(sa.exc.IntegrityError):
        store.add_trials(study, [_record(0)])


def test_a_bad_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="storage URL 'nosuchdb://x' is not usable"):
        StudyStorage("nosuchdb://x")
