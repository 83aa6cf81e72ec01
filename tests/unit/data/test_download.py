"""Downloads' offline parts: what is left to fetch, the catalog's covered spans and funding
file, and the errors a user can cause before any request (the exchange side is in
tests/integration/test_data_download.py)."""

from __future__ import annotations

import json
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from sapphire.data import Catalog, DataError, read_funding
from sapphire.data.download import download_ohlcv, missing_spans, open_exchange
from sapphire.data.samples import SAMPLE_PATH

T0 = pd.Timestamp("2022-01-01", tz="UTC")
MINUTE = pd.Timedelta("1min")


@pytest.mark.parametrize(
    ("covered", "left"),
    [
        ([], [(0, 100)]),
        ([(0, 100)], []),
        ([(-50, 300)], []),
        ([(20, 40)], [(0, 20), (40, 100)]),
        ([(60, 70), (20, 40)], [(0, 20), (40, 60), (70, 100)]),
        ([(-10, 30), (90, 120)], [(30, 90)]),
        ([(100, 200), (-20, 0)], [(0, 100)]),  # touching the range is not covering it
    ],
)
def test_missing_spans_are_the_range_minus_what_is_covered(
    covered: list[tuple[int, int]], left: list[tuple[int, int]]
) -> None:
    assert missing_spans((0, 100), covered) == left


def test_frames_record_the_span_they_cover_and_spans_merge(btc_bars: pd.DataFrame) -> None:
    catalog = Catalog()
    first = btc_bars.iloc[:100]
    span = (T0 - pd.Timedelta("1h"), first["timestamp"].iloc[-1] + MINUTE)
    entry = catalog.import_frame(
        first, symbol="BTC/USDT:USDT", venue="Bybit", timeframe="1m", source="test", covered=span
    )
    assert (entry.venue, entry.rows, entry.covered) == ("bybit", 100, (span,))
    assert entry.last_import is not None and entry.last_import.source == "test"
    later = btc_bars.iloc[300:400]
    entry = catalog.import_frame(
        later, symbol="BTC/USDT:USDT", venue="bybit", timeframe="1m", source="test"
    )
    own = (later["timestamp"].iloc[0], later["timestamp"].iloc[-1] + MINUTE)
    assert entry.covered == (span, own) and entry.rows == 200
    gap = (span[1], own[0])
    entry = catalog.add_covered("BTC/USDT:USDT", venue="bybit", timeframe="1m", span=gap)
    assert entry.covered == ((span[0], own[1]),)  # one span: nothing is left to fetch
    assert Catalog().entry("BTC/USDT:USDT").covered == entry.covered  # it is in meta.json


def test_a_file_import_covers_its_bars_and_old_entries_their_range(sapphire_home: Path) -> None:
    entry = Catalog().import_file(SAMPLE_PATH, symbol="BTC/USD:USD", venue="ftx")
    assert entry.covered == ((entry.start, entry.end + MINUTE),)
    meta_path = entry.path.parent / "meta.json"
    old = json.loads(meta_path.read_text())
    del old["covered"]  # an entry written before downloads existed
    meta_path.write_text(json.dumps(old))
    assert Catalog().entry("BTC/USD:USD").covered == ((entry.start, entry.end + MINUTE),)


def test_funding_rates_merge_into_a_file_that_funding_reads(sapphire_home: Path) -> None:
    catalog = Catalog()
    times = pd.date_range(T0, periods=4, freq="8h")
    path, added = catalog.store_funding(
        pd.Series([0.0001, -0.0002, 0.0003, 0.0001], index=times),
        symbol="BTC/USDT:USDT",
        venue="Bybit",
    )
    assert path == sapphire_home / "catalog" / "bybit" / "BTC_USDT_USDT" / "funding.parquet"
    assert added == 4
    newer = pd.Series([0.0005, 0.0004], index=times[3:].append(times[3:] + pd.Timedelta("8h")))
    path, added = catalog.store_funding(newer, symbol="BTC/USDT:USDT", venue="bybit")
    assert added == 1  # the rate at times[3] is replaced, not added
    rates = read_funding(path)
    assert list(rates) == [0.0001, -0.0002, 0.0003, 0.0005, 0.0004]
    assert list(rates.index) == [*times, times[-1] + pd.Timedelta("8h")]
    pd.testing.assert_series_equal(catalog.load_funding("BTC/USDT:USDT", venue="bybit"), rates)
    with pytest.raises(DataError, match=r"no funding rates for 'ETH/USDT:USDT' on 'bybit'"):
        catalog.load_funding("ETH/USDT:USDT", venue="bybit")
    with pytest.raises(DataError, match=r"funding rate 5\.0 is not a funding rate"):
        catalog.store_funding(pd.Series([5.0], index=times[:1]), symbol="X", venue="bybit")


def test_unknown_exchanges_and_bad_urls_are_named_with_close_matches() -> None:
    with pytest.raises(DataError, match=r"unknown exchange 'bybitt'; did you mean bybit"):
        open_exchange("bybitt")
    with pytest.raises(DataError, match=r"unknown exchange 'nosuchplace'$"):
        open_exchange("nosuchplace")
    with pytest.raises(DataError, match=r"bad url 'localhost:8000': expected http://"):
        open_exchange("bybit", "localhost:8000")
    local = open_exchange("Bybit", "http://127.0.0.1:9/")
    assert local.enableRateLimit
    assert set(local.urls["api"].values()) == {"http://127.0.0.1:9"}


def test_bad_arguments_fail_before_any_request() -> None:
    offline = ccxt.bybit()  # no markets loaded: a request would be needed to get past these
    with pytest.raises(DataError, match=r"timeframe '1x' is not offered by bybit"):
        download_ohlcv("bybit", "BTC/USDT:USDT", "1x", "2022-01-01", exchange=offline)
    with pytest.raises(DataError, match=r"bad chunk 0"):
        download_ohlcv("bybit", "BTC/USDT:USDT", "1m", "2022-01-01", exchange=offline, chunk=0)
    with pytest.raises(DataError, match=r"timeframe '1M'.*not supported"):
        download_ohlcv("bybit", "BTC/USDT:USDT", "1M", "2022-01-01", exchange=offline)
