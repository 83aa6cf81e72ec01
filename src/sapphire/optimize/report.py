"""HTML reports of a study and of a walk-forward: one self-contained, offline Plotly page.

A study report shows the trial history (every complete trial's objective and the best
so far), parameter importance (Optuna's PED-ANOVA on an in-memory study rebuilt from
the stored trials; fANOVA would need scikit-learn), the Pareto front of a
two-objective study, the deflated Sharpe ratio and PBO with how to read them, a
parameter-stability heatmap and Monte Carlo distributions of the best trial's trades,
and the walk-forward equity when given one.
A walk-forward report shows the stitched out-of-sample equity with the fold
boundaries and the per-fold table. Pages, tables and figure style come from the report
toolkit (`sapphire.report`); the metrics table and formatting are the backtest report's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sapphire.backtest.metrics import format_metric
from sapphire.backtest.report import metrics_table
from sapphire.report import (
    Page,
    cell,
    columns,
    epoch_ms,
    equity_trace,
    format_number,
    format_time,
    grid_table,
    heading,
    kv_table,
    plain_text,
    report_path,
    style_figure,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from sapphire.backtest.result import BacktestResult
    from sapphire.optimize.study import StudyResult
    from sapphire.optimize.walkforward import WalkForwardResult

DSR_THRESHOLD = 0.95
MONTE_CARLO_RUNS = 1_000

# Element ids of the page's sections (tests and users can link to them).
IDS = {
    "history": "trial-history",
    "importance": "param-importance",
    "pareto": "pareto-front",
    "overfitting": "overfitting",
    "stability": "param-stability",
    "monte_carlo": "monte-carlo",
    "wf_equity": "wf-equity",
    "wf_folds": "wf-folds",
    "top": "top-trials",
}

_CSS = ".verdict { font-weight: 500; }\n"


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --- walk-forward --------------------------------------------------------------------


def _walkforward_figure(wf: WalkForwardResult) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(equity_trace(wf.equity, "out-of-sample equity (stitched)"))
    for fold in wf.folds:
        start = float(epoch_ms([fold.test_start])[0])
        fig.add_vline(x=start, line={"color": "#9aa5b1", "width": 1, "dash": "dot"})
        fig.add_annotation(
            x=start,
            y=1.0,
            yref="paper",
            text=f"fold {fold.number}",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 10, "color": "#52606d"},
        )
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text="equity")
    return style_figure(fig, 450)


_FOLD_COLUMNS = (
    ("total_return", "return"),
    ("sharpe", "Sharpe"),
    ("max_drawdown", "max DD"),
    ("n_trades", "trades"),
)


def _folds_table(wf: WalkForwardResult) -> str:
    head = ["fold", "train", "test", "best parameters", "best value"]
    head += [f"IS {label}" for _, label in _FOLD_COLUMNS]
    head += [f"OOS {label}" for _, label in _FOLD_COLUMNS]
    head += ["efficiency", "model-trained OOS bars"]
    rows = []
    for f in wf.folds:
        params = (
            "no feasible trial (flat)"
            if f.best_params is None
            else ", ".join(f"{k}={v}" for k, v in f.best_params.items())
        )
        value = f.best_value
        shown_value = (
            "—"
            if value is None
            else ", ".join(f"{v:.4g}" for v in value)
            if isinstance(value, list)
            else f"{value:.4g}"
        )
        cells = [
            cell(str(f.number)),
            cell(f"{format_time(f.train_start)} → {format_time(f.train_end)}"),
            cell(f"{format_time(f.test_start)} → {format_time(f.test_end)}"),
            cell(params),
            cell(shown_value, numeric=True),
        ]
        for metrics in (f.in_sample, f.out_of_sample):
            cells += [
                cell(format_metric(key, metrics.get(key)), numeric=True) for key, _ in _FOLD_COLUMNS
            ]
        cells.append(cell("—" if f.efficiency is None else f"{f.efficiency:.2f}", numeric=True))
        # test bars inside a fixed model's training window: not out of sample
        trained = (f.model_overlap or {}).get("test_window_bars")
        cells.append(cell("—" if trained is None else f"{trained:,}", numeric=True))
        rows.append(f'<tr class="fold-row" data-fold="{f.number}">{"".join(cells)}</tr>')
    return grid_table(IDS["wf_folds"], head, rows)


def _walkforward_section(page: Page, wf: WalkForwardResult) -> None:
    eff = "—" if wf.efficiency is None else f"{wf.efficiency:.2f}"
    page.h2("Walk-forward: out-of-sample equity")
    page.note(
        f"{len(wf.folds)} folds ({'anchored' if wf.anchored else 'rolling'}; train {wf.train}, "
        f"test {wf.test}, step {wf.step}); each fold optimised on its train window and "
        "traded the following test window with the best parameters. Walk-forward "
        f"efficiency (annualised OOS return / mean annualised IS return): {eff}."
    )
    caption = wf.caption()
    page.note("" if caption is None else f"Out-of-sample runs: {caption}.", "wf-settings")
    for index, warning in enumerate(wf.warnings):
        page.note(f"Warning: {warning}", f"wf-warning-{index}")
    page.figure(_walkforward_figure(wf), IDS["wf_equity"])
    page.h2("Walk-forward folds")
    page.html(_folds_table(wf))


def walkforward_report(wf: WalkForwardResult, path: str | Path | None = None) -> Path:
    """Write the walk-forward's HTML report (default under reports/) and return its path."""
    target = report_path(path, f"walkforward-{wf.name}")
    page = Page(_CSS)
    page.h2("Out-of-sample metrics (stitched)")
    page.html(metrics_table(wf.metrics))
    _walkforward_section(page, wf)
    page.h2("Configuration")
    page.html(kv_table("config", wf.config))
    subtitle = "no folds"
    if len(wf.equity):
        subtitle = (
            f"{wf.symbol}: out of sample {format_time(wf.equity.index[0])} → "
            f"{format_time(wf.equity.index[-1])} UTC, {wf.n_trials:,} trials in "
            f"{len(wf.folds)} folds, {wf.elapsed_s:.1f} s"
        )
    return page.write(
        target,
        f"Sapphire · walk-forward · {wf.name}",
        f"Walk-forward {wf.name}: {wf.strategy}",
        subtitle,
    )


