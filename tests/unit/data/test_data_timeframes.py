"""Timeframe text and inference."""

from __future__ import annotations

import pandas as pd
import pytest

from sapphire.data import DataError, format_timeframe, infer_timeframe, parse_timeframe


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60), ("4h", 240), ("1d", 1440), ("1w", 10080)],
)
def test_parse_and_format_round_trip(text: str, minutes: int) -> None:
    parsed = parse_timeframe(text)
    assert parsed == pd.Timedelta(minutes=minutes)
    assert format_timeframe(parsed) == text


def test_format_picks_the_largest_whole_unit() -> None:
    assert format_timeframe(pd.Timedelta(minutes=120)) == "2h"
    assert format_timeframe(pd.Timedelta(seconds=90)) == "90s"
    assert format_timeframe(pd.Timedelta(milliseconds=1500)) == "1500ms"


@pytest.mark.parametrize("text", ["", "m", "0m", "1M", "1.5h", "5 minutes", "-1h", "1y"])
def test_bad_text_is_named(text: str) -> None:
    with pytest.raises(DataError, match=f"bad timeframe {text!r}"):
        parse_timeframe(text)


def test_infer_uses_the_most_common_spacing(ada_bars: pd.DataFrame) -> None:
    assert infer_timeframe(ada_bars["timestamp"]) == pd.Timedelta(minutes=5)
    assert infer_timeframe(pd.DatetimeIndex(ada_bars["timestamp"])) == pd.Timedelta(minutes=5)


def test_infer_without_a_majority_takes_the_mode_and_breaks_ties_low() -> None:
    base = pd.Timestamp("2024-01-01", tz="UTC")
    minutes = [0, 10, 20, 25, 30, 35, 50, 70]  # spacings 10,10,5,5,5,15,20: mode 5
    assert infer_timeframe([base + pd.Timedelta(minutes=m) for m in minutes]) == pd.Timedelta(
        minutes=5
    )
    tie = [0, 10, 20, 25, 30]  # 10,10,5,5: the smaller wins
    assert infer_timeframe([base + pd.Timedelta(minutes=m) for m in tie]) == pd.Timedelta(minutes=5)


def test_infer_accepts_text_and_epoch_numbers() -> None:
    assert infer_timeframe(["2022-01-01 00:00", "2022-01-01 04:00"]) == pd.Timedelta(hours=4)
    assert infer_timeframe([1_640_995_200_000, 1_640_995_260_000]) == pd.Timedelta(minutes=1)


def test_infer_needs_two_distinct_times() -> None:
    with pytest.raises(DataError, match="cannot infer the timeframe"):
        infer_timeframe(["2022-01-01", "2022-01-01"])
