"""Validation of real bars: corruptions are refused by row and value; gaps are handled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from sapphire.data import DataError, ValidationReport, validate_ohlcv

Corruption = Callable[[pd.DataFrame], tuple[pd.DataFrame, list[str]]]


def _duplicate_row(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = pd.concat([f.iloc[:1001], f.iloc[1000:]], ignore_index=True)
    return out, ["row 1001 (2022-01-01 15:41:00+00:00)", "duplicate timestamp, same as row 1000"]


def _swap_rows(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = f.copy()
    out.iloc[[2000, 2001]] = out.iloc[[2001, 2000]].to_numpy()
    return out, ["row 2001 (2022-01-02 08:21:00+00:00)", "earlier than row 2000 (2022-01-02 08:22"]


def _set(row: int, column: str, value: float) -> Corruption:
    def corrupt(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        out = f.copy()
        out.loc[row, column] = value
        return out, [f"row {row} ({out['timestamp'].iloc[row]})", f"{column} is {value!r}"]

    return corrupt


def _high_below_close(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = f.copy()
    row = int(np.flatnonzero((f["close"] > f["open"]) & (f["low"] < f["open"] - 5))[10])
    close = float(out.loc[row, "close"])
    out.loc[row, "high"] = close - 1.0
    return out, [f"row {row} (", f"high {close - 1.0!r} < max(open, close) {close!r}"]


def _low_above_open(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = f.copy()
    row = int(np.flatnonzero(f["close"] - f["open"] > 4)[3])
    open_ = float(out.loc[row, "open"])
    out.loc[row, "low"] = open_ + 1.0  # still below high and close: only low > open is wrong
    return out, [f"row {row} (", f"low {open_ + 1.0!r} > min(open, close) {open_!r}"]


def _high_below_low(f: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    out = f.copy()
    low = float(out.loc[777, "low"])
    out.loc[777, "high"] = low - 10.0
    return out, ["row 777 (2022-01-01 11:58:00+00:00)", f"high {low - 10.0!r} < low {low!r}"]


CORRUPTIONS: dict[str, Corruption] = {
    "duplicated-row": _duplicate_row,
    "swapped-rows": _swap_rows,
    "nan-close": _set(321, "close", float("nan")),
    "inf-high": _set(4321, "high", float("inf")),
    "minus-inf-low": _set(4322, "low", float("-inf")),
    "nan-volume": _set(12, "volume", float("nan")),
    "high-below-close": _high_below_close,
    "low-above-open": _low_above_open,
    "high-below-low": _high_below_low,
    "negative-volume": lambda f: (
        f.assign(volume=np.where(f.index == 30_000, -5.0, f["volume"])),
        ["row 30000 (2022-01-21 19:01:00+00:00)", "volume -5.0 is negative"],
    ),
    # a bar of -5 (all four prices) is consistent OHLC, and not a price
    "negative-prices": lambda f: (
        f.assign(
            **{c: np.where(f.index == 200, -5.0, f[c]) for c in ("open", "high", "low", "close")}
        ),
        ["row 200", "low -5.0 is not a price (prices must be > 0)"],
    ),
    "zero-low": lambda f: (
        f.assign(low=np.where(f.index == 201, 0.0, f["low"])),
        ["row 201", "low 0.0 is not a price (prices must be > 0)"],
    ),
}


def test_the_clean_btc_month_passes_with_an_exact_report(btc_bars: pd.DataFrame) -> None:
    frame, report = validate_ohlcv(btc_bars)
    assert report == ValidationReport(
        rows=45_031,
        timeframe=pd.Timedelta(minutes=1),
        gap_count=0,
        largest_gap=None,
        missing_bars=0,
        filled_bars=0,
        start=pd.Timestamp("2021-12-31 23:01", tz="UTC"),
        end=pd.Timestamp("2022-02-01 05:31", tz="UTC"),
    )
    pd.testing.assert_frame_equal(frame, btc_bars)
    summary = "45,031 bars of 1m, 2021-12-31 23:01 to 2022-02-01 05:31 UTC; no gaps"
    assert report.summary() == summary


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_corruption_of_real_data_names_the_row_and_bad_value(
    kind: str, btc_bars: pd.DataFrame
) -> None:
    corrupted, expected = CORRUPTIONS[kind](btc_bars)
    with pytest.raises(DataError) as caught:
        validate_ohlcv(corrupted)
    message = str(caught.value)
    for part in expected:
        assert part in message
    assert "the only such row" in message


def test_the_first_offending_row_and_the_count_are_reported(btc_bars: pd.DataFrame) -> None:
    corrupted = btc_bars.copy()
    rows = [40_000, 9_000, 25_000]
    corrupted.loc[rows, "volume"] = -1.0
    with pytest.raises(DataError, match=r"^row 9000 \(.*first of 3 such rows"):
        validate_ohlcv(corrupted)


def test_order_problems_are_reported_before_value_problems(btc_bars: pd.DataFrame) -> None:
    corrupted = btc_bars.copy()
    corrupted.loc[10, "close"] = np.nan
    corrupted.loc[500, "timestamp"] = corrupted.loc[499, "timestamp"]
    with pytest.raises(DataError, match=r"row 500 .*duplicate timestamp"):
        validate_ohlcv(corrupted)


def _remove(frame: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    return frame.drop(index=rows).reset_index(drop=True)


GAP_ROWS = [100, *range(200, 205), *range(30_000, 30_003)]


def test_gaps_are_counted_with_the_largest_and_the_missing_bars(btc_bars: pd.DataFrame) -> None:
    frame, report = validate_ohlcv(_remove(btc_bars, GAP_ROWS))
    assert len(frame) == 45_031 - 9
    assert report.gap_count == 3
    assert report.missing_bars == 9
    # 5 bars missing: the bar before covers one minute, then 5 minutes have no bar.
    assert report.largest_gap == pd.Timedelta(minutes=5)
    assert report.filled_bars == 0
    assert "3 gaps (9 missing bars, largest 5m)" in report.summary()


def test_real_gaps_in_the_ada_file_match_a_plain_pandas_count(ada_bars: pd.DataFrame) -> None:
    _, report = validate_ohlcv(ada_bars)
    step = pd.Timedelta(minutes=5)
    diffs = ada_bars["timestamp"].diff().dropna()
    gaps = diffs[diffs > step]
    assert report.timeframe == step
    assert report.gap_count == len(gaps) > 0
    assert report.missing_bars == int(sum(g // step - 1 for g in gaps))
    assert report.largest_gap == gaps.max() - step


def test_ffill_restores_every_bar_with_the_previous_close(btc_bars: pd.DataFrame) -> None:
    frame, report = validate_ohlcv(_remove(btc_bars, GAP_ROWS), gaps="ffill")
    assert len(frame) == len(btc_bars) and report.rows == len(btc_bars)
    assert report.filled_bars == 9 and report.gap_count == 3
    pd.testing.assert_series_equal(frame["timestamp"], btc_bars["timestamp"])
    filled = frame.index.isin(GAP_ROWS)
    kept = ~filled
    pd.testing.assert_frame_equal(frame[kept], btc_bars[kept])
    previous_close = {100: btc_bars.loc[99, "close"], 200: btc_bars.loc[199, "close"]}
    for row in (100, *range(200, 205)):
        close = previous_close[100 if row == 100 else 200]
        assert frame.loc[row, ["open", "high", "low", "close"]].tolist() == [close] * 4
        assert frame.loc[row, "volume"] == 0.0
    assert "9 bars filled with the previous close" in report.summary()


def test_ffill_fills_the_real_ada_gaps(ada_bars: pd.DataFrame) -> None:
    frame, report = validate_ohlcv(ada_bars, gaps="ffill")
    assert len(frame) == len(ada_bars) + report.missing_bars
    assert frame["timestamp"].diff().dropna().eq(pd.Timedelta(minutes=5)).all()
    _, again = validate_ohlcv(frame)
    assert again.gap_count == 0


def test_fail_names_the_first_gap(btc_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError) as caught:
        validate_ohlcv(_remove(btc_bars, GAP_ROWS), gaps="fail")
    message = str(caught.value)
    assert message.startswith("row 100 (2022-01-01 00:42:00+00:00): gap of 1 missing 1m bar(s)")
    assert "3 gaps, 9 missing bars in all" in message


def test_keep_returns_the_bars_unchanged(ada_bars: pd.DataFrame) -> None:
    frame, report = validate_ohlcv(ada_bars, gaps="keep")
    pd.testing.assert_frame_equal(frame, ada_bars)
    assert report.rows == len(ada_bars) and report.filled_bars == 0


def test_a_given_timeframe_must_agree_with_the_data(eth_bars: pd.DataFrame) -> None:
    assert validate_ohlcv(eth_bars, timeframe="5m")[1].timeframe == pd.Timedelta(minutes=5)
    with pytest.raises(DataError, match="timeframe 1h was given but the bars are 5m apart"):
        validate_ohlcv(eth_bars, timeframe="1h")


def test_a_single_bar_needs_a_timeframe(eth_bars: pd.DataFrame) -> None:
    one = eth_bars.iloc[:1]
    with pytest.raises(DataError, match="single bar"):
        validate_ohlcv(one)
    assert validate_ohlcv(one, timeframe="5m")[1].rows == 1


def test_empty_data_and_bad_policies_are_refused(eth_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no rows"):
        validate_ohlcv(eth_bars.iloc[:0])
    with pytest.raises(DataError, match="bad gaps policy 'drop'"):
        validate_ohlcv(eth_bars, gaps="drop")


def test_gap_spacing_that_is_not_a_multiple_counts_the_partial_slot(
    eth_bars: pd.DataFrame,
) -> None:
    frame = eth_bars.iloc[:10].copy()
    frame.loc[5:, "timestamp"] += pd.Timedelta(minutes=2)  # 7 minutes between rows 4 and 5
    filled, report = validate_ohlcv(frame, gaps="ffill")
    assert (report.gap_count, report.missing_bars) == (1, 1)
    assert report.largest_gap == pd.Timedelta(minutes=2)
    assert filled.loc[5, "timestamp"] == frame.loc[4, "timestamp"] + pd.Timedelta(minutes=5)
