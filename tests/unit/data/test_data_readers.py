"""Reading bar files and normalising user frames into the canonical OHLCV frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import COLUMNS, DATA_DIR

from sapphire.data import DataError, normalize_ohlcv, read_ohlcv
from sapphire.data.samples import SAMPLE_PATH

Writer = Callable[[pd.DataFrame, Path], Path]


def _epoch(frame: pd.DataFrame, unit: str) -> pd.Series:
    ns = frame["timestamp"].dt.as_unit("ns").astype("int64")
    return ns // {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]


def _csv(name: str, transform: Callable[[pd.DataFrame], pd.DataFrame]) -> Writer:
    def write(frame: pd.DataFrame, folder: Path) -> Path:
        path = folder / name
        transform(frame.copy()).to_csv(path, index=False)
        return path

    return write


def _parquet(transform: Callable[[pd.DataFrame], pd.DataFrame], index: bool = False) -> Writer:
    def write(frame: pd.DataFrame, folder: Path) -> Path:
        path = folder / "bars.parquet"
        transform(frame.copy()).to_parquet(path, index=index)
        return path

    return write


def _iso_naive(f: pd.DataFrame) -> pd.DataFrame:
    f["timestamp"] = f["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return f


def _iso_z(f: pd.DataFrame) -> pd.DataFrame:
    f["timestamp"] = f["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f


def _iso_tokyo(f: pd.DataFrame) -> pd.DataFrame:
    f["timestamp"] = f["timestamp"].dt.tz_convert("Asia/Tokyo").map(pd.Timestamp.isoformat)
    return f


def _epoch_as(unit: str, column: str = "timestamp") -> Callable[[pd.DataFrame], pd.DataFrame]:
    def transform(f: pd.DataFrame) -> pd.DataFrame:
        f[column] = _epoch(f, unit)
        return f.drop(columns=["timestamp"]) if column != "timestamp" else f

    return transform


def _upper(f: pd.DataFrame) -> pd.DataFrame:
    f = _iso_naive(f)
    return f.rename(columns={c: c.upper() for c in f.columns})


def _date_title(f: pd.DataFrame) -> pd.DataFrame:
    return f.rename(columns={"timestamp": "Date", "close": "Close", "volume": "Volume"})


def _naive(f: pd.DataFrame) -> pd.DataFrame:
    f["timestamp"] = f["timestamp"].dt.tz_localize(None)
    return f


def _indexed(f: pd.DataFrame) -> pd.DataFrame:
    return f.set_index("timestamp")


def _extra_columns(f: pd.DataFrame) -> pd.DataFrame:
    f["trades"] = np.arange(len(f))
    f["symbol"] = "XRP/USDT:USDT"
    return f[["symbol", "open", "high", "low", "close", "volume", "trades", "timestamp"]]


WRITERS: dict[str, Writer] = {
    "csv-iso-naive": _csv("bars.csv", _iso_naive),
    "csv-iso-z": _csv("bars.csv", _iso_z),
    "csv-iso-tokyo-offset": _csv("bars.csv", _iso_tokyo),
    "csv-gz-iso": _csv("bars.csv.gz", _iso_naive),
    "csv-epoch-s": _csv("bars.csv", _epoch_as("s")),
    "csv-epoch-ms-open_time": _csv("bars.csv", _epoch_as("ms", "open_time")),
    "csv-epoch-us-time": _csv("bars.csv", _epoch_as("us", "time")),
    "csv-epoch-ns-datetime": _csv("bars.csv", _epoch_as("ns", "datetime")),
    "csv-upper-case-names": _csv("bars.csv", _upper),
    "csv-extra-columns-reordered": _csv("bars.csv", lambda f: _iso_z(_extra_columns(f))),
    "parquet-aware": _parquet(lambda f: f),
    "parquet-naive-date-title-case": _parquet(lambda f: _date_title(_naive(f))),
    "parquet-epoch-ms": _parquet(_epoch_as("ms")),
    "parquet-datetime-index": _parquet(_indexed, index=True),
    "feather-aware": lambda f, d: _write_feather(f, d / "bars.feather"),
    "feather-tokyo-tz": lambda f, d: _write_feather(
        f.assign(timestamp=f["timestamp"].dt.tz_convert("Asia/Tokyo")), d / "bars.feather"
    ),
}


def _write_feather(frame: pd.DataFrame, path: Path) -> Path:
    frame.reset_index(drop=True).to_feather(path)
    return path


def _assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    assert isinstance(frame.index, pd.RangeIndex)
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(frame[c].dtype == np.float64 for c in COLUMNS[1:])


def test_reads_the_bundled_btc_month_as_the_canonical_frame(btc_bars: pd.DataFrame) -> None:
    frame = read_ohlcv(SAMPLE_PATH)
    _assert_canonical(frame)
    assert len(frame) == 45_031
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2021-12-31 23:01", tz="UTC")
    assert frame["timestamp"].iloc[-1] == pd.Timestamp("2022-02-01 05:31", tz="UTC")
    pd.testing.assert_frame_equal(frame, btc_bars)


@pytest.mark.parametrize("encoding", list(WRITERS))
def test_every_encoding_reads_back_identical(
    encoding: str, xrp_bars: pd.DataFrame, tmp_path: Path
) -> None:
    path = WRITERS[encoding](xrp_bars, tmp_path)
    frame = read_ohlcv(path)
    _assert_canonical(frame)
    pd.testing.assert_frame_equal(frame, xrp_bars)


def test_btc_month_round_trips_through_csv_parquet_and_feather(
    btc_bars: pd.DataFrame, tmp_path: Path
) -> None:
    _csv("btc.csv", _epoch_as("ms"))(btc_bars, tmp_path)
    btc_bars.to_parquet(tmp_path / "btc.parquet")
    _write_feather(btc_bars, tmp_path / "btc.feather")
    for name in ("btc.csv", "btc.parquet", "btc.feather"):
        pd.testing.assert_frame_equal(read_ohlcv(tmp_path / name), btc_bars)


def test_the_real_fx_file_without_volume_gets_zero_volume() -> None:
    frame = read_ohlcv(DATA_DIR / "fxcm-gbpusd-m1-bid-2012.csv.gz")
    raw = pd.read_csv(DATA_DIR / "fxcm-gbpusd-m1-bid-2012.csv.gz")
    _assert_canonical(frame)
    assert len(frame) == len(raw) == 30_117
    assert (frame["volume"] == 0.0).all()
    np.testing.assert_array_equal(frame["close"].to_numpy(), raw["close"].to_numpy())
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2012-02-01", tz="UTC")


def test_normalize_keeps_a_canonical_frame_without_copying(btc_bars: pd.DataFrame) -> None:
    frame = normalize_ohlcv(btc_bars)
    assert frame is not btc_bars
    for column in COLUMNS[1:]:
        assert np.shares_memory(frame[column].to_numpy(), btc_bars[column].to_numpy())
    frame.loc[0, "close"] = -1.0  # copy-on-write: the caller's frame is untouched
    assert btc_bars.loc[0, "close"] == 46377.0


def test_normalize_renumbers_a_slice_without_copying(btc_bars: pd.DataFrame) -> None:
    piece = btc_bars.iloc[1000:2000]
    frame = normalize_ohlcv(piece)
    assert isinstance(frame.index, pd.RangeIndex) and frame.index[0] == 0
    assert np.shares_memory(frame["close"].to_numpy(), btc_bars["close"].to_numpy())
    pd.testing.assert_frame_equal(frame, piece.reset_index(drop=True))


def test_normalize_converts_microsecond_resolution_to_nanoseconds(btc_df: pd.DataFrame) -> None:
    assert str(btc_df["timestamp"].dtype) == "datetime64[us, UTC]"
    frame = normalize_ohlcv(btc_df)
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["timestamp"].iloc[1] == pd.Timestamp("2021-12-31 23:02", tz="UTC")


def test_normalize_uses_a_datetime_index_when_there_is_no_time_column(
    xrp_bars: pd.DataFrame,
) -> None:
    indexed = xrp_bars.set_index("timestamp")
    pd.testing.assert_frame_equal(normalize_ohlcv(indexed), xrp_bars)


def test_time_column_priority_follows_the_documented_order(xrp_bars: pd.DataFrame) -> None:
    frame = xrp_bars.rename(columns={"timestamp": "time"})
    frame["date"] = frame["time"] + pd.Timedelta(hours=1)  # `date` outranks `time`
    result = normalize_ohlcv(frame)
    assert result["timestamp"].iloc[0] == xrp_bars["timestamp"].iloc[0] + pd.Timedelta(hours=1)


def test_numeric_text_and_integer_prices_become_float64(xrp_bars: pd.DataFrame) -> None:
    frame = xrp_bars.copy()
    frame["volume"] = frame["volume"].round().astype("int64")
    frame["open"] = frame["open"].astype(str)
    result = normalize_ohlcv(frame)
    assert result["volume"].dtype == np.float64 and result["open"].dtype == np.float64
    np.testing.assert_allclose(result["open"], xrp_bars["open"])


def test_missing_price_column_names_it_and_the_columns_found(xrp_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) close; found columns: timestamp"):
        normalize_ohlcv(xrp_bars.drop(columns=["close"]))


def test_missing_time_column_lists_what_was_expected(xrp_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no time column: expected one of timestamp, date"):
        normalize_ohlcv(xrp_bars.rename(columns={"timestamp": "when"}))


def test_unreadable_time_text_names_the_row_and_value(xrp_bars: pd.DataFrame) -> None:
    frame = _iso_naive(xrp_bars.copy())
    frame.loc[7, "timestamp"] = "yesterday-ish"
    with pytest.raises(DataError, match="row 7: cannot read timestamp 'yesterday-ish'"):
        normalize_ohlcv(frame)


def test_a_price_that_is_not_a_number_names_the_row_and_value(xrp_bars: pd.DataFrame) -> None:
    frame = xrp_bars.astype({"high": object})
    frame.loc[12, "high"] = "1.2x"
    with pytest.raises(DataError, match=r"row 12: high '1\.2x' is not a number"):
        normalize_ohlcv(frame)


def test_a_missing_time_names_the_row(xrp_bars: pd.DataFrame) -> None:
    frame = xrp_bars.copy()
    frame["timestamp"] = _epoch(frame, "ms").astype("float64")
    frame.loc[3, "timestamp"] = np.nan
    with pytest.raises(DataError, match="row 3: timestamp is missing"):
        normalize_ohlcv(frame)


def test_bad_files_raise_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_ohlcv(tmp_path / "absent.csv")
    (tmp_path / "bars.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_ohlcv(tmp_path / "bars.xlsx")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read the file"):
        read_ohlcv(tmp_path / "broken.parquet")


def test_file_errors_name_the_file(xrp_bars: pd.DataFrame, tmp_path: Path) -> None:
    frame = xrp_bars.copy()
    frame.loc[5, "volume"] = -1.0
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"^bad.parquet: row 5 .*volume -1.0 is negative"):
        read_ohlcv(tmp_path / "bad.parquet")
