"""`load_ohlcv`: one entry point for DataFrames, files and catalog symbols."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from data_helpers import DATA_DIR

from sapphire.data import Catalog, DataError, load_ohlcv
from sapphire.data.samples import SAMPLE_PATH


def test_a_dataframe_a_path_and_a_string_path_load_the_same(btc_bars: pd.DataFrame) -> None:
    from_frame, report = load_ohlcv(btc_bars)
    from_path, _ = load_ohlcv(SAMPLE_PATH)
    from_text, _ = load_ohlcv(str(SAMPLE_PATH))
    pd.testing.assert_frame_equal(from_frame, btc_bars)
    pd.testing.assert_frame_equal(from_path, btc_bars)
    pd.testing.assert_frame_equal(from_text, btc_bars)
    assert report.rows == 45_031 and report.timeframe == pd.Timedelta(minutes=1)


def test_a_catalog_symbol_loads_from_the_catalog(btc_bars: pd.DataFrame) -> None:
    Catalog().import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx")
    frame, report = load_ohlcv("BTC/USD:USD", start="2022-01-10", end="2022-01-10 06:00")
    assert len(frame) == report.rows == 360
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2022-01-10", tz="UTC")
    assert frame["timestamp"].iloc[-1] == pd.Timestamp("2022-01-10 05:59", tz="UTC")
    same, _ = load_ohlcv(btc_bars, start="2022-01-10", end="2022-01-10 06:00")
    pd.testing.assert_frame_equal(frame, same)


def test_naive_times_are_utc_start_inclusive_end_exclusive(eth_bars: pd.DataFrame) -> None:
    start, end = "2018-01-15 10:00", pd.Timestamp("2018-01-15 12:00", tz="Europe/London")
    frame, report = load_ohlcv(eth_bars, start=start, end=end)
    assert report.start == pd.Timestamp("2018-01-15 10:00", tz="UTC")
    assert report.end == pd.Timestamp("2018-01-15 11:55", tz="UTC")
    assert len(frame) == 24


def test_gaps_are_counted_inside_the_range_only(ada_bars: pd.DataFrame) -> None:
    _, whole = load_ohlcv(ada_bars)
    first_gap = ada_bars["timestamp"][ada_bars["timestamp"].diff() > pd.Timedelta(minutes=5)]
    _, before = load_ohlcv(ada_bars, end=first_gap.iloc[0] - pd.Timedelta(minutes=5))
    assert whole.gap_count == 5 and before.gap_count == 0
    frame, filled = load_ohlcv(ada_bars, gaps="ffill")
    assert len(frame) == len(ada_bars) + 40 and filled.filled_bars == 40


def test_notes_from_normalising_reach_the_report() -> None:
    _, report = load_ohlcv(DATA_DIR / "fxcm-gbpusd-m1-bid-2012.csv.gz")
    assert report.notes == ("no volume column: volume set to 0.0",)
    assert report.summary().endswith("; no volume column: volume set to 0.0")


def test_file_and_range_errors_say_what_is_wrong(eth_bars: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_ohlcv(tmp_path / "missing.feather")
    with pytest.raises(DataError, match="file not found"):
        load_ohlcv("data/missing.csv")
    with pytest.raises(DataError, match=r"no bars from 2019-01-01 00:00:00\+00:00 to the end"):
        load_ohlcv(eth_bars, start="2019-01-01")
    with pytest.raises(DataError, match="bad end 'later'"):
        load_ohlcv(eth_bars, end="later")
    with pytest.raises(DataError, match="cannot load bars from a list"):
        load_ohlcv([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="bad gaps policy"):
        load_ohlcv(eth_bars, gaps="interpolate")


def test_validation_errors_name_the_source(eth_bars: pd.DataFrame, tmp_path: Path) -> None:
    bad = eth_bars.copy()
    bad.loc[3, "open"] = float("nan")
    bad.to_csv(tmp_path / "eth.csv", index=False)
    with pytest.raises(DataError, match=r"^eth.csv: row 3 \(2018-01-10 05:10:00\+00:00\): open"):
        load_ohlcv(tmp_path / "eth.csv")
    with pytest.raises(DataError, match="'SOL/USDT' is not in the catalog"):
        load_ohlcv("SOL/USDT")


def test_a_timeframe_is_checked_for_frames_and_selects_in_the_catalog(
    eth_bars: pd.DataFrame,
) -> None:
    with pytest.raises(DataError, match="timeframe 1m was given but the bars are 5m apart"):
        load_ohlcv(eth_bars, timeframe="1m")
    eth_file = DATA_DIR / "binance-ETH_BTC-5m.feather"
    Catalog().import_file(eth_file, symbol="ETH/BTC", venue="binance")
    with pytest.raises(DataError, match="has no 1h entry"):
        load_ohlcv("ETH/BTC", timeframe="1h")
    frame, report = load_ohlcv("ETH/BTC", venue="binance", timeframe="5m")
    pd.testing.assert_frame_equal(frame, eth_bars)
    assert report.timeframe == pd.Timedelta(minutes=5)
