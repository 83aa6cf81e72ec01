"""Evaluate a registered model on data: prediction scores, IC, SHAP and the trading result.

```python
from sapphire.ml.evaluate import evaluate

ev = evaluate("btc-tb@champion", bars)            # the model as registered
ev = evaluate("btc-tb", bars, retrain="sliding")  # walk-forward retraining on the recipe
ev.ic, ev.backtest.metrics, ev.report("out.html")
```

With a fixed model, rows inside the model's training range are in-sample: the result
says so (`in_sample_rows`) and the report warns. Walk-forward retraining never scores a
bar with a model that saw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sapphire.ml.strategy import ResolvedModel, feature_frame, primary_side, primary_signals
from sapphire.strategy.base import Bars

__all__ = ["EvaluationResult", "evaluate"]


@dataclass(eq=False)
class EvaluationResult:
    """What a model did on some data, out of sample where the data allows."""

    ref: str
    resolved: ResolvedModel
    scores: pd.Series  # per bar; NaN where the strategy had no score
    prediction: dict[str, float]  # classification / regression scores against the labels
    ic: dict[str, float]  # ic, rank_ic and per-day ic_mean, ic_std, icir
    ic_daily: pd.Series  # rank IC per day
    shap: pd.Series  # mean |SHAP| per feature on the evaluated rows
    backtest: Any  # BacktestResult of the ml strategy, net of fees
    in_sample: dict[str, Any] | None  # `in_sample_window` of the fixed model (None: none)
    retrain: list[dict[str, int]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def in_sample_rows(self) -> int:
        """Scored bars inside the fixed model's training window (0 with retraining)."""
        return 0 if self.in_sample is None else int(self.in_sample["bars"])

    def summary(self) -> dict[str, Any]:
        """Plain JSON-able summary (model, version, prediction, IC and backtest metrics)."""
        v = self.resolved.version
        return {
            "model": v.name,
            "version": int(v.version),
            "aliases": list(v.aliases),
            "params": dict(self.params),
            "rows_scored": int(self.scores.notna().sum()),
            "in_sample_rows": self.in_sample_rows,
            "in_sample": self.in_sample,
            "prediction": dict(self.prediction),
            "ic": dict(self.ic),
            "backtest": {k: self.backtest.metrics[k] for k in _BACKTEST_KEYS},
            "cv": dict(v.metrics.get("cv", {})),
            "retrain_blocks": len(self.retrain),
        }

    def report(self, path: str | Path | None = None) -> Path:
        """Write the HTML report (CV folds, IC over time, importance, equity)."""
        from sapphire.ml.report import evaluation_report

        return evaluation_report(self, path)


_BACKTEST_KEYS = (
    "total_return", "sharpe", "sortino", "max_drawdown", "n_trades", "win_rate", "fees",
)  # fmt: skip


def evaluate(
    ref: str,
    bars: Bars,
    *,
    threshold: float | None = None,
    exit_threshold: float | None = None,
    short: bool | None = None,
    fee: float | None = None,
    retrain: str = "none",
    train_bars: int = 20_000,
    retrain_every: int = 5_000,
    registry: Any = None,
    record: bool = True,
) -> EvaluationResult:
    """Score `bars` with the model (or walk-forward retrained models), backtest the `ml`
    strategy on them net of fees, and (with `record`) store the backtest metrics with the
    version."""
    from sapphire.backtest import Backtest
    from sapphire.ml.scores import (
        classification_scores,
        ic_series,
        information_coefficient,
        regression_scores,
    )
    from sapphire.ml.strategy import MLStrategy, default_registry, resolve_model

    reg = registry if registry is not None else default_registry()
    resolved = resolve_model(ref, reg)
    recipe = resolved.recipe
    params: dict[str, Any] = {
        "threshold": recipe.threshold if threshold is None else threshold,
        "exit_threshold": recipe.exit_threshold if exit_threshold is None else exit_threshold,
        "short": recipe.short if short is None else short,
        "retrain": retrain,
    }
    if retrain != "none":
        params.update(train_bars=train_bars, retrain_every=retrain_every)
    cost = recipe.fee if fee is None else fee
    # all of equity on each signal, no margin limit: what the CV path metrics measure too
    bt = Backtest(
        bars, MLStrategy, fee=cost, size=1.0, size_mode="equity", leverage=None,
        model=f"{resolved.version.name}@{resolved.version.version}", registry=str(reg.url),
        **params,
    )  # fmt: skip
    result = bt.run()
    strategy = bt.strategy
    assert isinstance(strategy, MLStrategy)
    score = strategy.last_scores
    index = pd.DatetimeIndex(pd.to_datetime(bars.time, utc=True))
    side = None
    if recipe.label.kind == "meta":
        side = primary_side(primary_signals(resolved.version.lineage, bars), len(bars))
    labels = recipe.label.make(bars, side=side)
    s = score[labels.t0]
    ok = np.isfinite(s) & np.isfinite(labels.y)
    if ok.sum() < 2:
        raise ValueError(
            f"{ref}: fewer than 2 scored, labelled bars in the data ({len(bars)} bars)"
        )
    y, s_ok, ret = labels.y[ok], s[ok], labels.ret[ok]
    times = index[labels.t0[ok]]
    if labels.task == "classification":
        prediction = classification_scores(y, s_ok)
    else:
        prediction = regression_scores(y, s_ok)
    ic = information_coefficient(s_ok, ret, times=times)
    daily = ic_series(s_ok, ret, times)
    X = feature_frame(resolved, bars)
    rows = np.flatnonzero(np.isfinite(score))
    if len(rows) > 5000:
        rows = np.sort(np.random.default_rng(0).choice(rows, 5000, replace=False))
    from sapphire.ml.explain import shap_importance

    shap = shap_importance(resolved.model, X.iloc[rows]) if len(rows) else pd.Series(dtype=float)
    ev = EvaluationResult(
        ref=ref, resolved=resolved, scores=pd.Series(score, index=index, name="score"),
        prediction=prediction, ic=ic, ic_daily=daily, shap=shap, backtest=result,
        in_sample=strategy.in_sample, retrain=list(strategy.info.get("retrain", [])), params=params,
    )  # fmt: skip
    if record:
        reg.set_metrics(
            f"{resolved.version.name}@{resolved.version.version}",
            {"backtest": _record(ev, bars)},
        )
    return ev


def _record(ev: EvaluationResult, bars: Bars) -> Mapping[str, Any]:
    from sapphire.ml.pipeline import data_fingerprint

    out: dict[str, Any] = {k: ev.backtest.metrics[k] for k in _BACKTEST_KEYS}
    out["data"] = data_fingerprint(bars)
    out["params"] = dict(ev.params)
    out["in_sample_rows"] = ev.in_sample_rows
    return out
