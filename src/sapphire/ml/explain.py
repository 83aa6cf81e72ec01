"""Which features a model relies on: permutation importance on purged CV, and SHAP values.

SHAP values explain the model's margin: the prediction for regression, the log-odds of
the higher class for binary classifiers, and for K classes sum_k (c_k - mean c) *
margin_k, which for classes {-1, 0, 1} is log P(+1) / P(-1). LightGBM and XGBoost use
their exact native TreeSHAP (`pred_contrib`); other models use `shap.Explainer` on the
traded score (`Model.predict`) with up to 100 rows of X as background. Each row's values
plus "bias" sum to the explained output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.ml.models import Model, ModelSpec, make_model
from sapphire.ml.scores import scoring_value

if TYPE_CHECKING:
    from sapphire.ml.labels import Labels


def _score_rows(
    model: Model,
    A: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    scoring: str,
) -> float:
    """The test score of `model` on the matrix `A` (higher is better)."""
    if model.task == "classification":
        proba = model.predict_proba(A)
        score = np.zeros(A.shape[0])
        for k, c in enumerate(model.classes):
            score += proba[:, k] * c
        return scoring_value(scoring, y, score, proba=proba, classes=model.classes, sample_weight=w)
    return scoring_value(scoring, y, model.predict(A), sample_weight=w)


def permutation_importance_cv(
    spec: ModelSpec | str,
    X: pd.DataFrame,
    labels: Labels,
    cv: Any,
    *,
    n_repeats: int = 3,
    seed: int = 0,
    scoring: str | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Mean drop in out-of-sample score when each feature is shuffled, over purged CV splits.

    Row i of `X` holds the features of label i. `cv` is a splitter with `split(t0, t1)`
    (`PurgedKFold`, `CombinatorialPurgedCV`).
    Each split fits a fresh model on its training rows (weighted by `labels.weight`),
    then shuffles one feature at a time on the test rows `n_repeats` times. `scoring`
    defaults to "neg_log_loss" (classification) or "r2" (regression), weighted by
    `labels.weight` (Lopez de Prado's MDA). Columns: feature, importance (mean drop),
    std (over splits x repeats); sorted by importance, highest first.
    """
    if len(X) != len(labels.y):
        raise ValueError(f"X holds {len(X)} rows but labels hold {len(labels.y)}")
    if n_repeats < 1:
        raise ValueError(f"n_repeats={n_repeats!r} is invalid: expected >= 1")
    task = labels.task
    scoring = scoring or ("neg_log_loss" if task == "classification" else "r2")
    y = np.asarray(labels.y, dtype=np.float64)
    w = np.asarray(labels.weight, dtype=np.float64)
    rng = np.random.default_rng(seed)
    drops: dict[str, list[float]] = {str(c): [] for c in X.columns}
    for train, test in cv.split(labels.t0, labels.t1):
        model = make_model(spec, task, seed=seed, n_jobs=n_jobs)
        model.fit(X.iloc[train], y[train], sample_weight=w[train])
        A = model.to_matrix(X.iloc[test]).copy()
        base = _score_rows(model, A, y[test], w[test], scoring)
        for j, name in enumerate(model.features):
            saved = A[:, j].copy()
            for _ in range(n_repeats):
                A[:, j] = rng.permutation(saved)
                drops[name].append(base - _score_rows(model, A, y[test], w[test], scoring))
            A[:, j] = saved
    rows = [
        (name, float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0.0)
        for name, d in drops.items()
    ]
    out = pd.DataFrame(rows, columns=["feature", "importance", "std"])
    return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def _combine_classes(model: Model, contrib: NDArray[np.float64]) -> NDArray[np.float64]:
    """(rows, K, F+1) class margins' contributions -> the centred class-value combination."""
    weights = model.classes - model.classes.mean()
    return np.einsum("nkf,k->nf", contrib, weights)


def _native_contributions(model: Model, A: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """TreeSHAP contributions (rows, F+1) from LightGBM / XGBoost, else None."""
    n, f = A.shape
    if model.spec.kind == "lightgbm":
        raw = np.asarray(model.estimator.booster_.predict(A, pred_contrib=True), dtype=np.float64)
        if raw.shape[1] != f + 1:
            raw = raw.reshape(n, -1, f + 1)
    elif model.spec.kind == "xgboost":
        import xgboost

        booster = model.estimator.get_booster()
        dm = xgboost.DMatrix(A, missing=np.nan)
        raw = np.asarray(booster.predict(dm, pred_contribs=True), dtype=np.float64)
    else:
        return None
    return _combine_classes(model, raw) if raw.ndim == 3 else raw


def shap_values(model: Model, X: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Per-row SHAP contributions: columns = model features + "bias" (module docstring)."""
    A = model.to_matrix(X)
    contrib = _native_contributions(model, A)
    if contrib is None:
        import shap

        rng = np.random.default_rng(seed)
        background = A[rng.choice(A.shape[0], size=min(100, A.shape[0]), replace=False)]
        explainer = shap.Explainer(
            model.predict, shap.maskers.Independent(background, max_samples=100), seed=seed
        )
        explanation = explainer(A)
        base = np.broadcast_to(np.asarray(explanation.base_values, dtype=np.float64), (A.shape[0],))
        contrib = np.column_stack([np.asarray(explanation.values, dtype=np.float64), base])
    index = X.index if isinstance(X, pd.DataFrame) else None
    return pd.DataFrame(contrib, columns=[*model.features, "bias"], index=index)


def shap_importance(
    model: Model, X: pd.DataFrame, *, max_rows: int = 2000, seed: int = 0
) -> pd.Series:
    """Mean |SHAP value| per feature, highest first, over at most `max_rows` rows of X.

    More rows are subsampled (seeded): model-agnostic SHAP costs many model calls per row.
    """
    if len(X) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
        X = X.iloc[rows]
    values = shap_values(model, X, seed=seed).drop(columns="bias")
    out = values.abs().mean().sort_values(ascending=False, kind="stable")
    out.name = "shap_importance"
    return out
