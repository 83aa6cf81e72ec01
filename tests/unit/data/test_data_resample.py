"""Resampling real bars, checked against an independent pandas resample."""

from __future__ import annotations

import pandas as pd
import pytest

from sapphire.data import DataError, resample_ohlcv

AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def _pandas_resample(frame: pd.DataFrame, rule: str, **kwargs: object) -> pd.DataFrame:
    """Reference: pandas resample on epoch-aligned, left-closed, left-labelled bins."""
    options = {"origin": "epoch", "label": "left", "closed": "left", **kwargs}
    out = frame.set_index("timestamp").resample(rule, **options).agg(AGG)
    out = out.dropna(subset=["open"]).reset_index()
    out["timestamp"] = out["timestamp"].dt.as_unit("ns")
    return out


@pytest.mark.parametrize(("target", "rule"), [("5m", "5min"), ("1h", "1h"), ("1d", "24h")])
def test_btc_minutes_match_pandas(target: str, rule: str, btc_bars: pd.DataFrame) -> None:
    ours = resample_ohlcv(btc_bars, target)
    pd.testing.assert_frame_equal(ours, _pandas_resample(btc_bars, rule))


def test_btc_four_hour_bins_start_at_multiples_of_four_hours(btc_bars: pd.DataFrame) -> None:
    ours = resample_ohlcv(btc_bars, "4h")
    assert set(ours["timestamp"].dt.hour) == {0, 4, 8, 12, 16, 20}
    pd.testing.assert_frame_equal(ours, _pandas_resample(btc_bars, "4h"))


def test_eth_btc_five_minutes_to_one_hour_match_pandas(eth_bars: pd.DataFrame) -> None:
    ours = resample_ohlcv(eth_bars, "1h")
    pd.testing.assert_frame_equal(ours, _pandas_resample(eth_bars, "1h"))
    assert (ours["timestamp"].dt.minute == 0).all()


def test_bins_without_source_bars_stay_gaps(ada_bars: pd.DataFrame) -> None:
    ours = resample_ohlcv(ada_bars, "15m")
    reference = _pandas_resample(ada_bars, "15min")
    pd.testing.assert_frame_equal(ours, reference)
    all_bins = pd.date_range(ours["timestamp"].iloc[0], ours["timestamp"].iloc[-1], freq="15min")
    assert len(ours) < len(all_bins)  # the real 2h45m hole is not invented


def test_weekly_bins_start_on_monday(btc_bars: pd.DataFrame) -> None:
    ours = resample_ohlcv(btc_bars, "1w")
    assert (ours["timestamp"].dt.day_of_week == 0).all()
    assert (ours["timestamp"].dt.hour == 0).all()
    reference = _pandas_resample(btc_bars, "W-MON", origin="start_day")
    pd.testing.assert_frame_equal(ours, reference)


def test_partial_first_and_last_bins_are_kept(btc_bars: pd.DataFrame) -> None:
    hourly = resample_ohlcv(btc_bars, "1h")
    first, last = hourly.iloc[0], hourly.iloc[-1]
    assert first["timestamp"] == pd.Timestamp("2021-12-31 23:00", tz="UTC")
    assert first["open"] == btc_bars["open"].iloc[0]  # the 23:01 bar opens the 23:00 bin
    assert first["volume"] == pytest.approx(btc_bars["volume"].iloc[:59].sum())
    assert last["timestamp"] == pd.Timestamp("2022-02-01 05:00", tz="UTC")
    assert last["close"] == btc_bars["close"].iloc[-1]
    assert last["volume"] == pytest.approx(btc_bars["volume"].iloc[-32:].sum())


def test_same_timeframe_returns_the_bars(eth_bars: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(resample_ohlcv(eth_bars, "5m"), eth_bars)


@pytest.mark.parametrize("target", ["7m", "1m", "90s"])
def test_a_target_that_is_not_a_multiple_is_refused(target: str, eth_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=f"cannot resample 5m bars to {target}"):
        resample_ohlcv(eth_bars, target)


def test_bars_off_their_own_grid_are_refused(btc_bars: pd.DataFrame) -> None:
    shifted = btc_bars.assign(timestamp=btc_bars["timestamp"] + pd.Timedelta(seconds=30))
    with pytest.raises(DataError, match=r"row 0 \(2021-12-31 23:01:30\+00:00\): .*1m boundary"):
        resample_ohlcv(shifted, "1h")


def test_bad_timeframe_text_is_refused(eth_bars: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="bad timeframe '1 month'"):
        resample_ohlcv(eth_bars, "1 month")
