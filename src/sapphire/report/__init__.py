"""The HTML/Plotly toolkit every Sapphire report uses (backtest, study, walk-forward, model).

A report builds a `Page` (sections, notes, tables and figures in order) and writes it to
`report_path(path, stem)`: one self-contained, offline HTML file in the shared style.

- `page`: `Page`, `BASE_CSS`, `report_path`, `safe_name`, `heading`, `note`, `columns`.
- `tables`: `kv_table`, `grid_table`, `frame_table`, `cell`, `plain_text`,
  `format_number`, `format_time`.
- `charts`: `style_figure`, `epoch_ms`, `minmax_indices`, `line_trace`, `equity_trace`,
  `drawdown_trace`, `MAX_LINE_POINTS`.

It imports no other Sapphire package (only `sapphire.config` for the reports folder and
`sapphire.encoding` for JSON), so every layer that writes a report may use it.
"""

from sapphire.report.charts import (
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
from sapphire.report.page import BASE_CSS, Page, columns, heading, note, report_path, safe_name
from sapphire.report.tables import (
    cell,
    format_number,
    format_time,
    frame_table,
    grid_table,
    kv_table,
    plain_text,
)

__all__ = [
    "BASE_CSS",
    "DRAWDOWN_COLOR",
    "EQUITY_COLOR",
    "MAX_LINE_POINTS",
    "Page",
    "cell",
    "columns",
    "drawdown_trace",
    "epoch_ms",
    "equity_trace",
    "format_number",
    "format_time",
    "frame_table",
    "grid_table",
    "heading",
    "kv_table",
    "line_trace",
    "minmax_indices",
    "note",
    "plain_text",
    "report_path",
    "safe_name",
    "style_figure",
]
