"""Table toolkit: cell text for numbers, times and nested values; the tables' HTML."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from sapphire.report import (
    cell,
    format_number,
    format_time,
    frame_table,
    grid_table,
    kv_table,
    plain_text,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (pd.Timestamp("2022-01-03 10:05:07", tz="UTC"), "2022-01-03 10:05:07"),
        (pd.Timestamp("2022-01-03 11:05", tz="Europe/Berlin"), "2022-01-03 10:05:00"),
        (pd.Timestamp("2022-01-03 10:05"), "2022-01-03 10:05:00"),  # naive: taken as UTC
        (np.int64(1_641_204_300_000_000_000), "2022-01-03 10:05:00"),  # int ns
        (datetime(2022, 1, 3, 10, 5, tzinfo=UTC), "2022-01-03 10:05:00"),
        (pd.NaT, ""),
    ],
)
def test_format_time(value: object, text: str) -> None:
    assert format_time(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234567, "1,234,567"),
        (np.int64(-42), "-42"),
        (0.123456789, "0.1235"),
        (2500.0, "2,500"),  # whole and large: in full
        (12.0, "12"),
        (1e-7, "1e-07"),
        (math.nan, "—"),
        (-math.inf, "—"),
        (True, "1"),
        ("n/a", "n/a"),
        (None, "None"),
    ],
)
def test_format_number(value: object, text: str) -> None:
    assert format_number(value) == text


def test_format_number_digits() -> None:
    assert format_number(math.pi, digits=2) == "3.1"


def test_plain_text_uses_the_json_encoder() -> None:
    assert plain_text("as is") == "as is"
    assert plain_text(3) == "3"
    assert plain_text([5, 20]) == "[5, 20]"
    assert plain_text((1, np.float64(0.5))) == "[1, 0.5]"
    assert plain_text({"fee": Decimal("0.001"), "x": math.nan}) == '{"fee": "0.001", "x": null}'
    assert plain_text({1: "a"}) == '{"1": "a"}'
    odd = [object()]
    assert plain_text(odd) == str(odd)  # not JSON: written as Python writes it


def test_cell_escapes_and_aligns() -> None:
    assert cell("<b>") == "<td>&lt;b&gt;</td>"
    assert cell("1.5", numeric=True) == '<td class="num">1.5</td>'


def test_kv_table() -> None:
    html = kv_table("params", {"fast": 10, "label": "<x>", "windows": [5, 20]})
    rows = re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", html)
    assert rows == [("fast", "10"), ("label", "&lt;x&gt;"), ("windows", "[5, 20]")]
    assert html.startswith('<table id="params"><tbody>')
    assert kv_table("e", {}) == '<table id="e"><tbody><tr><td>none</td></tr></tbody></table>'
    assert '<td class="num">0.5</td>' in kv_table("n", {"a": 0.5}, numeric=True)


def test_grid_table_keeps_row_html_and_escapes_the_head() -> None:
    html = grid_table("t", ["a<b", "c"], iter(['<tr class="x"><td>1</td><td>2</td></tr>']))
    assert html == (
        '<div class="wide"><table id="t"><thead><tr><th>a&lt;b</th><th>c</th></tr></thead>'
        '<tbody><tr class="x"><td>1</td><td>2</td></tr></tbody></table></div>'
    )


def test_frame_table_formats_numbers_and_skips_the_index() -> None:
    frame = pd.DataFrame(
        {"split": [0, 1], "auc": [0.61234, math.nan], "note": ["ok", "<bad>"]}, index=[7, 8]
    )
    html = frame_table("folds", frame)
    head = re.findall(r"<th>([^<]*)</th>", html)
    assert head == ["split", "auc", "note"]
    rows = re.findall(r"<tr>(<td.*?)</tr>", html)
    assert rows == [
        '<td class="num">0</td><td class="num">0.6123</td><td>ok</td>',
        '<td class="num">1</td><td class="num">—</td><td>&lt;bad&gt;</td>',
    ]
