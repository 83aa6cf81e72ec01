"""Hypothesis properties of validation, gap filling and resampling on random valid bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.data import DataError, resample_ohlcv, validate_ohlcv

MINUTE_NS = 60 * 10**9


@st.composite
def bars(draw: st.DrawFn, min_size: int = 2) -> pd.DataFrame:
    """Valid bars of a 1m or 5m timeframe with random gaps, prices and volumes."""
    n = draw(st.integers(min_size, 300))
    step = draw(st.sampled_from([1, 5])) * MINUTE_NS
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Some gaps of 2-30 steps; every other spacing is one step, so the step stays the mode.
    jumps = np.where(rng.random(n - 1) < 0.15, rng.integers(2, 30, n - 1), 1)
    jumps[::2] = 1
    start = draw(st.integers(1_500_000_000, 1_700_000_000)) // 300 * 300 * 10**9
    times = start + np.concatenate([[0], np.cumsum(jumps)]) * step
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + rng.random(n) * 0.01)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 0.01)
    volume = np.where(rng.random(n) < 0.1, 0.0, rng.random(n) * 1e3)
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(times, unit="ns", utc=True).as_unit("ns"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


@settings(max_examples=40, deadline=None)
@given(frame=bars(), factor=st.sampled_from([2, 3, 12, 60]))
def test_resampling_preserves_volume_extremes_and_ends(frame: pd.DataFrame, factor: int) -> None:
    base = validate_ohlcv(frame)[1].timeframe
    out = resample_ohlcv(frame, base * factor)
    assert out["volume"].sum() == pytest.approx(frame["volume"].sum(), rel=1e-9, abs=1e-9)
    assert out["high"].max() == frame["high"].max()
    assert out["low"].min() == frame["low"].min()
    assert out["open"].iloc[0] == frame["open"].iloc[0]
    assert out["close"].iloc[-1] == frame["close"].iloc[-1]
    assert len(out) <= len(frame)
    assert (out["timestamp"].astype("int64") % (base * factor).value == 0).all()
    assert out["timestamp"].is_monotonic_increasing and out["timestamp"].is_unique
    assert (out["high"] >= out[["open", "close"]].max(axis=1)).all()
    assert (out["low"] <= out[["open", "close"]].min(axis=1)).all()


@settings(max_examples=40, deadline=None)
@given(frame=bars(), data=st.data())
def test_validation_never_passes_high_below_low(frame: pd.DataFrame, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, len(frame) - 1))
    broken = frame.copy()
    broken.loc[row, "high"] = broken.loc[row, "low"] * 0.99
    with pytest.raises(DataError, match=f"^row {row} "):
        validate_ohlcv(broken)


@settings(max_examples=40, deadline=None)
@given(frame=bars())
def test_ffill_leaves_no_gaps_and_keeps_every_original_bar(frame: pd.DataFrame) -> None:
    kept, report = validate_ohlcv(frame)
    filled, filled_report = validate_ohlcv(frame, gaps="ffill")
    assert len(filled) == len(frame) + report.missing_bars
    assert filled_report.filled_bars == report.missing_bars
    assert filled["timestamp"].diff().dropna().eq(report.timeframe).all()
    original = filled[filled["timestamp"].isin(frame["timestamp"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(original, kept)
    assert filled["volume"].sum() == pytest.approx(frame["volume"].sum())
