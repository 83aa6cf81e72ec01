"""Planted informative features rank top in permutation importance and SHAP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sapphire.ml.cv import PurgedKFold
from sapphire.ml.explain import permutation_importance_cv, shap_importance, shap_values
from sapphire.ml.labels import Labels
from sapphire.ml.models import make_model


def _planted(n: int = 1200, seed: int = 0, three: bool = False):
    """f0 (strong) and f1 (weaker) drive the label; n0..n3 are noise."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=["n0", "f0", "n1", "f1", "n2", "n3"])
    signal = 2.0 * X["f0"] + 1.0 * X["f1"] + 0.5 * rng.normal(size=n)
    if three:
        y = np.where(signal > 1.0, 1.0, np.where(signal < -1.0, -1.0, 0.0))
    else:
        y = np.where(signal > 0, 1.0, -1.0)
    t0 = np.arange(n, dtype=np.int64)
    labels = Labels(
        t0=t0,
        t1=t0 + 5,
        y=y,
        weight=np.ones(n),
        ret=signal.to_numpy() * 0.01,
        task="classification",
    )
    return X, labels


def test_permutation_importance_finds_planted_features():
    X, labels = _planted()
    imp = permutation_importance_cv(
        "lightgbm:n_estimators=30", X, labels, PurgedKFold(3, embargo=5), n_repeats=2
    )
    assert list(imp.columns) == ["feature", "importance", "std"]
    assert imp["feature"].tolist()[:2] == ["f0", "f1"]
    assert imp["importance"].is_monotonic_decreasing
    noise = imp.set_index("feature").loc[["n0", "n1", "n2", "n3"], "importance"]
    assert imp["importance"].iloc[1] > 5 * noise.abs().max()


def test_permutation_importance_regression_and_scoring():
    X, labels = _planted(800)
    reg = Labels(labels.t0, labels.t1, labels.ret, labels.weight, labels.ret, "regression")
    imp = permutation_importance_cv(
        "sklearn:Ridge", X, reg, PurgedKFold(3, embargo=0), n_repeats=2, scoring="rank_ic"
    )
    assert imp["feature"].tolist()[:2] == ["f0", "f1"]
    with pytest.raises(ValueError, match="scoring='nope'"):
        permutation_importance_cv("sklearn:Ridge", X, reg, PurgedKFold(2), scoring="nope")


def _check_shap(spec: str, three: bool) -> None:
    X, labels = _planted(three=three)
    model = make_model(spec, "classification").fit(X, labels.y)
    rows = X.iloc[:150]
    values = shap_values(model, rows)
    assert list(values.columns) == [*X.columns, "bias"]
    assert values.index.equals(rows.index)
    total = values.sum(axis=1).to_numpy()
    p = model.predict_proba(rows)
    if spec.startswith("sklearn"):
        expected = model.predict(rows)  # model-agnostic SHAP explains the traded score
    elif three:
        expected = np.log(p[:, 2] / p[:, 0])  # log P(+1) / P(-1)
    else:
        expected = np.log(p[:, 1] / p[:, 0])  # log-odds of +1
    np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-4)  # xgboost: float32
    top = shap_importance(model, rows)
    assert top.index.tolist()[:2] == ["f0", "f1"]
    assert top.iloc[1] > 3 * top.iloc[2:].max()


@pytest.mark.parametrize(
    "spec", ["lightgbm:n_estimators=40", "xgboost:n_estimators=40,max_depth=3"]
)
@pytest.mark.parametrize("three", [False, True])
def test_native_shap_finds_planted_features_and_adds_up(spec, three):
    _check_shap(spec, three)


def test_model_agnostic_shap_finds_planted_features_and_adds_up():
    # one test: shap compiles its Numba kernels (~4 s) once per process
    _check_shap("sklearn:LogisticRegression", three=False)
    _check_shap("sklearn:LogisticRegression", three=True)


def test_shap_regression():
    X, labels = _planted(600)
    model = make_model("lightgbm:n_estimators=40", "regression").fit(X, labels.ret)
    values = shap_values(model, X.iloc[:100])
    np.testing.assert_allclose(values.sum(axis=1), model.predict(X.iloc[:100]), atol=1e-9)
    assert shap_importance(model, X.iloc[:100]).index[0] == "f0"
    sub = shap_importance(model, X, max_rows=50)  # a seeded subsample of the rows
    assert sub.equals(shap_importance(model, X, max_rows=50))
    assert not sub.equals(shap_importance(model, X))
