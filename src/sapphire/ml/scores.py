"""Out-of-sample scores for model predictions: classification, regression, information coefficient.

`score` is what `Model.predict` returns, the score a strategy trades (the expected class
value for classifiers, e.g. P(+1) - P(-1) for classes {-1, 0, 1}). Without probabilities
the predicted class is the class nearest to the score (0.5 splits {0, 1}, 0 splits
{-1, 1}); with `proba` it is the most probable class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

# higher is better for every name; `neg_` names are negated losses
CLASSIFICATION_SCORINGS = ("neg_log_loss", "accuracy", "balanced_accuracy", "f1", "roc_auc")
REGRESSION_SCORINGS = ("r2", "neg_mse", "neg_mae")
CORRELATION_SCORINGS = ("ic", "rank_ic")


def _vector(name: str, values: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if n is not None and a.size != n:
        raise ValueError(f"{name} holds {a.size} values, expected {n}")
    return a


def _finite(name: str, a: NDArray[np.float64]) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}[{i}] = {a[i]} is not finite")


def predicted_class(
    score: ArrayLike, classes: ArrayLike, proba: ArrayLike | None = None
) -> NDArray[np.float64]:
    """The predicted class per row: argmax of `proba`, else the class nearest to `score`."""
    c = np.asarray(classes, dtype=np.float64)
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)
        return c[np.argmax(p, axis=1)]
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    return c[np.argmin(np.abs(s[:, None] - c[None, :]), axis=1)]


def classification_scores(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    proba: ArrayLike | None = None,
    classes: Sequence[float] | NDArray[np.float64] | None = None,
    sample_weight: ArrayLike | None = None,
) -> dict[str, float]:
    """accuracy, balanced_accuracy, f1 (macro), and log_loss / roc_auc where defined.

    `classes` (default: the sorted distinct `y_true`) name the columns of `proba`.
    log_loss needs `proba`. roc_auc ranks `score` between the highest and the lowest
    class, on the rows of those two classes (for {-1, 0, 1}: up vs down, ignoring 0);
    it needs both present.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    y = _vector("y_true", y_true)
    s = _vector("score", score, y.size)
    _finite("y_true", y)
    _finite("score", s)
    c = np.unique(y) if classes is None else np.asarray(classes, dtype=np.float64)
    w = None if sample_weight is None else _vector("sample_weight", sample_weight, y.size)
    p = None
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)
        if p.shape != (y.size, c.size):
            raise ValueError(f"proba has shape {p.shape}, expected ({y.size}, {c.size}) for {c}")
    unknown = np.setdiff1d(y, c)
    if unknown.size:
        raise ValueError(f"y_true holds classes {unknown} not in classes {c}")
    pred = predicted_class(s, c, p)
    out = {
        "accuracy": float(accuracy_score(y, pred, sample_weight=w)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred, sample_weight=w)),
        "f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), sample_weight=w)),
    }
    if p is not None:
        out["log_loss"] = float(log_loss(y, p, labels=c, sample_weight=w))
    ends = (y == c.min()) | (y == c.max())
    if c.size >= 2 and np.unique(y[ends]).size == 2:
        ww = None if w is None else w[ends]
        out["roc_auc"] = float(roc_auc_score(y[ends] == c.max(), s[ends], sample_weight=ww))
    return out


def regression_scores(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> dict[str, float]:
    """mse, mae and r2 of predictions."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = _vector("y_true", y_true)
    f = _vector("y_pred", y_pred, y.size)
    _finite("y_true", y)
    _finite("y_pred", f)
    w = None if sample_weight is None else _vector("sample_weight", sample_weight, y.size)
    return {
        "mse": float(mean_squared_error(y, f, sample_weight=w)),
        "mae": float(mean_absolute_error(y, f, sample_weight=w)),
        "r2": float(r2_score(y, f, sample_weight=w)) if y.size > 1 else float("nan"),
    }


def _pairs(
    pred: ArrayLike, target: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    p = _vector("pred", pred)
    t = _vector("target", target, p.size)
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep], keep


def _corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _rank_corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    ra = np.asarray(pd.Series(a).rank(), dtype=np.float64)
    rb = np.asarray(pd.Series(b).rank(), dtype=np.float64)
    return _corr(ra, rb)


def _times(times: ArrayLike, n: int) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(times), utc=True))
    if idx.size != n:
        raise ValueError(f"times holds {idx.size} values, expected {n}")
    return idx


def ic_series(
    pred: ArrayLike, target: ArrayLike, times: ArrayLike, period: str = "1D"
) -> pd.Series:
    """Rank IC (Spearman) of pred vs target within each period, indexed by period start.

    `times` are int64 UTC ns or datetimes; NaN pairs are dropped; a period with fewer
    than 3 pairs or a constant side is left out.
    """
    p, t, keep = _pairs(pred, target)
    idx = _times(times, keep.size)[keep]
    try:
        grouper = pd.Grouper(freq=period)
        frame = pd.DataFrame({"p": p, "t": t}, index=idx)
        groups = frame.groupby(grouper)
    except (ValueError, TypeError):
        raise ValueError(f"period={period!r} is not a pandas frequency like '1D' or '4h'") from None
    values = {
        start: _rank_corr(g["p"].to_numpy(), g["t"].to_numpy()) for start, g in groups if len(g)
    }
    out = pd.Series(values, dtype=np.float64, name="rank_ic")
    return out[out.notna()]


def information_coefficient(
    pred: ArrayLike, target: ArrayLike, times: ArrayLike | None = None, period: str = "1D"
) -> dict[str, float]:
    """ic (Pearson) and rank_ic (Spearman); with `times` also per-period rank IC statistics.

    Per period (see `ic_series`): ic_mean, ic_std, icir = ic_mean / ic_std, ic_tstat =
    icir * sqrt(n_periods) and n_periods.
    """
    p, t, _ = _pairs(pred, target)
    out = {"ic": _corr(p, t), "rank_ic": _rank_corr(p, t), "n": float(p.size)}
    if times is not None:
        series = ic_series(pred, target, times, period)
        n = int(series.size)
        mean = float(series.mean()) if n else float("nan")
        std = float(series.std(ddof=1)) if n > 1 else float("nan")
        icir = mean / std if n > 1 and std > 0 else float("nan")
        out.update(
            ic_mean=mean, ic_std=std, icir=icir, ic_tstat=icir * np.sqrt(n), n_periods=float(n)
        )
    return out


def scoring_value(
    scoring: str,
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    proba: ArrayLike | None = None,
    classes: Any = None,
    sample_weight: ArrayLike | None = None,
) -> float:
    """One score by name, higher is better (`neg_` names negate a loss)."""
    if scoring in CORRELATION_SCORINGS:
        return information_coefficient(score, y_true)[scoring]
    if scoring in REGRESSION_SCORINGS:
        r = regression_scores(y_true, score, sample_weight=sample_weight)
        return -r[scoring[4:]] if scoring.startswith("neg_") else r[scoring]
    if scoring in CLASSIFICATION_SCORINGS:
        c = classification_scores(
            y_true, score, proba=proba, classes=classes, sample_weight=sample_weight
        )
        key = scoring[4:] if scoring.startswith("neg_") else scoring
        if key not in c:
            raise ValueError(f"scoring={scoring!r} is undefined here (needs proba / both classes)")
        return -c[key] if scoring.startswith("neg_") else c[key]
    names = CLASSIFICATION_SCORINGS + REGRESSION_SCORINGS + CORRELATION_SCORINGS
    raise ValueError(f"scoring={scoring!r} is unknown: expected one of {names}")
