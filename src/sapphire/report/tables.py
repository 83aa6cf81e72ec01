"""HTML tables and the text in their cells: key-value tables, tables with a header row,
DataFrames, and how numbers, times and nested values are written.

Every function escapes what it is given, except `grid_table`'s rows, which are HTML.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from sapphire.encoding import to_json

__all__ = [
    "cell",
    "format_number",
    "format_time",
    "frame_table",
    "grid_table",
    "kv_table",
    "plain_text",
]


def format_time(value: Any) -> str:
    """A time as ``YYYY-mm-dd HH:MM:SS`` in UTC (a naive time is taken as UTC; NaT gives "")."""
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return ""
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp).strftime("%Y-%m-%d %H:%M:%S")


def format_number(value: Any, digits: int = 4) -> str:
    """A number for a table: ints with thousands separators, floats to `digits` significant
    digits (whole ones of 1,000 and more in full), "—" for NaN and infinities; anything
    that is not a number as `str`."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return f"{int(value):,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "—"
    return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1000 else f"{v:.{digits}g}"


def plain_text(value: Any) -> str:
    """A value as cell text: strings as they are, mappings and sequences as JSON (see
    `sapphire.encoding`), anything else (or what JSON cannot hold) with `str`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        try:
            return to_json(value)
        except ValueError:
            return str(value)
    return str(value)


def cell(text: str, *, numeric: bool = False) -> str:
    """One `<td>` holding `text` (escaped); numeric cells are right-aligned."""
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def kv_table(table_id: str, mapping: Mapping[Any, Any], *, numeric: bool = False) -> str:
    """A two-column table, key | value (values through `plain_text`; "none" when empty)."""
    rows = "".join(
        f"<tr><th>{escape(str(key))}</th>{cell(plain_text(value), numeric=numeric)}</tr>"
        for key, value in mapping.items()
    )
    rows = rows or "<tr><td>none</td></tr>"
    return f'<table id="{escape(table_id)}"><tbody>{rows}</tbody></table>'


def grid_table(table_id: str, head: Sequence[str], rows: Iterable[str]) -> str:
    """A table with a header row (`head`, escaped) and the given `<tr>` rows (HTML),
    scrolling sideways when wider than the page."""
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f'<div class="wide"><table id="{escape(table_id)}"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def frame_table(table_id: str, frame: pd.DataFrame) -> str:
    """A DataFrame's columns and rows (not its index) as a `grid_table`; numbers are
    written by `format_number` and right-aligned."""
    rows = (
        "<tr>"
        + "".join(
            cell(format_number(value), numeric=True)
            if isinstance(value, float | int | np.floating | np.integer)
            else cell(str(value))
            for value in row
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return grid_table(table_id, [str(c) for c in frame.columns], rows)
