"""Funding-rate series from freqtrade-style and plain files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import DATA_DIR

from sapphire.data import DataError, read_funding
from sapphire.data.funding import MAX_FUNDING_RATE
from sapphire.data.samples import SAMPLE_PATH

FUNDING = DATA_DIR / "binance-XRP_USDT_USDT-8h-funding_rate.feather"


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_feather(FUNDING)


def test_freqtrade_file_reads_the_rate_from_open(raw: pd.DataFrame) -> None:
    rates = read_funding(FUNDING)
    assert len(rates) == len(raw) == 91
    assert rates.name == "funding_rate"
    assert str(rates.index.dtype) == "datetime64[ns, UTC]"
    assert rates.index.is_monotonic_increasing and rates.index.is_unique
    np.testing.assert_array_equal(rates.to_numpy(), raw["open"].to_numpy())
    assert rates.index[0] == pd.Timestamp("2021-11-18 00:00:00.017", tz="UTC")


def test_csv_with_funding_time_in_ms_and_camel_case_rate(raw: pd.DataFrame, tmp_path: Path) -> None:
    ms = raw["date"].dt.as_unit("ns").astype("int64") // 1_000_000
    pd.DataFrame({"fundingTime": ms, "fundingRate": raw["open"]}).to_csv(tmp_path / "f.csv")
    pd.testing.assert_series_equal(read_funding(tmp_path / "f.csv"), read_funding(FUNDING))


def test_parquet_with_iso_text_and_funding_rate(raw: pd.DataFrame, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": raw["date"].map(pd.Timestamp.isoformat),
            "funding_rate": raw["open"],
            "symbol": "XRP/USDT:USDT",
        }
    )
    frame.to_parquet(tmp_path / "f.parquet")
    pd.testing.assert_series_equal(read_funding(tmp_path / "f.parquet"), read_funding(FUNDING))


def test_a_rate_column_wins_over_open(raw: pd.DataFrame, tmp_path: Path) -> None:
    frame = raw.assign(rate=raw["open"] * 2)
    frame.to_feather(tmp_path / "f.feather")
    np.testing.assert_allclose(read_funding(tmp_path / "f.feather"), raw["open"] * 2)


def test_missing_rate_column_is_named(tmp_path: Path) -> None:
    pd.DataFrame({"date": ["2022-01-01"], "premium": [0.1]}).to_csv(tmp_path / "f.csv")
    with pytest.raises(DataError, match=r"no funding-rate column.*found columns: Unnamed: 0, date"):
        read_funding(tmp_path / "f.csv")


def test_duplicate_times_and_nan_rates_name_the_row(raw: pd.DataFrame, tmp_path: Path) -> None:
    duplicated = pd.concat([raw.iloc[:5], raw.iloc[4:]], ignore_index=True)
    duplicated.to_feather(tmp_path / "dup.feather")
    with pytest.raises(DataError, match=r"row 5 \(2021-11-19 08:00:00\+00:00\): duplicate time"):
        read_funding(tmp_path / "dup.feather")
    holed = raw.copy()
    holed.loc[9, "open"] = np.nan
    holed.to_feather(tmp_path / "nan.feather")
    with pytest.raises(DataError, match=r"row 9 \(.*\): funding rate is nan"):
        read_funding(tmp_path / "nan.feather")


def test_a_price_file_is_refused_as_a_funding_file() -> None:
    """The bundled BTC bars have an `open` column: it is a price, not a funding rate."""
    with pytest.raises(DataError, match=r"this is a price file, not a funding file: its high "):
        read_funding(SAMPLE_PATH)


def test_freqtrade_candles_with_prices_beside_the_rate_are_a_price_file(
    raw: pd.DataFrame, tmp_path: Path
) -> None:
    raw.assign(volume=np.where(np.arange(len(raw)) == 7, 3.5, 0.0)).to_feather(
        tmp_path / "f.feather"
    )
    with pytest.raises(DataError, match=r"its volume column holds 3\.5 at row 7"):
        read_funding(tmp_path / "f.feather")


@pytest.mark.parametrize("rate", [0.08, -0.3, 46_000.0])
def test_a_rate_beyond_the_bound_names_row_time_and_value(
    raw: pd.DataFrame, tmp_path: Path, rate: float
) -> None:
    frame = pd.DataFrame({"timestamp": raw["date"], "funding_rate": raw["open"]})
    frame.loc[12, "funding_rate"] = rate
    frame.to_parquet(tmp_path / "f.parquet")
    with pytest.raises(
        DataError,
        match=rf"row 12 \(2021-11-22 00:00:00\.004000\+00:00\): funding rate {rate!r} is "
        rf"not a funding rate: .* within \+-0\.05 .*1 of 91 rates",
    ):
        read_funding(tmp_path / "f.parquet")


def test_the_largest_real_rates_and_the_bound_itself_load(
    raw: pd.DataFrame, tmp_path: Path
) -> None:
    frame = pd.DataFrame({"timestamp": raw["date"], "rate": raw["open"]})
    frame.loc[3, "rate"] = -MAX_FUNDING_RATE
    frame.loc[4, "rate"] = 0.03  # a capped squeeze rate
    frame.to_csv(tmp_path / "f.csv", index=False)
    rates = read_funding(tmp_path / "f.csv")
    assert rates.iloc[3] == -MAX_FUNDING_RATE and rates.iloc[4] == 0.03
