"""VWAP against a plain pandas computation (TA-Lib has no VWAP)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from indicator_helpers import assert_same_series

import sapphire.indicators as ind


def _pandas_vwap(df: pd.DataFrame, period: int | None) -> np.ndarray:
    pv = (df["high"] + df["low"] + df["close"]) / 3 * df["volume"]
    if period is None:
        return (pv.cumsum() / df["volume"].cumsum()).to_numpy()
    return (pv.rolling(period).sum() / df["volume"].rolling(period).sum()).to_numpy()


@pytest.mark.parametrize("period", [None, 1, 2, 14, 390])
def test_vwap_matches_pandas_on_btc_month(btc_df: pd.DataFrame, period: int | None) -> None:
    ours = ind.vwap(btc_df["high"], btc_df["low"], btc_df["close"], btc_df["volume"], period)
    assert_same_series(ours, _pandas_vwap(btc_df, period))


def test_vwap_stays_inside_the_price_range(btc_df: pd.DataFrame) -> None:
    ours = ind.vwap(btc_df["high"], btc_df["low"], btc_df["close"], btc_df["volume"], 30)
    lowest = btc_df["low"].rolling(30).min().to_numpy()
    highest = btc_df["high"].rolling(30).max().to_numpy()
    ok = ~np.isnan(ours)
    assert ((ours[ok] >= lowest[ok]) & (ours[ok] <= highest[ok])).all()


def test_vwap_by_hand_and_without_volume() -> None:
    high = np.array([3.0, 6.0, 9.0, 12.0, 15.0])
    low = np.array([3.0, 6.0, 9.0, 12.0, 15.0])
    volume = np.array([0.0, 1.0, 3.0, 0.0, 0.0])
    # Cumulative: NaN until something trades, then the running weighted mean.
    np.testing.assert_allclose(ind.vwap(high, low, high, volume), [np.nan, 6.0, 8.25, 8.25, 8.25])
    # Rolling 2: a window where nothing traded is NaN, not 0/0 noise.
    np.testing.assert_allclose(
        ind.vwap(high, low, high, volume, 2), [np.nan, 6.0, 8.25, 9.0, np.nan]
    )
    live = ind.VWAP(2)
    np.testing.assert_allclose(
        [live.update(h, h, h, v) for h, v in zip(high, volume, strict=True)],
        [np.nan, 6.0, 8.25, 9.0, np.nan],
    )