# --- study ---------------------------------------------------------------------------


def _complete(study: StudyResult) -> list[Any]:
    return [
        t
        for t in study.trials
        if t.state == "complete" and t.values and all(_finite(v) is not None for v in t.values)
    ]


def _top_table(study: StudyResult) -> str:
    """The best distinct parameter sets (the best trial of each), or the Pareto front."""
    top = study.top_trials()
    names = list(top[0].params) if top else []
    head = ["trial", *study.objectives, *names, "trades"]
    rows = [
        "<tr>"
        + cell(str(t.number))
        + "".join(cell(format_number(v), numeric=True) for v in t.values or [])
        + "".join(cell(plain_text(t.params.get(k)), numeric=True) for k in names)
        + cell(str(int(t.metrics.get("n_trades", 0))), numeric=True)
        + "</tr>"
        for t in top
    ]
    return grid_table(IDS["top"], head, rows)


def _history_figure(study: StudyResult) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    done = _complete(study)
    n_obj = len(study.objectives)
    fig = make_subplots(
        rows=n_obj, cols=1, shared_xaxes=True, vertical_spacing=0.06,
        subplot_titles=[str(o) for o in study.objectives],
    )  # fmt: skip
    numbers = np.array([t.number for t in done], dtype=np.int64)
    for i, (name, direction) in enumerate(zip(study.objectives, study.directions, strict=True)):
        values = np.array([t.values[i] for t in done], dtype=np.float64)
        order = np.argsort(numbers, kind="stable")
        xs, ys = numbers[order], values[order]
        best = np.maximum.accumulate(ys) if direction == "maximize" else np.minimum.accumulate(ys)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="markers", name=f"{name} per trial",
                marker={"size": 5, "color": "#7b8794", "opacity": 0.7},
            ),
            row=i + 1, col=1,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=xs, y=best, mode="lines", name=f"best {name} so far", line_shape="hv",
                line={"color": "#c62828", "width": 2},
            ),
            row=i + 1, col=1,
        )  # fmt: skip
    fig.update_xaxes(title_text="trial", row=n_obj, col=1)
    return style_figure(fig, 320 + 220 * (n_obj - 1))


