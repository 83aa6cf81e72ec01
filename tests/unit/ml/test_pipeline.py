"""Training pipeline: purged CV out of sample, CPCV paths, lineage, registration."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import bars_from_frame
from sapphire.ml.cv import CombinatorialPurgedCV
from sapphire.ml.labels import LabelSpec
from sapphire.ml.models import ModelSpec
from sapphire.ml.pipeline import (
    TrainConfig,
    cross_validate,
    data_fingerprint,
    make_dataset,
    train,
)
from sapphire.ml.registry import ModelRegistry
from sapphire.strategy.base import Bars

BARS = 9000
SMALL = ModelSpec.parse("lightgbm:n_estimators=40,num_leaves=15")


def small_config(**kw: Any) -> TrainConfig:
    base = TrainConfig(
        model=SMALL, n_groups=4, n_test_groups=2, importance=False,
        label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
    )  # fmt: skip
    return replace(base, **kw)


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df.iloc[:BARS].reset_index(drop=True))


@pytest.fixture(scope="module")
def trained(bars: Bars) -> Any:
    return train(bars, small_config(importance=True))


def test_config_round_trips_and_refuses_bad_values() -> None:
    config = small_config()
    again = TrainConfig.from_mapping(json.loads(json.dumps(config.to_mapping())))
    assert again == config
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_mapping({"bogus": 1})
    with pytest.raises(ValueError, match="cv='loo'"):
        TrainConfig(cv="loo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_test_groups=6"):
        TrainConfig(n_groups=6, n_test_groups=6)
    with pytest.raises(ValueError, match="exit_threshold"):
        TrainConfig(threshold=0.1, exit_threshold=0.2)


def test_dataset_rows_start_after_the_feature_warmup(bars: Bars) -> None:
    config = small_config()
    ds = make_dataset(bars, config.features, config.label)
    warm = config.features.warmup(bars.timeframe_ns)
    assert ds.labels.t0.min() >= warm
    assert np.isfinite(ds.labels.y).all()
    assert len(ds.X) == len(ds.labels.y)
    # row i of X is the feature row of bar t0[i]
    assert (ds.X.index.asi8 == bars.time[ds.labels.t0]).all()


def test_cpcv_scores_every_row_out_of_sample_along_full_paths(bars: Bars) -> None:
    config = small_config()
    ds = make_dataset(bars, config.features, config.label)
    cv = cross_validate(ds, config)
    splitter = CombinatorialPurgedCV(4, 2, config.embargo)
    assert len(cv.folds) == splitter.n_splits == 6
    assert len(cv.paths) == splitter.n_paths == 3
    assert np.isfinite(cv.oos).all()
    for path in cv.paths:
        assert np.isfinite(path).all()
    # different paths take different splits' predictions for the same rows
    assert not np.array_equal(cv.paths[0], cv.paths[1])
    # the fold table says which rows trained and tested; purging removed some training rows
    assert (cv.folds["train_rows"] + cv.folds["test_rows"] < len(ds)).all()
    assert {"accuracy", "ic", "rank_ic"} <= set(cv.metrics)


def test_train_records_lineage_metrics_and_a_reference_sample(trained: Any, bars: Bars) -> None:
    lin = trained.lineage
    assert lin["data"] == data_fingerprint(bars)
    assert lin["data"]["rows"] == BARS
    assert lin["recipe"] == trained.config.to_mapping()
    assert lin["features"] == list(trained.dataset.X.columns)
    assert lin["code_version"].startswith("0.")
    cv = trained.metrics["cv"]
    assert cv["n_paths"] == 3
    assert len(trained.metrics["paths"]) == 3
    assert {"path_sharpe_mean", "path_total_return_mean", "path_n_trades_mean"} <= set(cv)
    assert trained.importance is not None and len(trained.importance) == trained.dataset.X.shape[1]
    json.dumps(trained.metrics)  # JSON-able as stored
    ref = trained.model.reference
    assert list(ref.columns) == lin["features"] and 0 < len(ref) <= 10_000
    assert ref.index.equals(trained.dataset.X.index[-len(ref) :])  # consecutive, latest


def test_data_fingerprint_changes_with_one_price(bars: Bars) -> None:
    close = bars.close.copy()
    close[100] += 0.5
    other = replace(bars, close=close)
    assert data_fingerprint(other)["sha256"] != data_fingerprint(bars)["sha256"]


def test_registered_model_predicts_like_the_trained_one(trained: Any) -> None:
    version = trained.register("pipe")
    assert version.version == 1 and "candidate" in version.aliases
    loaded = ModelRegistry().load("pipe@candidate")
    X = trained.dataset.X.iloc[-500:]
    assert np.array_equal(loaded.predict(X), trained.model.predict(X))
    assert (
        ModelRegistry().get("pipe").lineage["data"]["sha256"] == trained.lineage["data"]["sha256"]
    )


def test_meta_labels_need_a_primary_and_record_it(bars: Bars) -> None:
    config = small_config(label=LabelSpec(kind="meta", horizon=20, pt=1.5, sl=1.5, vol_window=60))
    with pytest.raises(ValueError, match="primary"):
        train(bars, config)
    result = train(bars, config, primary={"strategy": "sma_cross", "params": {"short": True}})
    assert result.lineage["primary"] == {"strategy": "sma_cross", "params": {"short": True}}
    assert set(np.unique(result.dataset.labels.y)) <= {0.0, 1.0}
    assert result.model.predict(result.dataset.X.iloc[:50]).min() >= 0.0  # P(profitable)


def test_missing_other_instrument_is_named(bars: Bars) -> None:
    config = small_config(features=replace(small_config().features, instruments=("self", "eth")))
    with pytest.raises(ValueError, match="'eth'"):
        train(bars, config)


def test_frac_diff_auto_is_chosen_on_each_split_s_training_bars_only(
    bars: Bars, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapphire.ml.features import FeatureSpec

    seen: list[Any] = []
    choose = FeatureSpec.with_frac_diff

    def spy(self: FeatureSpec, b: Bars, **kw: Any) -> FeatureSpec:
        seen.append(kw.get("segments"))
        return choose(self, b, **kw)

    monkeypatch.setattr(FeatureSpec, "with_frac_diff", spy)
    config = small_config(frac_diff_auto=True)
    result = train(bars, config)
    # the final model: the order chosen on every training bar
    whole = choose(config.features, bars).frac_diff
    assert seen[0] is None and result.config.features.frac_diff == whole
    assert result.lineage["recipe"]["frac_diff_auto"] is True
    # each CV split: only on its training rows' bars, never a bar of a tested row
    lab = result.dataset.labels
    splits = list(CombinatorialPurgedCV(4, 2, config.embargo).split(lab.t0, lab.t1))
    assert len(seen) == 1 + len(splits)
    chosen = result.cv.folds["frac_diff"].tolist()
    for (train_pos, test_pos), segments, d in zip(splits, seen[1:], chosen, strict=True):
        used = np.zeros(len(bars), dtype=bool)
        for first, last in segments:
            used[first : last + 1] = True
        assert used[lab.t0[train_pos]].all()
        tested = np.zeros(len(bars), dtype=bool)
        for t0, t1 in zip(lab.t0[test_pos], lab.t1[test_pos], strict=True):
            tested[t0 : t1 + 1] = True
        assert not (used & tested).any()
        expected = choose(config.features, bars, segments=segments).frac_diff
        assert d == ("off" if expected is None else f"{expected:g}")
    assert "frac_diff" not in result.metrics["cv"]  # a choice, not a score to average
    # on these bars the splits' choices differ from the whole-data one the old code used
    assert set(chosen) - {f"{whole:g}"}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (60, r"no labelled rows after the feature warm-up of 50 bars .* 60 bars; use more"),
        (170, r"170 bars gave \d+ labelled rows .*; at least 100 are needed\. Use more data"),
        (400, r"400 bars gave \d+ labelled rows .*, label classes -1 \(\d+ rows\), 0 .*; CV split "
              r"\d+ of 6 keeps \d+ training rows after purging \(label classes: .*\), and each "
              r"needs at least 50 rows holding every label class\. Use more data .* a shorter "
              r"--horizon"),
    ],
)  # fmt: skip
def test_too_short_data_is_refused_with_the_counts_and_what_to_do(
    btc_df: pd.DataFrame, n: int, expected: str
) -> None:
    short = bars_from_frame(btc_df.iloc[:n].reset_index(drop=True))
    with pytest.raises(ValueError, match=expected):
        train(short, small_config())
