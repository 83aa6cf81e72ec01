"""HTML reports of portfolio backtests, sweeps (the parameter-stability heatmap) and
walk-forward allocations (against equal weight), built with `sapphire.report`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sapphire.report import (
    Page,
    equity_trace,
    frame_table,
    kv_table,
    line_trace,
    report_path,
    style_figure,
)

if TYPE_CHECKING:
    from sapphire.backtest.portfolio import PortfolioResult
    from sapphire.backtest.sweep import SweepResult

__all__ = ["write_allocation_report", "write_portfolio_report", "write_sweep_report"]

_COLORS = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#c62828", "#5d4037")


def _lines(series: Mapping[str, pd.Series], title: str, height: int = 320) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, (name, s) in enumerate(series.items()):
        fig.add_trace(line_trace(s.index, s.to_numpy(np.float64), str(name), color=_COLORS[k % 7]))
    return style_figure(fig, height, title=title)


def write_portfolio_report(result: PortfolioResult, path: str | Path | None = None) -> Path:
    """The portfolio's equity, each instrument's pnl, metrics, weights and trades."""
    import plotly.graph_objects as go

    page = Page()
    page.h2("Equity")
    page.figure(style_figure(go.Figure([equity_trace(result.equity)]), 360), "equity")
    page.h2("Net pnl by instrument")
    page.figure(_lines({c: result.pnl[c] for c in result.pnl.columns}, "pnl"), "pnl")
    if len(result.sleeves) > 1:
        page.h2("Equity by strategy")
        page.figure(_lines(result.sleeves, "equity"), "sleeves")
    page.h2("Metrics")
    page.html(kv_table("metrics", result.metrics, numeric=True))
    page.h2("Settings")
    settings = {"weights": result.weights, **result.config}
    page.html(kv_table("settings", {k: str(v) for k, v in settings.items()}))
    page.h2("Trades")
    page.html(frame_table("trades", result.trades.head(500)))
    if len(result.trades) > 500:
        page.note(f"first 500 of {len(result.trades)} trades")
    subtitle = f"{', '.join(result.strategies)} on {', '.join(result.symbols)}"
    target = report_path(path, "portfolio")
    return page.write(target, "Portfolio backtest", "Portfolio backtest", subtitle)


def write_sweep_report(
    result: SweepResult, x: str, y: str, metric: str, path: str | Path | None = None
) -> Path:
    """The parameter-stability heatmap of `metric` over `x` and `y`, and the table."""
    import plotly.graph_objects as go

    heat = result.heatmap(x, y, metric)
    page = Page()
    page.h2(f"{metric} by {x} and {y} (mean over instruments)")
    fig = go.Figure(
        go.Heatmap(
            z=heat.to_numpy(np.float64), x=[str(v) for v in heat.columns],
            y=[str(v) for v in heat.index], colorscale="RdYlGn", colorbar={"title": metric},
        )
    )  # fmt: skip
    fig.update_layout(xaxis_title=x, yaxis_title=y)
    page.figure(style_figure(fig, 420), "heatmap")
    page.h2("Every combination")
    page.html(frame_table("sweep", result.by_params()))
    target = report_path(path, f"sweep-{result.strategy}")
    return page.write(target, "Parameter sweep", "Parameter sweep", result.strategy)


def write_allocation_report(
    equity: pd.DataFrame,
    weights: pd.DataFrame,
    metrics: Mapping[str, Mapping[str, float]],
    path: str | Path | None = None,
) -> Path:
    """Out-of-sample equity of an allocation method against equal weight, its weights at
    each rebalance and the metrics of both."""
    page = Page()
    page.h2("Out-of-sample equity (after costs)")
    page.figure(_lines({c: equity[c] for c in equity.columns}, "equity"), "equity")
    page.h2("Metrics")
    page.html(frame_table("metrics", pd.DataFrame(metrics).T.reset_index(names="method")))
    page.h2("Weights at each rebalance")
    page.html(frame_table("weights", weights.reset_index(names="rebalance")))
    target = report_path(path, "allocation")
    return page.write(target, "Allocation", "Walk-forward allocation", ", ".join(equity.columns))