def _distributions(trials: Sequence[Any]) -> dict[str, Any]:
    """Optuna distributions inferred from the values the trials took (constants dropped)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    names = set.intersection(*(set(t.params) for t in trials)) if trials else set()
    out: dict[str, Any] = {}
    for name in sorted(names, key=lambda n: list(trials[0].params).index(n)):
        values = [t.params[name] for t in trials]
        distinct = {repr(v) for v in values}
        if len(distinct) < 2:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and all(isinstance(v, int) for v in values):
            out[name] = IntDistribution(min(values), max(values))
        elif numeric:
            out[name] = FloatDistribution(float(min(values)), float(max(values)))
        else:
            choices: list[Any] = []
            for v in values:
                if v not in choices:
                    choices.append(v)
            out[name] = CategoricalDistribution(choices)
    return out


def param_importance(study: StudyResult, objective: int = 0) -> dict[str, float]:
    """PED-ANOVA importance of each varied parameter for one objective ({} if too few trials).

    The stored trials are replayed into an in-memory Optuna study (distributions taken
    from the values seen), so this works for any storage and needs no extra package.
    """
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    done = _complete(study)
    dists = _distributions(done)
    if len(done) < 2 or not dists:
        return {}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # One objective at a time: a single-objective replay keeps its direction.
        direction: Any = study.directions[objective]
        replay = optuna.create_study(direction=direction)
        for t in done:
            replay.add_trial(
                optuna.trial.create_trial(
                    params={k: t.params[k] for k in dists},
                    distributions=dists,
                    value=float(t.values[objective]),
                )
            )
        importances = get_param_importances(replay, evaluator=PedAnovaImportanceEvaluator())
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {str(k): float(v) for k, v in importances.items()}


def _importance_figure(importance: Mapping[str, float], objective: str) -> go.Figure:
    import plotly.graph_objects as go

    names = list(importance)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[importance[n] for n in names], y=names, orientation="h",
            marker={"color": "#1f77b4"}, name=f"importance for {objective}",
        )
    )  # fmt: skip
    fig.update_xaxes(title_text=f"PED-ANOVA importance ({objective})", rangemode="tozero")
    return style_figure(fig, 120 + 40 * len(names))


def _pareto_figure(study: StudyResult) -> go.Figure:
    import plotly.graph_objects as go

    done = _complete(study)
    front = {t.number for t in study.best_trials}
    xname, yname = study.objectives[0], study.objectives[1]
    others = [t for t in done if t.number not in front]
    best = sorted((t for t in done if t.number in front), key=lambda t: t.values[0])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[t.values[0] for t in others], y=[t.values[1] for t in others], mode="markers",
            name="trials", marker={"size": 6, "color": "#9aa5b1"},
            text=[f"trial {t.number}" for t in others],
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[t.values[0] for t in best], y=[t.values[1] for t in best], mode="lines+markers",
            name="Pareto front", marker={"size": 9, "color": "#c62828"},
            line={"color": "#c62828", "dash": "dot"},
            text=[f"trial {t.number}: {t.params}" for t in best],
        )
    )  # fmt: skip
    fig.update_xaxes(title_text=f"{xname} ({study.directions[0]})")
    fig.update_yaxes(title_text=f"{yname} ({study.directions[1]})")
    return style_figure(fig, 480)


def dsr_verdict(dsr: float | None, n_trials: int) -> str:
    """One line on how to read the deflated Sharpe ratio."""
    if dsr is None or not math.isfinite(dsr):
        return (
            "Deflated Sharpe ratio not computable (it needs at least two complete trials "
            "with return statistics)."
        )
    if dsr >= DSR_THRESHOLD:
        return (
            f"DSR {dsr:.3f} ≥ {DSR_THRESHOLD}: the best trial's Sharpe ratio stays "
            f"significant after allowing for {n_trials} trials and non-normal returns."
        )
    return (
        f"DSR {dsr:.3f} < {DSR_THRESHOLD}: a Sharpe ratio this high is within what the best "
        f"of {n_trials} skill-less trials reaches by luck; do not trust the winner yet."
    )


def pbo_verdict(pbo: float | None) -> str:
    """One line on how to read the probability of backtest overfitting."""
    if pbo is None or not math.isfinite(pbo):
        return "PBO not computable (it needs at least two complete trials)."
    if pbo < 0.1:
        level = "low: the in-sample winner usually stays above the median out of sample"
    elif pbo < 0.5:
        level = "moderate: the in-sample winner often falls below the median out of sample"
    else:
        level = (
            "high: the in-sample winner falls below the median out of sample in most "
            "splits, so the selection is likely overfit"
        )
    return f"PBO {pbo:.2f} ({level})."


def _overfitting_table(study: StudyResult) -> str:
    rows = [
        ("Trials (N)", f"{study.n_trials:,}"),
        ("Complete trials", f"{len(_complete(study)):,}"),
        ("Deflated Sharpe ratio", "—" if study.dsr is None else f"{study.dsr:.4f}"),
        ("PBO (CSCV)", "—" if study.pbo is None else f"{study.pbo:.4f}"),
    ]
    verdicts = (
        f'<p class="verdict" id="dsr-verdict">{escape(dsr_verdict(study.dsr, study.n_trials))}'
        f'</p><p class="verdict" id="pbo-verdict">{escape(pbo_verdict(study.pbo))}</p>'
    )
    return kv_table(IDS["overfitting"], dict(rows), numeric=True) + verdicts


def _numeric_params(study: StudyResult, importance: Mapping[str, float]) -> list[str]:
    done = _complete(study)
    dists = _distributions(done)
    numeric = [
        name
        for name, dist in dists.items()
        if type(dist).__name__ in ("IntDistribution", "FloatDistribution")
    ]
    ranked = [n for n in importance if n in numeric]
    return ranked + [n for n in numeric if n not in ranked]


def _stability_figure(study: StudyResult, x: str, y: str) -> tuple[go.Figure, str] | None:
    """C's stability heatmap of the first objective over `x` and `y`, with its score."""
    from sapphire.optimize.robustness import stability_figure, stability_grid, stability_score

    done = _complete(study)
    frame = pd.DataFrame(
        {x: [t.params[x] for t in done], y: [t.params[y] for t in done],
         "value": [t.values[0] for t in done]}
    )  # fmt: skip
    grid = stability_grid(frame, x, y)
    if grid.empty:
        return None
    maximize = study.directions[0] == "maximize"
    fig = stability_figure(grid, f"mean {study.objectives[0]} by {x} and {y}", maximize)
    score = stability_score(grid, maximize)
    shown = "not computable" if score is None else f"{score:.2f}"
    fig.update_layout(height=480, template="plotly_white")
    return fig, shown


