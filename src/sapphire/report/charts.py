"""Plotly building blocks: time axes, the common figure style, and lines over time drawn
with a bounded number of points.

A long line (a month of minute bars is 45,000 points) is decimated for display only:
each group of consecutive points keeps its minimum and maximum, so peaks and troughs
(the maximum drawdown included) survive while the file stays small.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "DRAWDOWN_COLOR",
    "EQUITY_COLOR",
    "MAX_LINE_POINTS",
    "drawdown_trace",
    "epoch_ms",
    "equity_trace",
    "line_trace",
    "minmax_indices",
    "style_figure",
]

MAX_LINE_POINTS = 20_000  # points of one line drawn at most
EQUITY_COLOR = "#1f77b4"
DRAWDOWN_COLOR = "#c62828"


def epoch_ms(values: Any) -> NDArray[np.float64]:
    """Epoch milliseconds (from int64 ns or timestamps): a Plotly date axis reads them."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8 / 1e6


def minmax_indices(values: NDArray[np.float64], max_points: int) -> NDArray[np.intp]:
    """Indices of each group's minimum and maximum (and both ends), in order; all indices
    when there are at most `max_points` values."""
    n = values.shape[0]
    if n <= max_points:
        return np.arange(n)
    group = math.ceil(n / (max_points // 2))
    padded = np.pad(values, (0, -n % group), mode="edge").reshape(-1, group)
    offsets = np.arange(padded.shape[0]) * group
    picks = np.concatenate(
        ([0, n - 1], offsets + padded.argmin(axis=1), offsets + padded.argmax(axis=1))
    )
    return np.unique(np.minimum(picks, n - 1))  # padding repeats the last value


def style_figure(fig: go.Figure, height: int, **layout: Any) -> go.Figure:
    """Give `fig` the reports' look (white template, margins, legend on top) and `height`;
    `layout` adds or overrides layout properties. Returns `fig`."""
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        **layout,
    )
    return fig


def line_trace(
    times: Any,
    values: ArrayLike,
    name: str,
    *,
    color: str,
    width: float = 1.5,
    fill: str | None = None,
    max_points: int = MAX_LINE_POINTS,
) -> go.Scatter:
    """A line of `values` over `times`, decimated to about `max_points` points (see
    `minmax_indices`); `fill` is the colour of the area down to zero (None: no area)."""
    import plotly.graph_objects as go

    y = np.asarray(values, dtype=np.float64)
    keep = minmax_indices(y, max_points)
    trace = go.Scatter(
        x=epoch_ms(times)[keep], y=y[keep], mode="lines", name=name,
        line={"color": color, "width": width},
    )  # fmt: skip
    if fill is not None:
        trace.update(fill="tozeroy", fillcolor=fill)
    return trace


def equity_trace(equity: pd.Series, name: str = "equity") -> go.Scatter:
    """The equity line of a run (a Series over time), as every report draws it."""
    return line_trace(equity.index, equity.to_numpy(dtype=np.float64), name, color=EQUITY_COLOR)


def drawdown_trace(drawdown: pd.Series) -> go.Scatter:
    """The drawdown of a run (a Series over time, <= 0) as a filled area."""
    return line_trace(
        drawdown.index, drawdown.to_numpy(dtype=np.float64), "drawdown",
        color=DRAWDOWN_COLOR, width=1, fill="rgba(198, 40, 40, 0.25)",
    )  # fmt: skip
