"""The local Parquet catalog: import, list, load, re-import and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import DATA_DIR

from sapphire.data import Catalog, DataError, read_ohlcv
from sapphire.data.samples import SAMPLE_PATH

ADA = DATA_DIR / "binance-ADA_BTC-5m.feather"
ETH = DATA_DIR / "binance-ETH_BTC-5m.feather"


def test_import_stores_parquet_and_metadata_under_sapphire_home(sapphire_home: Path) -> None:
    catalog = Catalog()
    entry = catalog.import_file(
        SAMPLE_PATH, symbol="BTC/USD:USD", venue="FTX", tick_size=1.0, lot_size=0.0001
    )
    folder = sapphire_home / "catalog" / "ftx" / "BTC_USD_USD" / "1m"
    assert entry.path == folder / "data.parquet" and entry.path.is_file()
    assert (entry.symbol, entry.venue, entry.timeframe, entry.rows) == (
        "BTC/USD:USD",
        "ftx",
        "1m",
        45_031,
    )
    assert entry.start == pd.Timestamp("2021-12-31 23:01", tz="UTC")
    assert entry.end == pd.Timestamp("2022-02-01 05:31", tz="UTC")
    assert (entry.tick_size, entry.lot_size) == (1.0, 0.0001)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["symbol"] == "BTC/USD:USD" and meta["rows"] == 45_031
    assert meta["source"] == str(SAMPLE_PATH.resolve())
    assert pd.Timestamp(meta["imported_at"]).tzinfo is not None
    pd.testing.assert_frame_equal(pd.read_parquet(entry.path), read_ohlcv(SAMPLE_PATH))


def test_entries_lists_and_filters(btc_bars: pd.DataFrame) -> None:
    catalog = Catalog()
    catalog.import_file(ETH, symbol="ETH/BTC", venue="binance")
    catalog.import_file(ADA, symbol="ADA/BTC", venue="binance")
    catalog.import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx")
    assert [e.symbol for e in catalog.entries()] == ["ADA/BTC", "BTC/USD:USD", "ETH/BTC"]
    (ada,) = catalog.entries("ADA/BTC")
    assert (ada.rows, ada.gap_count, ada.missing_bars) == (5_720, 5, 40)
    assert ada.largest_gap == pd.Timedelta(minutes=165)
    assert catalog.entries("eth/btc")[0].symbol == "ETH/BTC"  # any case when unambiguous
    assert catalog.entries("DOGE/USDT") == []


def test_load_by_symbol_and_date_range(btc_bars: pd.DataFrame) -> None:
    catalog = Catalog()
    catalog.import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx")
    pd.testing.assert_frame_equal(catalog.load("BTC/USD:USD"), btc_bars)
    day = catalog.load("BTC/USD:USD", start="2022-01-05", end=pd.Timestamp("2022-01-06"))
    times = btc_bars["timestamp"]
    expected = btc_bars[(times >= "2022-01-05") & (times < "2022-01-06")].reset_index(drop=True)
    pd.testing.assert_frame_equal(day, expected)
    assert len(day) == 1_440
    aware = catalog.load(
        "BTC/USD:USD", start=pd.Timestamp("2022-01-05 01:00", tz="Europe/Paris"), end=None
    )
    assert aware["timestamp"].iloc[0] == pd.Timestamp("2022-01-05 00:00", tz="UTC")
    assert aware["timestamp"].iloc[-1] == times.iloc[-1]


def test_reimport_merges_and_the_new_bars_win(btc_bars: pd.DataFrame, tmp_path: Path) -> None:
    first, second = btc_bars.iloc[:30_000], btc_bars.iloc[20_000:].copy()
    second.loc[20_000:20_009, "volume"] += 1.0  # a corrected stretch of 10 bars
    first.to_parquet(tmp_path / "first.parquet")
    second.reset_index(drop=True).to_feather(tmp_path / "second.feather")
    catalog = Catalog()
    catalog.import_file(tmp_path / "first.parquet", symbol="BTC/USD:USD", venue="ftx")
    entry = catalog.import_file(tmp_path / "second.feather", symbol="BTC/USD:USD", venue="ftx")
    assert entry.rows == len(btc_bars)
    stats = entry.last_import
    assert stats is not None
    assert (stats.rows_read, stats.added, stats.replaced, stats.changed) == (
        25_031,
        15_031,
        10_000,
        10,
    )
    expected = btc_bars.copy()
    expected.loc[20_000:20_009, "volume"] += 1.0
    pd.testing.assert_frame_equal(catalog.load("BTC/USD:USD"), expected)
    meta = json.loads((entry.path.parent / "meta.json").read_text())
    assert [i["added"] for i in meta["imports"]] == [30_000, 15_031]


def test_reimporting_the_same_file_changes_nothing(btc_bars: pd.DataFrame) -> None:
    catalog = Catalog()
    catalog.import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx", tick_size=0.5)
    entry = catalog.import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx")
    assert entry.rows == 45_031 and entry.tick_size == 0.5  # kept when not given again
    assert entry.last_import is not None
    assert (entry.last_import.added, entry.last_import.replaced) == (0, 45_031)
    assert entry.last_import.changed == 0
    pd.testing.assert_frame_equal(catalog.load("BTC/USD:USD"), btc_bars)


def test_reimport_fills_the_hole_between_old_and_new_with_ffill(
    eth_bars: pd.DataFrame, tmp_path: Path
) -> None:
    eth_bars.iloc[:100].to_parquet(tmp_path / "a.parquet")
    eth_bars.iloc[110:200].to_parquet(tmp_path / "b.parquet")
    catalog = Catalog()
    catalog.import_file(tmp_path / "a.parquet", symbol="ETH/BTC", venue="binance")
    entry = catalog.import_file(
        tmp_path / "b.parquet", symbol="ETH/BTC", venue="binance", gaps="ffill"
    )
    assert entry.rows == 200 and entry.gap_count == 0
    assert entry.last_import is not None and entry.last_import.filled == 10
    loaded = catalog.load("ETH/BTC")
    assert (loaded.loc[100:109, "close"] == eth_bars.loc[99, "close"]).all()


def test_ffill_import_stores_no_gaps() -> None:
    entry = Catalog().import_file(ADA, symbol="ADA/BTC", venue="binance", gaps="ffill")
    assert (entry.rows, entry.gap_count, entry.largest_gap) == (5_760, 0, None)


def test_unknown_symbols_list_what_the_catalog_has() -> None:
    catalog = Catalog()
    with pytest.raises(DataError, match=r"the catalog at .* is empty"):
        catalog.load("BTC/USDT")
    catalog.import_file(ETH, symbol="ETH/BTC", venue="binance")
    with pytest.raises(DataError, match=r"'BTC/USDT' is not in the catalog; it has: ETH/BTC \("):
        catalog.load("BTC/USDT")


def test_ambiguous_symbols_ask_for_venue_or_timeframe(
    eth_bars: pd.DataFrame, tmp_path: Path
) -> None:
    from sapphire.data import resample_ohlcv

    resample_ohlcv(eth_bars, "1h").to_parquet(tmp_path / "eth-1h.parquet")
    catalog = Catalog()
    catalog.import_file(ETH, symbol="ETH/BTC", venue="binance")
    catalog.import_file(tmp_path / "eth-1h.parquet", symbol="ETH/BTC", venue="binance")
    catalog.import_file(ETH, symbol="ETH/BTC", venue="kraken")
    with pytest.raises(DataError, match=r"more than once \(binance 5m, binance 1h, kraken 5m\)"):
        catalog.load("ETH/BTC")
    with pytest.raises(DataError, match="--venue/--timeframe"):
        catalog.load("ETH/BTC", venue="binance")
    hourly = catalog.load("ETH/BTC", venue="binance", timeframe="1h")
    assert len(hourly) == 481  # partial first (04:55) and last bins included
    assert len(catalog.load("ETH/BTC", venue="Kraken")) == 5_760
    with pytest.raises(DataError, match="has no bybit entry"):
        catalog.load("ETH/BTC", venue="bybit")


def test_a_timeframe_that_disagrees_is_refused_and_nothing_is_written(
    sapphire_home: Path,
) -> None:
    catalog = Catalog()
    with pytest.raises(DataError, match="timeframe 1m was given but the bars are 5m apart"):
        catalog.import_file(ETH, symbol="ETH/BTC", venue="binance", timeframe="1m")
    assert catalog.entries() == []
    assert not any(p.is_file() for p in (sapphire_home / "catalog").rglob("*"))


def test_invalid_data_is_refused_before_anything_is_written(
    eth_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bad = eth_bars.copy()
    bad.loc[42, "low"] = bad.loc[42, "high"] * 2
    bad.to_feather(tmp_path / "bad.feather")
    catalog = Catalog()
    with pytest.raises(DataError, match=r"bad.feather: row 42 \(2018-01-10 08:25"):
        catalog.import_file(tmp_path / "bad.feather", symbol="ETH/BTC", venue="binance")
    assert catalog.entries() == []


def test_an_empty_range_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "elsewhere")
    catalog.import_file(ETH, symbol="ETH/BTC", venue="binance")
    assert catalog.entries()[0].path.is_relative_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"no bars from 2020-01-01 00:00:00\+00:00"):
        catalog.load("ETH/BTC", start="2020-01-01")
    with pytest.raises(DataError, match=r"start .* is not before end"):
        catalog.load("ETH/BTC", start="2018-01-20", end="2018-01-19")
    with pytest.raises(DataError, match="bad start 'soon'"):
        catalog.load("ETH/BTC", start="soon")
    with pytest.raises(DataError, match="bad tick size -1"):
        catalog.import_file(ETH, symbol="ETH/BTC", venue="binance", tick_size=-1)
    with pytest.raises(DataError, match="bad symbol ' '"):
        catalog.import_file(ETH, symbol=" ", venue="binance")


def test_symbols_that_share_a_folder_name_are_refused() -> None:
    catalog = Catalog()
    catalog.import_file(ETH, symbol="ETH/BTC", venue="binance")
    with pytest.raises(DataError, match="would share the folder"):
        catalog.import_file(ETH, symbol="ETH:BTC", venue="binance")
    assert [e.symbol for e in catalog.entries()] == ["ETH/BTC"]
