"""Every command that scores a fixed model says which bars were in its training window:
optimize (summary caveats, JSON, stored trials, report) and walk-forward (per fold: an
out-of-sample window scored by a model trained on it is not out of sample)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from sapphire.backtest.runner import bars_from_frame
from sapphire.ml.labels import LabelSpec
from sapphire.ml.models import ModelSpec
from sapphire.ml.pipeline import TrainConfig, train
from sapphire.ml.registry import ModelRegistry
from sapphire.optimize import optimize
from sapphire.optimize.report import study_report, walkforward_report
from sapphire.optimize.study import load_study
from sapphire.optimize.walkforward import walk_forward
from sapphire.optimize.walkforward_result import load_walkforward

TRAIN, TEST = 6000, 3000
CONFIG = TrainConfig(
    model=ModelSpec.parse("lightgbm:n_estimators=20,num_leaves=7"), n_groups=3,
    n_test_groups=1, importance=False, threshold=0.05,
    label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
)  # fmt: skip
CAPTION = "fee 0.05% · size 95% of equity · leverage 1× · intrabar path"


@pytest.fixture(scope="module")
def trained(btc_df: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    df = btc_df.iloc[: TRAIN + TEST].reset_index(drop=True)
    return train(bars_from_frame(df.iloc[:TRAIN].reset_index(drop=True)), CONFIG), df


@pytest.fixture
def model(trained: tuple[Any, pd.DataFrame]) -> str:
    v = trained[0].register("tb")
    ModelRegistry().promote(f"tb@{v.version}", "champion")
    return "tb@champion"


def test_an_optimisation_on_the_training_bars_is_marked_in_sample(
    trained: tuple[Any, pd.DataFrame], model: str
) -> None:
    df = trained[1]
    study = optimize(
        df, "ml", trials=3, seed=1, progress=False, model=model, fee=0.0005,
        space={"threshold": (0.05, 0.3)}, min_trades=0,
    )  # fmt: skip
    window = study.in_sample
    assert window is not None and window["model"].startswith("tb@")
    assert 0 < window["bars"] < window["of"]  # the held-out bars are scored too
    [warning] = study.warnings
    assert "in-sample" in warning and f"{window['bars']} of {window['of']}" in warning
    payload = study.to_json()
    assert payload["in_sample"] == window and payload["warnings"] == [warning]
    assert payload["settings"]["size_mode"] == "equity"
    assert study.caption() == CAPTION
    # stored with the trials: a loaded study (resume, report) says it too
    loaded = load_study(study.name)
    assert loaded.in_sample == window and loaded.warnings == [warning]
    html = study_report(loaded).read_text()
    assert "Warning: " in html and "in-sample" in html and CAPTION in html
    # the held-out bars alone: no caveat
    held_out = optimize(
        df.iloc[TRAIN:].reset_index(drop=True), "ml", trials=2, seed=1, progress=False,
        model=model, fee=0.0005, min_trades=0,
    )  # fmt: skip
    assert held_out.in_sample is None and held_out.warnings == []


def test_a_walkforward_fold_scored_by_a_model_trained_on_it_says_so(
    trained: tuple[Any, pd.DataFrame], model: str
) -> None:
    df = trained[1]
    # folds of 3000 train + 1500 test bars: fold 1 tests bars 3000-4500 (inside the
    # model's training window), fold 3 tests 6000-7500 and fold 4 7500-9000 (after it)
    wf = walk_forward(
        df, "ml", train=3000, test=1500, trials=2, seed=1, progress=False, model=model,
        fee=0.0005, min_trades=0, space={"threshold": (0.05, 0.3)},
    )  # fmt: skip
    by_fold = {f.number: f for f in wf.folds}
    first, last = by_fold[1], by_fold[max(by_fold)]
    assert first.model_overlap is not None
    assert first.model_overlap["test_window_bars"] == first.test_bars == 1500
    assert first.model_overlap["train_window_bars"] == first.train_bars
    [warning] = first.warnings
    assert warning.startswith("fold 1: 1500 of 1500 out-of-sample bars")
    assert "not out of sample" in warning
    assert last.warnings == []
    assert last.model_overlap is None or last.model_overlap["test_window_bars"] == 0
    assert wf.warnings == [w for f in wf.folds for w in f.warnings]
    payload = wf.to_json()
    assert payload["warnings"] == wf.warnings
    assert payload["folds"][0]["model_overlap"] == first.model_overlap
    assert wf.caption() == CAPTION
    loaded = load_walkforward(wf.name)
    assert loaded is not None and loaded.warnings == wf.warnings
    assert loaded.caption() == CAPTION
    html = walkforward_report(loaded).read_text()
    assert "not out of sample" in html and CAPTION in html
