"""Chart toolkit: epoch milliseconds, min/max decimation, the figure style, line traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from sapphire.report import (
    DRAWDOWN_COLOR,
    EQUITY_COLOR,
    MAX_LINE_POINTS,
    drawdown_trace,
    epoch_ms,
    equity_trace,
    line_trace,
    minmax_indices,
    style_figure,
)


def test_epoch_ms_from_ns_and_timestamps() -> None:
    ns = np.array([0, 1_641_204_300_000_000_000], dtype=np.int64)
    np.testing.assert_array_equal(epoch_ms(ns), [0.0, 1_641_204_300_000.0])
    index = pd.DatetimeIndex(["2022-01-03 10:05", "2022-01-03 11:05"], tz="Europe/Berlin")
    np.testing.assert_array_equal(epoch_ms(index), [1_641_200_700_000.0, 1_641_204_300_000.0])
    assert epoch_ms([pd.Timestamp("1970-01-01 00:00:00.0015", tz="UTC")])[0] == 1.5


def test_minmax_indices_short_series_is_whole() -> None:
    np.testing.assert_array_equal(minmax_indices(np.arange(5.0), 10), np.arange(5))


@pytest.mark.parametrize("n", [1_001, 10_000, 45_031])
def test_minmax_indices_keep_extremes_and_ends(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.cumsum(rng.normal(size=n))
    keep = minmax_indices(values, 1_000)
    assert keep.size <= 1_002
    assert np.all(np.diff(keep) > 0)  # strictly in order, no repeats
    assert (keep[0], keep[-1]) == (0, n - 1)
    assert values[keep].min() == values.min() and values[keep].max() == values.max()
    # every group of consecutive values has its own min and max kept
    group = -(-n // 500)
    for start in range(0, n, group):
        chunk = values[start : start + group]
        assert start + int(chunk.argmin()) in keep and start + int(chunk.argmax()) in keep


def test_style_figure_sets_the_common_look() -> None:
    fig = go.Figure()
    assert style_figure(fig, 420, hovermode="closest") is fig
    layout = fig.layout
    assert layout.height == 420 and layout.hovermode == "closest"
    assert layout.margin.l == 70 and layout.legend.orientation == "h"
    assert layout.template == pio.templates["plotly_white"]


def test_line_trace_decimates_and_fills() -> None:
    times = pd.date_range("2022-01-01", periods=50_000, freq="min", tz="UTC")
    values = np.sin(np.arange(50_000) / 500.0)
    trace = line_trace(times, values, "wave", color="#123456", max_points=1_000)
    assert len(trace.x) == len(trace.y) <= 1_002
    assert trace.name == "wave" and trace.mode == "lines" and trace.line.color == "#123456"
    assert trace.fill is None
    assert max(trace.y) == values.max() and min(trace.y) == values.min()
    assert trace.x[0] == epoch_ms(times[:1])[0] and trace.x[-1] == epoch_ms(times[-1:])[0]
    area = line_trace(times[:10], values[:10], "a", color="#000", fill="rgba(0, 0, 0, 0.5)")
    assert area.fill == "tozeroy" and area.fillcolor == "rgba(0, 0, 0, 0.5)"
    assert len(area.x) == 10


def test_equity_and_drawdown_traces() -> None:
    index = pd.date_range("2022-01-01", periods=3 * MAX_LINE_POINTS, freq="min", tz="UTC")
    equity = pd.Series(np.linspace(100.0, 50.0, index.size), index=index)
    drawdown = equity / equity.cummax() - 1.0
    line, area = equity_trace(equity), drawdown_trace(drawdown)
    assert line.name == "equity" and line.line.color == EQUITY_COLOR
    assert area.name == "drawdown" and area.line.color == DRAWDOWN_COLOR and area.fill == "tozeroy"
    assert len(line.x) <= MAX_LINE_POINTS + 2 and len(area.x) <= MAX_LINE_POINTS + 2
    assert min(area.y) == drawdown.min() == pytest.approx(-0.5)
    assert equity_trace(equity, "OOS").name == "OOS"