@dataclass
class _TradeSample:
    pnl: np.ndarray
    cash: float
    source: str


def _best_trial_trades(
    study: StudyResult, walkforward: WalkForwardResult | None
) -> _TradeSample | None:
    """The trades Monte Carlo resamples: the walk-forward's OOS trades, else a re-run."""
    if walkforward is not None and len(walkforward.trades):
        scale = {f.number: f.scale for f in walkforward.folds}
        pnl = walkforward.trades["pnl"].to_numpy(dtype=np.float64)
        pnl = pnl * walkforward.trades["fold"].map(scale).fillna(1.0).to_numpy(dtype=np.float64)
        cash = float(walkforward.metrics.get("start_equity", 10_000.0))
        return _TradeSample(pnl, cash, "the walk-forward's out-of-sample trades")
    result = rerun_best_trial(study)
    if result is None or not len(result.trades):
        return None
    return _TradeSample(
        result.trades["pnl"].to_numpy(dtype=np.float64),
        float(result.config["cash"]),
        "the best trial's trades, re-run on the study's data",
    )


def rerun_best_trial(study: StudyResult, storage: str | None = None) -> BacktestResult | None:
    """Backtest the best trial again on the study's stored data and options.

    Returns None when the study has no complete trial or ran on in-memory data (a
    DataFrame or Bars, e.g. a walk-forward fold), which cannot be reloaded.
    """
    from sapphire.backtest.runner import Backtest
    from sapphire.optimize.storage import StoredStudy
    from sapphire.optimize.study_setup import plan_from_config

    if study.best_trial is None or not (study.config.get("data") or {}).get("source"):
        return None
    stored = StoredStudy(
        id=-1, name=study.name, strategy=study.strategy, objectives=list(study.objectives),
        directions=list(study.directions), config=dict(study.config),
        created_at=datetime.now(UTC), updated_at=datetime.now(UTC),
    )  # fmt: skip
    plan = plan_from_config(stored, _NoTrials(storage))  # type: ignore[arg-type]
    params = dict(study.best_params)
    return Backtest(plan.bars, plan.strategy, **{**plan.context_options, **params}).run()


