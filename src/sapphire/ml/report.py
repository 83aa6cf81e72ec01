"""The HTML report of a model evaluation: one self-contained, offline Plotly page.

Sections: the model and its lineage, prediction scores and IC, the cross-validation folds
and CPCV path metrics recorded at training, the rank IC per day over the evaluated data,
feature importance (permutation importance on purged CV from training, mean |SHAP| on the
evaluated rows) and the equity and drawdown of the `ml` strategy, net of fees. Pages, tables
and figures come from the report toolkit (`sapphire.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sapphire.backtest.metrics import format_metric
from sapphire.report import (
    Page,
    drawdown_trace,
    epoch_ms,
    equity_trace,
    format_number,
    frame_table,
    kv_table,
    report_path,
    style_figure,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from sapphire.ml.evaluate import EvaluationResult

IDS = {
    "model": "model-lineage",
    "scores": "prediction-scores",
    "folds": "cv-folds",
    "paths": "cv-paths",
    "ic": "ic-over-time",
    "importance": "feature-importance",
    "equity": "model-equity",
}
TOP_FEATURES = 25
_FOLD_KEYS = ("accuracy", "balanced_accuracy", "f1", "log_loss", "roc_auc", "mse", "r2", "ic",
              "rank_ic")  # fmt: skip


def _ic_figure(daily: pd.Series) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Bar(x=epoch_ms(daily.index), y=daily.to_numpy(), name="rank IC per day",
                         marker={"color": "#1f77b4"}))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=epoch_ms(daily.index), y=daily.fillna(0.0).cumsum().to_numpy(), name="cumulative rank IC",
        mode="lines", yaxis="y2", line={"color": "#d62728"},
    ))  # fmt: skip
    fig.update_xaxes(type="date")
    fig.update_layout(
        yaxis={"title": "rank IC"},
        yaxis2={"title": "cumulative", "overlaying": "y", "side": "right"},
    )
    return style_figure(fig, 380)


def _importance_figure(perm: pd.Series, shap: pd.Series) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "permutation importance (purged CV, training)", "mean |SHAP| (evaluated rows)",
    ))  # fmt: skip
    for col, series, color in ((1, perm, "#2ca02c"), (2, shap, "#9467bd")):
        top = series.head(TOP_FEATURES)[::-1]
        fig.add_trace(
            go.Bar(
                x=top.to_numpy(),
                y=[str(i) for i in top.index],
                orientation="h",
                marker={"color": color},
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    return style_figure(fig, max(380, 18 * min(TOP_FEATURES, max(len(perm), len(shap))) + 80))


def _equity_figure(result: Any) -> go.Figure:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                        vertical_spacing=0.04)  # fmt: skip
    fig.add_trace(equity_trace(result.equity), row=1, col=1)
    fig.add_trace(drawdown_trace(result.drawdown), row=2, col=1)
    fig.update_xaxes(type="date")
    return style_figure(fig, 480)


def evaluation_report(ev: EvaluationResult, path: str | Path | None = None) -> Path:
    """Write the evaluation's HTML report (default under reports/) and return its path."""
    v = ev.resolved.version
    target = report_path(path, f"ml-{v.name}-v{v.version}")
    page = Page()
    lineage = v.lineage
    data = lineage.get("data", {})
    recipe = lineage.get("recipe", {})
    page.h2("Model")
    page.html(kv_table(IDS["model"], {
        "model": f"{v.name} v{v.version}",
        "aliases": ", ".join(v.aliases) or "none",
        "trained on": f"{data.get('start')} → {data.get('end')} ({data.get('rows')} bars)",
        "data sha256": data.get("sha256", ""),
        "label": recipe.get("label", {}),
        "estimator": recipe.get("model", {}),
        "features": f"{len(lineage.get('features', []))} columns",
        "code version": lineage.get("code_version", ""),
        "evaluation": ev.params,
    }))  # fmt: skip
    if ev.in_sample is not None:
        from sapphire.ml.strategy import in_sample_warning

        page.note(f"Warning: {in_sample_warning(ev.in_sample)}.", "in-sample-warning")
    page.h2("Predictions")
    scores = {**ev.prediction, **ev.ic}
    page.html(kv_table(IDS["scores"], {k: format_number(x) for k, x in scores.items()}))
    folds = v.metrics.get("folds")
    if folds:
        page.h2("Cross-validation folds (training)")
        frame = pd.DataFrame(folds)
        cols = [c for c in ("split", "train_rows", "test_rows", "test_groups", "test_start",
                            "test_end", *_FOLD_KEYS) if c in frame.columns]  # fmt: skip
        page.html(frame_table(IDS["folds"], frame[cols]))
    paths = v.metrics.get("paths")
    if paths:
        page.h2("Out-of-sample CPCV paths, net of fees (training)")
        page.html(frame_table(IDS["paths"], pd.DataFrame(paths)))
    page.h2("Information coefficient over time")
    page.note(f"Rank IC of the score against the label's realised return, per day "
              f"(ICIR {format_number(ev.ic.get('icir'))}).")  # fmt: skip
    page.figure(_ic_figure(ev.ic_daily), IDS["ic"])
    page.h2("Feature importance")
    perm = pd.Series(v.metrics.get("importance", {}), dtype=float).sort_values(ascending=False)
    page.figure(_importance_figure(perm, ev.shap), IDS["importance"])
    page.h2("Equity of the model strategy, net of fees")
    metrics = ev.backtest.metrics
    keys = ("total_return", "sharpe", "max_drawdown", "n_trades", "fees")
    page.note(", ".join(f"{k.replace('_', ' ')} {format_metric(k, metrics[k])}" for k in keys))
    page.figure(_equity_figure(ev.backtest), IDS["equity"])
    return page.write(
        target,
        f"Sapphire model {v.name} v{v.version}",
        f"Model {v.name} v{v.version}",
        f"{len(ev.scores)} bars evaluated, {int(ev.scores.notna().sum())} scored",
    )
