"""Robustness of a result: Monte Carlo on the trade sequence and parameter stability.

- `monte_carlo` replays a strategy's closed-trade pnl in random orders (`shuffle`: a
  permutation, same final return, different path and drawdown) or resampled with
  replacement (`bootstrap`: both return and drawdown vary), and reports the
  distributions of max drawdown and total return with their 5/50/95th percentiles.
  Equity is `cash + cumulative pnl` after each trade (closed-trade equity, no
  intra-trade marking), the initial cash counting as the first peak.
- `stability_grid` pivots a study's trials into the mean objective over two
  parameters (floats binned) and `stability_score` says whether the optimum sits on a
  plateau (near 1) or a lone spike (near 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "MonteCarloResult",
    "monte_carlo",
    "monte_carlo_figure",
    "stability_figure",
    "stability_grid",
    "stability_score",
]

METHODS = ("shuffle", "bootstrap")
PERCENTILES = (5, 50, 95)
# Runs per batch. Fixed, so a seeded result is the same inline and on any executor.
BATCH_RUNS = 256


class _Mapper(Protocol):
    def map(self, fn: Any, context: Any, items: Sequence[Any]) -> Iterator[Any]: ...


@dataclass(frozen=True, eq=False)
class MonteCarloResult:
    """Distributions of max drawdown (negative fractions) and total return, one per run.

    `summary[metric]` holds `p5`, `p50`, `p95` and `mean` of each distribution (for
    `max_drawdown` p5 is the bad tail: the drawdown exceeded in 5 % of runs), plus
    `prob_loss` (share of runs ending below the initial cash) under `total_return`.
    `original` has both metrics of the trades in their actual order.
    """

    method: str
    runs: int
    n_trades: int
    cash: float
    seed: int | None
    max_drawdown: NDArray[np.float64]
    total_return: NDArray[np.float64]
    summary: dict[str, dict[str, float]]
    original: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (no per-run arrays)."""
        return {
            "method": self.method,
            "runs": self.runs,
            "n_trades": self.n_trades,
            "cash": self.cash,
            "seed": self.seed,
            "original": dict(self.original),
            "summary": {k: dict(v) for k, v in self.summary.items()},
        }


