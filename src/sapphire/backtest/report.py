"""The interactive HTML report of a backtest: one self-contained, offline Plotly page.

The page holds the metrics table, a three-panel chart sharing its time axis (candles
with entry/exit markers, equity, drawdown), the strategy parameters, the backtest
configuration and the trades table. Long runs are resampled for display only, so the
file stays a few MB: candles are aggregated over equal groups of consecutive bars and
the lines keep each group's minimum and maximum.
"""

from __future__ import annotations

import math
import webbrowser
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import format_metric
from sapphire.report import (
    Page,
    cell,
    columns,
    drawdown_trace,
    epoch_ms,
    equity_trace,
    format_time,
    grid_table,
    heading,
    kv_table,
    report_path,
    safe_name,
    style_figure,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from sapphire.backtest.result import BacktestResult

__all__ = ["metrics_table", "write_report"]

MAX_CANDLES = 20_000  # candles drawn at most; longer runs are aggregated
MAX_MARKER_TRADES = 5_000  # trades with entry/exit markers at most
MAX_TRADE_ROWS = 500  # trades listed in full; beyond, the first and last half

CHART_ID = "sapphire-chart"

_LABELS = {  # the others read well as "Key name"
    "cagr": "CAGR",
    "volatility": "Volatility (ann.)",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown_duration_days": "Max drawdown duration",
    "n_trades": "Trades",
    "expectancy": "Expectancy (per trade)",
    "avg_trade": "Average trade",
}

_CSS = """\
tr.win td.pnl { color: #2e7d32; } tr.loss td.pnl { color: #c62828; }
tr.gap td { text-align: center; color: #52606d; font-style: italic; }
"""


def write_report(
    result: BacktestResult, path: str | Path | None = None, *, open_browser: bool = False
) -> Path:
    """Write the backtest's interactive HTML report (default under reports/) and return it."""
    target = report_path(path, f"{safe_name(result.strategy)}-{safe_name(result.symbol)}")
    figure, display_note = _figure(result)
    trades_html, trades_note = _trades_table(result.trades)
    page = Page(_CSS)
    for index, warning in enumerate(result.warnings):
        page.note(f"Warning: {warning}", f"warning-{index}")
    page.h2("Metrics")
    page.html(metrics_table(result.metrics))
    page.h2("Chart")
    page.figure(figure, CHART_ID, scroll_zoom=True)
    page.note(display_note, "display-note")
    page.html(
        columns(
            heading("Parameters") + kv_table("params", result.params),
            heading("Configuration") + kv_table("config", result.config),
        )
    )
    page.h2("Trades")
    page.note(trades_note, "trades-note")
    page.html(trades_html)
    bars = result.bars
    period = (
        f"{format_time(bars.time[0])} → {format_time(bars.time[-1])} UTC, {len(bars):,} bars"
        if len(bars)
        else "no bars"
    )
    page.write(
        target,
        f"Sapphire · {result.strategy} · {result.symbol}",
        f"{result.strategy} on {result.symbol}",
        period,
    )
    if open_browser:
        webbrowser.open(target.resolve().as_uri())
    return target


# --- the chart ---------------------------------------------------------------------


def _candles(result: BacktestResult) -> tuple[NDArray[np.float64], list[NDArray[np.float64]], int]:
    """Return (time ms, [open, high, low, close], bars per candle), aggregated if long."""
    bars = result.bars
    n = len(bars)
    group = max(1, math.ceil(n / MAX_CANDLES))
    if group == 1:
        return epoch_ms(bars.time), [bars.open, bars.high, bars.low, bars.close], 1
    starts = np.arange(0, n, group)
    ends = np.append(starts[1:] - 1, n - 1)
    ohlc = [
        bars.open[starts],
        np.maximum.reduceat(bars.high, starts),
        np.minimum.reduceat(bars.low, starts),
        bars.close[ends],
    ]
    return epoch_ms(bars.time[starts]), ohlc, group


def _trade_markers(trades: pd.DataFrame) -> tuple[list[go.Scatter], int]:
    """Entry triangles per side and exit crosses by outcome, for up to MAX_MARKER_TRADES."""
    import plotly.graph_objects as go

    shown = trades
    if len(trades) > MAX_MARKER_TRADES:
        keep = np.linspace(0, len(trades) - 1, MAX_MARKER_TRADES).round().astype(int)
        shown = trades.iloc[np.unique(keep)]
    long, win = shown["side"] == "long", shown["pnl"] > 0
    specs = [  # name, rows, entry or exit, marker symbol, colour
        ("long entry", long, "entry", "triangle-up", "#1565c0"),
        ("short entry", ~long, "entry", "triangle-down", "#8e24aa"),
        ("exit (win)", win, "exit", "x", "#2e7d32"),
        ("exit (loss)", ~win, "exit", "x", "#c62828"),
    ]
    traces = []
    for name, mask, end, symbol, color in specs:
        sel = shown[mask]
        if end == "entry":
            text = [f"{name}<br>size {q:.10g}" for q in sel["size"]]
        else:
            text = [
                f"{escape(str(side))} exit · {escape(str(why))}<br>pnl {p:,.2f} ({r:.2%})"
                for side, why, p, r in zip(
                    sel["side"], sel["exit_reason"], sel["pnl"], sel["return"], strict=True
                )
            ]
        traces.append(
            go.Scatter(
                x=epoch_ms(sel[f"{end}_time"]),
                y=sel[f"{end}_price"].to_numpy(dtype=np.float64),
                mode="markers",
                name=name,
                marker={"symbol": symbol, "size": 10 if end == "entry" else 9, "color": color},
                text=text,
                hovertemplate="%{text}<br>price %{y}<extra></extra>",
            )
        )
    return traces, len(shown)


def _figure(result: BacktestResult) -> tuple[go.Figure, str]:
    """Build the three-panel figure; return it with the note on what was resampled."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.58, 0.24, 0.18]
    )
    x, (o, h, lo, c), group = _candles(result)
    candles = go.Candlestick(x=x, open=o, high=h, low=lo, close=c, name=result.symbol)
    candles.update(increasing_line_color="#26a69a", decreasing_line_color="#ef5350")
    fig.add_trace(candles, row=1, col=1)
    markers, n_marked = _trade_markers(result.trades)
    for trace in markers:
        fig.add_trace(trace, row=1, col=1)

    line, area = equity_trace(result.equity), drawdown_trace(result.drawdown)
    fig.add_trace(line, row=2, col=1)
    fig.add_trace(area, row=3, col=1)
    fig.update_xaxes(type="date", rangeslider_visible=False)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="equity", row=2, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=3, col=1)
    style_figure(fig, 900, hovermode="closest")

    notes = []
    if group > 1:
        notes.append(
            f"Display resampled: {len(result.bars):,} bars are drawn as {len(x):,} candles of "
            f"{group} bars each (first open, highest high, lowest low, last close)."
        )
    n_equity, n_drawdown, n_points = len(line.x), len(area.x), len(result.equity)
    if max(n_equity, n_drawdown) < n_points:
        notes.append(
            f"Equity and drawdown lines decimated to {n_equity:,} and {n_drawdown:,} of "
            f"{n_points:,} points, keeping each group's minimum and maximum."
        )
    if n_marked < len(result.trades):
        notes.append(f"Markers shown for {n_marked:,} of {len(result.trades):,} trades.")
    if notes:
        notes.append("Metrics and trades use every bar.")
    return fig, " ".join(notes)


# --- the tables --------------------------------------------------------------------


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " ").capitalize())


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The metrics as a table: one row per metric (`data-key` its key), formatted."""
    rows = "".join(
        f'<tr data-key="{escape(key)}"><th>{escape(_label(key))}</th>'
        f'<td class="num">{escape(format_metric(key, value))}</td></tr>'
        for key, value in metrics.items()
    )
    return f'<table id="metrics"><tbody>{rows}</tbody></table>'


def _cell(column: str, value: Any) -> str:
    if column in ("entry_time", "exit_time"):
        return cell(format_time(value))
    if column in ("pnl", "fees", "funding"):
        return f'<td class="num{" pnl" if column == "pnl" else ""}">{float(value):,.2f}</td>'
    if column == "return":
        return cell(f"{float(value):.2%}", numeric=True)
    if column in ("size", "entry_price", "exit_price"):
        return cell(f"{float(value):,.10g}", numeric=True)
    if column in ("entry_bar", "exit_bar"):
        return cell(str(int(value)), numeric=True)
    return cell(str(value))


def _trade_row(row: Mapping[Any, Any] | None, names: list[str], hidden: int) -> str:
    if row is None:
        return (
            f'<tr class="gap"><td colspan="{len(names)}">… {hidden:,} trades not shown …</td></tr>'
        )
    pnl = float(row.get("pnl", 0.0))
    outcome = "win" if pnl > 0 else "loss" if pnl < 0 else "even"
    return f'<tr class="trade {outcome}">' + "".join(_cell(c, row[c]) for c in names) + "</tr>"


def _trades_table(trades: pd.DataFrame) -> tuple[str, str]:
    """Return the trades table and a note (empty unless trades were left out)."""
    names = [str(c) for c in trades.columns]
    n, half = len(trades), MAX_TRADE_ROWS // 2
    rows: list[Mapping[Any, Any] | None]
    if n > MAX_TRADE_ROWS:
        rows = [*trades.iloc[:half].to_dict("records"), None]
        rows += trades.iloc[-half:].to_dict("records")
        note = f"{n:,} trades: the first {half} and the last {half} are listed."
    else:
        rows = list(trades.to_dict("records"))
        note = "" if n else "No closed trades."
    body = (_trade_row(row, names, n - 2 * half) for row in rows)
    return grid_table("trades", names, body), note