class _NoTrials:
    """Stands in for a StudyStorage when only the data and options are rebuilt."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def load_trials(self, _stored: Any) -> list[Any]:
        return []


def _monte_carlo_figure(sample: _TradeSample) -> tuple[go.Figure, str]:
    """C's Monte Carlo histograms (shuffle and bootstrap) of the sample's trades."""
    from sapphire.optimize.robustness import monte_carlo, monte_carlo_figure

    results = [
        monte_carlo(sample.pnl, sample.cash, runs=MONTE_CARLO_RUNS, method=method, seed=0)
        for method in ("shuffle", "bootstrap")
    ]
    lines = [
        f"{r.method}: max drawdown p5 {r.summary['max_drawdown']['p5']:.2%}, median "
        f"{r.summary['max_drawdown']['p50']:.2%}; total return p5 "
        f"{r.summary['total_return']['p5']:.2%}, median {r.summary['total_return']['p50']:.2%}"
        for r in results
    ]
    note = (
        f"{MONTE_CARLO_RUNS:,} runs per method on {len(sample.pnl):,} trades "
        f"({sample.source}); shuffle reorders the trades, bootstrap draws them with "
        "replacement. " + "; ".join(lines) + "."
    )
    fig = monte_carlo_figure(*results)
    fig.update_layout(height=460, margin={"t": 80})  # keep C's title and bottom legend
    return fig, note


def study_report(
    study: StudyResult,
    path: str | Path | None = None,
    walkforward: WalkForwardResult | None = None,
) -> Path:
    """Write the study's HTML report (default under reports/) and return its path."""
    target = report_path(path, f"study-{study.name}")
    page = Page(_CSS)
    done = _complete(study)

    if walkforward is not None:
        page.note(
            f"Walk-forward {walkforward.name}: this report covers the study of its last fold "
            f"({len(walkforward.folds)} folds, {walkforward.n_trials:,} trials in all); the "
            "stitched out-of-sample equity and every fold are at the end.",
            "wf-note",
        )
    for index, warning in enumerate(study.warnings):
        page.note(f"Warning: {warning}", f"warning-{index}")
    caption = study.caption()
    page.note("" if caption is None else f"Every trial: {caption}.", "settings")
    page.h2("Summary")
    best_value = study.best_value
    summary: dict[str, Any] = {
        "strategy": study.strategy,
        "objectives": ", ".join(f"{o} ({d})" for o, d in zip(study.objectives, study.directions,
                                                            strict=True)),
        "trials": f"{study.n_trials:,}",
        **{f"{state} trials": f"{n:,}" for state, n in study.counts.items()},
        "space size": (f"{study.config['space_size']:,} valid parameter sets"
                       if study.config.get("space_size") else "not counted"),
        "best value": best_value,
        "elapsed": f"{study.elapsed_s:.1f} s",
    }  # fmt: skip
    page.html(
        columns(
            kv_table("summary", summary),
            heading("Best parameters") + kv_table("best-params", study.best_params),
        )
    )

    page.h2("Top parameter sets" if len(study.objectives) == 1 else "Pareto front trials")
    if done:
        page.html(_top_table(study))
        page.note("Each parameter set once, with its best trial.")
    else:
        page.note("No complete trial yet.", IDS["top"])

    page.h2("Overfitting statistics")
    page.html(_overfitting_table(study))

    page.h2("Trial history")
    if done:
        page.figure(_history_figure(study), IDS["history"])
    else:
        page.note("No complete trial yet.", IDS["history"])

    page.h2("Parameter importance")
    importance = param_importance(study)
    if importance:
        page.figure(_importance_figure(importance, study.objectives[0]), IDS["importance"])
        page.note(
            "PED-ANOVA (Optuna) on the complete trials: how much each parameter's "
            "distribution in the best 10% of trials differs from all trials (shares sum to 1)."
        )
    else:
        page.note(
            "Parameter importance needs at least two complete trials with varied parameters.",
            IDS["importance"],
        )

    if len(study.objectives) == 2:
        page.h2("Pareto front")
        page.figure(_pareto_figure(study), IDS["pareto"])

    page.h2("Parameter stability")
    numeric = _numeric_params(study, importance)
    stability = _stability_figure(study, numeric[0], numeric[1]) if len(numeric) >= 2 else None
    if stability is not None:
        page.figure(stability[0], IDS["stability"])
        page.note(
            f"Mean {study.objectives[0]} of the complete trials over the two most important "
            "numeric parameters (binned): a robust optimum sits on a plateau, not a spike. "
            f"Stability score (1 = plateau, 0 = lone spike): {stability[1]}."
        )
    else:
        page.note("The stability heatmap needs two varied numeric parameters.", IDS["stability"])

    page.h2("Monte Carlo")
    try:
        sample = _best_trial_trades(study, walkforward)
    except (ValueError, FileNotFoundError) as exc:  # the data moved or changed
        sample = None
        page.note(f"The best trial could not be re-run: {exc}")
    if sample is not None and len(sample.pnl) >= 2:
        fig, note = _monte_carlo_figure(sample)
        page.figure(fig, IDS["monte_carlo"])
        page.note(note)
    else:
        page.note("Monte Carlo needs at least two trades.", IDS["monte_carlo"])

    if walkforward is not None:
        _walkforward_section(page, walkforward)

    page.h2("Configuration")
    page.html(kv_table("config", study.config))
    return page.write(
        target,
        f"Sapphire · study · {study.name}",
        f"Study {study.name}: {study.strategy}",
        f"{study.n_trials:,} trials, objectives {', '.join(study.objectives)}",
    )