def _paths_stats(
    pnl: NDArray[np.float64], cash: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Max drawdown and total return of each row of a (runs, trades) pnl matrix."""
    equity = cash + np.cumsum(pnl, axis=1)
    peak = np.maximum(np.maximum.accumulate(equity, axis=1), cash)
    drawdown = np.minimum((equity / peak - 1.0).min(axis=1), 0.0)
    return drawdown, equity[:, -1] / cash - 1.0


def _mc_batch(
    context: tuple[NDArray[np.float64], float, str], item: tuple[np.random.SeedSequence, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One batch of Monte Carlo runs (module level: executors pickle it)."""
    pnl, cash, method = context
    seq, runs = item
    rng = np.random.default_rng(seq)
    n = pnl.shape[0]
    if method == "shuffle":
        paths = rng.permuted(np.broadcast_to(pnl, (runs, n)), axis=1)
    else:
        paths = pnl[rng.integers(0, n, size=(runs, n))]
    return _paths_stats(paths, cash)


def _summary(values: NDArray[np.float64]) -> dict[str, float]:
    p = np.percentile(values, PERCENTILES)
    out = {f"p{q}": float(v) for q, v in zip(PERCENTILES, p, strict=True)}
    out["mean"] = float(values.mean())
    return out


def monte_carlo(
    pnl: np.ndarray,
    cash: float,
    runs: int = 1000,
    method: str = "shuffle",
    seed: int | None = None,
    executor: _Mapper | None = None,
) -> MonteCarloResult:
    """Monte Carlo of a trade pnl sequence: `shuffle` (permutation) or `bootstrap`.

    `pnl` is the closed trades' pnl in quote currency (e.g. `result.trades["pnl"]`),
    `cash` the initial cash. Runs are drawn in batches of `BATCH_RUNS` from child
    seeds of `seed`, so a seeded result is reproducible and the same whether the
    batches run inline or on an `executor` (anything with the executor `map`).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: expected 'shuffle' or 'bootstrap'")
    if isinstance(runs, bool) or not isinstance(runs, int | np.integer) or runs < 1:
        raise ValueError(f"runs={runs!r} is invalid: expected an integer >= 1")
    if not (isinstance(cash, int | float) and math.isfinite(cash) and cash > 0):
        raise ValueError(f"cash={cash!r} is invalid: expected a positive amount")
    values = np.asarray(pnl, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"pnl must be one-dimensional, got shape {values.shape}")
    if values.size == 0:
        raise ValueError("pnl is empty: Monte Carlo needs at least one trade")
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"pnl[{i}] is {values[i]}: expected finite trade pnl")
    sizes = [BATCH_RUNS] * (int(runs) // BATCH_RUNS)
    if int(runs) % BATCH_RUNS:
        sizes.append(int(runs) % BATCH_RUNS)
    seqs = np.random.SeedSequence(seed).spawn(len(sizes))
    items = list(zip(seqs, sizes, strict=True))
    context = (values, float(cash), method)
    parts: Iterable[tuple[NDArray[np.float64], NDArray[np.float64]]]
    if executor is None:
        parts = [_mc_batch(context, item) for item in items]
    else:
        parts = list(executor.map(_mc_batch, context, items))
    pairs = list(parts)
    drawdown = np.concatenate([p[0] for p in pairs])
    total = np.concatenate([p[1] for p in pairs])
    orig_dd, orig_ret = _paths_stats(values[None, :], float(cash))
    ret_summary = _summary(total)
    ret_summary["prob_loss"] = float(np.mean(total < 0.0))
    return MonteCarloResult(
        method=method,
        runs=int(runs),
        n_trades=int(values.size),
        cash=float(cash),
        seed=seed,
        max_drawdown=drawdown,
        total_return=total,
        summary={"max_drawdown": _summary(drawdown), "total_return": ret_summary},
        original={"max_drawdown": float(orig_dd[0]), "total_return": float(orig_ret[0])},
    )


def _column(trials: pd.DataFrame, name: str) -> str:
    for candidate in (name, f"params_{name}"):
        if candidate in trials.columns:
            return candidate
    raise ValueError(
        f"trials have no column {name!r} (or 'params_{name}'); columns: {list(trials.columns)}"
    )


def _axis(values: pd.Series, bins: int) -> pd.Series:
    """Grid labels: the values themselves, or bin midpoints for many distinct numbers."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric or values.nunique() <= bins:
        return values
    cats = pd.cut(values.astype(np.float64), bins=bins)
    mids = np.array([iv.mid for iv in cats.cat.categories], dtype=np.float64)
    span = float(values.max() - values.min())
    digits = max(0, 3 - math.floor(math.log10(span))) if span > 0 else 3
    labels = np.round(mids, digits)
    return pd.Series(labels[cats.cat.codes.to_numpy()], index=values.index, name=values.name)


def stability_grid(
    trials: pd.DataFrame, x: str, y: str, bins: int = 10, value: str = "value"
) -> pd.DataFrame:
    """Mean objective over two parameters: rows `y`, columns `x` (sorted), NaN where empty.

    `trials` has one row per trial with the parameter columns (`x` or `params_x`) and
    `value`; rows with a non-finite value, or a `state` other than `complete`, are
    left out. A numeric parameter with more than `bins` distinct values is cut into
    `bins` equal-width bins labelled by their midpoints.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins={bins!r} is invalid: expected an integer >= 1")
    xc, yc = _column(trials, x), _column(trials, y)
    if xc == yc:
        raise ValueError(f"x and y are the same parameter {x!r}: pick two")
    if value not in trials.columns:
        raise ValueError(f"trials have no {value!r} column")
    frame = trials
    if "state" in frame.columns:
        frame = frame[frame["state"] == "complete"]
    vals = pd.to_numeric(frame[value], errors="coerce")
    keep = np.isfinite(vals.to_numpy(dtype=np.float64, na_value=np.nan))
    frame, vals = frame[keep], vals[keep]
    if frame.empty:
        return pd.DataFrame(
            index=pd.Index([], name=y), columns=pd.Index([], name=x), dtype=np.float64
        )
    table = pd.DataFrame(
        {x: _axis(frame[xc], bins), y: _axis(frame[yc], bins), "value": vals.astype(np.float64)}
    )
    grid = table.pivot_table(index=y, columns=x, values="value", aggfunc="mean")
    grid = grid.sort_index(axis=0).sort_index(axis=1)
    return grid.astype(np.float64)


def stability_score(grid: pd.DataFrame, maximize: bool = True) -> float | None:
    """How well the best cell's neighbours hold up: `1 - |best - mean(nbrs)| / |best|`.

    The neighbours are the non-empty cells within one grid step (diagonals included)
    of the best cell. Clipped to [0, 1]: 1 is a flat plateau, 0 a lone spike (or
    neighbours worse by 100 % of the best or more). None when the grid has no
    best cell with a neighbour, or the best value is 0.
    """
    z = grid.to_numpy(dtype=np.float64)
    if z.size == 0 or not np.isfinite(z).any():
        return None
    filled = np.where(np.isfinite(z), z, -np.inf if maximize else np.inf)
    flat = int(np.argmax(filled) if maximize else np.argmin(filled))
    i, j = divmod(flat, z.shape[1])
    best = float(z[i, j])
    window = z[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].copy()
    window[i - max(i - 1, 0), j - max(j - 1, 0)] = np.nan
    nbrs = window[np.isfinite(window)]
    if nbrs.size == 0 or best == 0:
        return None
    return float(np.clip(1.0 - abs(best - float(nbrs.mean())) / abs(best), 0.0, 1.0))


def monte_carlo_figure(*results: MonteCarloResult) -> go.Figure:
    """Histograms of max drawdown and total return (one colour per result), with the
    5/50/95th percentiles as dashed lines and the actual order as a solid line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not results:
        raise ValueError("monte_carlo_figure needs at least one MonteCarloResult")
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["max drawdown", "total return"], horizontal_spacing=0.08
    )
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for k, res in enumerate(results):
        color = colors[k % len(colors)]
        name = f"{res.method} ({res.runs:,} runs)"
        for col, metric in ((1, "max_drawdown"), (2, "total_return")):
            data = res.max_drawdown if metric == "max_drawdown" else res.total_return
            fig.add_trace(
                go.Histogram(
                    x=data,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    nbinsx=50,
                    opacity=0.6,
                    marker={"color": color},
                    hovertemplate="%{x:.2%}: %{y} runs<extra></extra>",
                ),
                row=1,
                col=col,
            )
            for q in PERCENTILES:
                fig.add_vline(
                    x=res.summary[metric][f"p{q}"],
                    line={"color": color, "dash": "dash", "width": 1},
                    annotation_text=f"p{q}",
                    annotation_font_size=10,
                    row=1,
                    col=col,
                )
    first = results[0]
    for col, metric in ((1, "max_drawdown"), (2, "total_return")):
        fig.add_vline(
            x=first.original[metric],
            line={"color": "black", "width": 2},
            annotation_text="actual",
            annotation_position="top left",
            row=1,
            col=col,
        )
    fig.update_layout(
        barmode="overlay",
        title=f"Monte Carlo on {first.n_trades:,} trades",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(title_text="runs", col=1)
    return fig


def stability_figure(
    grid: pd.DataFrame, title: str | None = None, maximize: bool = True
) -> go.Figure:
    """Heatmap of a `stability_grid` with the best cell outlined."""
    import plotly.graph_objects as go

    x, y = grid.columns.name or "x", grid.index.name or "y"
    z = grid.to_numpy(dtype=np.float64)
    xs, ys = [str(c) for c in grid.columns], [str(i) for i in grid.index]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            colorscale="RdYlGn",
            reversescale=not maximize,
            colorbar={"title": {"text": "mean value"}},
            hovertemplate=f"{x} %{{x}}<br>{y} %{{y}}<br>mean %{{z:.4g}}<extra></extra>",
        )
    )
    if z.size and np.isfinite(z).any():
        filled = np.where(np.isfinite(z), z, -np.inf if maximize else np.inf)
        i, j = divmod(int(np.argmax(filled) if maximize else np.argmin(filled)), z.shape[1])
        fig.add_trace(
            go.Scatter(
                x=[xs[j]],
                y=[ys[i]],
                mode="markers",
                marker={"symbol": "square-open", "size": 22, "color": "black", "line_width": 2},
                name="best",
                hoverinfo="skip",
            )
        )
    score = stability_score(grid, maximize=maximize)
    label = "n/a" if score is None else f"{score:.2f}"
    fig.update_layout(
        title=title or f"Parameter stability: mean value by {x} and {y} (score {label})",
        template="plotly_white",
        showlegend=False,
    )
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y, type="category")
    return fig
