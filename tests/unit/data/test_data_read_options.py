"""Reading unusual files: day/month order, delimiters, other time columns, headerless
exports, damaged archives (`ReadOptions`), never a silent misreading."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire.data import DataError, ReadOptions, load_ohlcv, normalize_ohlcv, read_ohlcv
from sapphire.data.samples import SAMPLE_PATH


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    """48 real hourly-spaced bars (BTC prices), times 2024-03-01 00:00 to 03-02 23:00 UTC."""
    raw = pd.read_csv(SAMPLE_PATH, nrows=48)
    times = pd.date_range("2024-03-01", periods=48, freq="1h", tz="UTC").as_unit("ns")
    return raw.assign(timestamp=times)


def _write(frame: pd.DataFrame, path: Path, fmt: str | None = None, **csv: object) -> Path:
    out = frame.copy()
    if fmt is not None:
        out["timestamp"] = out["timestamp"].dt.strftime(fmt)
    out.to_csv(path, index=False, **csv)  # type: ignore[arg-type]
    return path


def test_ambiguous_day_month_dates_are_refused_then_read_with_date_format(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    path = _write(bars, tmp_path / "eu.csv", "%d/%m/%Y %H:%M")  # 01/03/2024 and 02/03/2024
    with pytest.raises(DataError, match=r"could be day-first or month-first.*--date-format"):
        read_ohlcv(path)
    frame = read_ohlcv(path, read=ReadOptions(date_format="%d/%m/%Y %H:%M"))
    pd.testing.assert_series_equal(frame["timestamp"], bars["timestamp"])


@pytest.mark.parametrize(
    ("fmt", "start"),
    [
        ("%d/%m/%Y %H:%M", "2024-03-13"),
        ("%m/%d/%Y %H:%M", "2024-03-13"),
        ("%d.%m.%Y", "2024-01-13"),
    ],
)
def test_day_or_month_first_is_decided_by_the_whole_column(
    bars: pd.DataFrame, tmp_path: Path, fmt: str, start: str
) -> None:
    """One value with a field above 12 anywhere decides the order of every row: the
    first rows (day 01 to 12 of month 03) are not read month-first."""
    freq = "1D" if "%H" not in fmt else "1h"
    times = pd.date_range(f"{start[:8]}01", periods=13 * (24 if freq == "1h" else 1), freq=freq)
    frame = pd.DataFrame(
        {
            "timestamp": times.tz_localize("UTC").as_unit("ns"),
            "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0,
        }
    )  # fmt: skip
    loaded = read_ohlcv(_write(frame, tmp_path / "bars.csv", fmt))
    pd.testing.assert_series_equal(loaded["timestamp"], frame["timestamp"])


def test_day_first_and_month_first_in_one_column_are_refused(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    text = ["13/03/2024 00:00", "03/14/2024 00:00"]
    frame = bars.iloc[:2].assign(timestamp=text)
    with pytest.raises(DataError, match=r"row 0 \('13/03/2024 00:00'\) is day-first but row 1"):
        normalize_ohlcv(frame)


def test_a_date_format_that_does_not_fit_names_the_row(bars: pd.DataFrame) -> None:
    frame = bars.assign(timestamp=bars["timestamp"].dt.strftime("%Y-%m-%d %H:%M"))
    with pytest.raises(DataError, match=r"row 0: timestamp '2024-03-01 00:00' does not match"):
        normalize_ohlcv(frame, date_format="%d/%m/%Y %H:%M")


def test_iso_and_epoch_times_need_no_date_format(bars: pd.DataFrame, tmp_path: Path) -> None:
    iso = read_ohlcv(_write(bars, tmp_path / "iso.csv", "%Y-%m-%d %H:%M"))
    epoch = bars.assign(timestamp=bars["timestamp"].astype("int64") // 10**6)
    pd.testing.assert_series_equal(iso["timestamp"], bars["timestamp"])
    pd.testing.assert_series_equal(normalize_ohlcv(epoch)["timestamp"], bars["timestamp"])


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_delimiter_is_detected(bars: pd.DataFrame, tmp_path: Path, sep: str) -> None:
    frame = read_ohlcv(_write(bars, tmp_path / "bars.csv.gz", sep=sep))
    pd.testing.assert_frame_equal(frame, bars[frame.columns], check_dtype=False)


def test_a_wrong_delimiter_is_named_in_the_error(bars: pd.DataFrame, tmp_path: Path) -> None:
    path = _write(bars, tmp_path / "bars.csv", sep=";")
    with pytest.raises(DataError, match=r"read with delimiter ',': pass delimiter \(--delimiter\)"):
        read_ohlcv(path, read=ReadOptions(delimiter=","))
    assert len(read_ohlcv(path, read=ReadOptions(delimiter=";"))) == 48


def test_decimal_commas_are_named_not_misread(bars: pd.DataFrame, tmp_path: Path) -> None:
    path = _write(bars, tmp_path / "eu.csv", sep=";", decimal=",")
    with pytest.raises(DataError, match=r"row 0: open '46319,0' is not a number \(a decimal comma"):
        read_ohlcv(path)


def test_another_time_column_is_named_with_time_column(bars: pd.DataFrame, tmp_path: Path) -> None:
    path = _write(bars.rename(columns={"timestamp": "timestamp_utc"}), tmp_path / "b.csv")
    with pytest.raises(DataError, match=r"no time column: .*--time-column NAME.*timestamp_utc"):
        read_ohlcv(path)
    frame = read_ohlcv(path, read=ReadOptions(time_column="timestamp_utc"))
    pd.testing.assert_series_equal(frame["timestamp"], bars["timestamp"])
    with pytest.raises(DataError, match=r"no time column 'opened' \(time_column\); found columns"):
        read_ohlcv(path, read=ReadOptions(time_column="opened"))


def _kline(bars: pd.DataFrame, path: Path) -> Path:
    """A Binance kline export: no header, open time in epoch ms, 12 columns."""
    ms = bars["timestamp"].astype("int64") // 10**6
    table = pd.DataFrame(
        {
            "open_time": ms, "open": bars["open"], "high": bars["high"], "low": bars["low"],
            "close": bars["close"], "volume": bars["volume"], "close_time": ms + 3_599_999,
            "quote_volume": 1.0, "count": 7, "taker_base": 0.5, "taker_quote": 0.5, "ignore": 0,
        }
    )  # fmt: skip
    table.to_csv(path, index=False, header=False)
    return path


def test_a_headerless_kline_export_gets_a_hint_then_reads_with_columns(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    path = _kline(bars, tmp_path / "BTCUSDT-1h-2024-03.csv")
    with pytest.raises(DataError, match=r"the first row looks like data, not a header.*--columns"):
        read_ohlcv(path)
    frame, report = load_ohlcv(
        path, read=ReadOptions(columns="open_time,open,high,low,close,volume")
    )
    pd.testing.assert_frame_equal(frame, bars[frame.columns], check_dtype=False)
    assert "ignored column(s): column_7, column_8" in report.summary()
    with pytest.raises(DataError, match=r"columns gives 13 names but the file has 12 column"):
        read_ohlcv(path, read=ReadOptions(columns=",".join(f"c{i}" for i in range(13))))


def test_columns_is_refused_for_files_that_name_their_columns(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    bars.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(
        DataError, match=r"columns names the columns of a CSV file without a header"
    ):
        read_ohlcv(
            tmp_path / "b.parquet", read=ReadOptions(columns="open_time,open,high,low,close")
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimiter": ";;"}, r"bad delimiter ';;'"),
        ({"columns": "open_time,,close"}, r"bad columns 'open_time,,close'"),
        ({"columns": "open,open"}, r"open named twice"),
        ({"date_format": "dd/mm/yyyy"}, r"bad date_format 'dd/mm/yyyy'"),
    ],
)
def test_bad_read_options_are_named(options: dict[str, str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        ReadOptions(**options)  # type: ignore[arg-type]


def test_a_tab_delimiter_can_be_written_as_backslash_t() -> None:
    assert ReadOptions(delimiter="\\t").delimiter == ReadOptions(delimiter="tab").delimiter == "\t"


def test_a_truncated_gzip_file_is_named_as_corrupt(tmp_path: Path) -> None:
    whole = SAMPLE_PATH.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: corrupt or truncated gzip file"):
        read_ohlcv(cut)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"not gzip at all\n" * 10)
    with pytest.raises(DataError, match=r"bad\.csv\.gz: corrupt or truncated gzip file"):
        read_ohlcv(bad)
    assert gzip.decompress(whole)  # the sample itself is whole


def test_a_normalised_frame_and_the_users_frame_never_change_each_other(
    bars: pd.DataFrame,
) -> None:
    """Columns are taken without copying (copy-on-write): writing to either side later
    leaves the other as it was."""
    user = bars.assign(timestamp=bars["timestamp"].dt.as_unit("us"))
    user.index = np.arange(len(user)) + 10
    ours = normalize_ohlcv(user)
    first_open = float(ours["open"].iloc[0])
    user.loc[10, "open"] = -1.0
    assert ours["open"].iloc[0] == first_open
    ours.loc[0, "close"] = -2.0
    assert user["close"].iloc[0] == bars["close"].iloc[0]
