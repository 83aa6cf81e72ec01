"""Hand-checked values, NaN handling, flat windows and warm-up conventions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import talib
from indicator_helpers import assert_same_series, stream

import sapphire.indicators as ind

NAN = np.nan
Bars = dict[str, np.ndarray]


def test_sma_by_hand() -> None:
    out = ind.sma([1.0, 2.0, 3.0, 4.0, 10.0], 3)
    np.testing.assert_allclose(out, [NAN, NAN, 2.0, 3.0, 17 / 3])
    np.testing.assert_array_equal(ind.sma([4.0, 5.0], 1), [4.0, 5.0])


def test_ema_is_seeded_with_the_sma_of_the_first_period() -> None:
    x = np.array([2.0, 4.0, 6.0, 10.0, 1.0])
    k = 2 / 4
    seed = 4.0
    expected = [NAN, NAN, seed, seed + k * (10 - seed), 0.0]
    expected[4] = expected[3] + k * (1.0 - expected[3])
    np.testing.assert_allclose(ind.ema(x, 3), expected, rtol=1e-15)


def test_wma_by_hand() -> None:
    np.testing.assert_allclose(ind.wma([1.0, 2.0, 6.0, 4.0], 3), [NAN, NAN, 23 / 6, 26 / 6])


def test_rsi_extremes_and_flat_window() -> None:
    up = np.arange(30.0)
    assert np.nanmin(ind.rsi(up, 14)) == 100.0
    assert np.nanmax(ind.rsi(up[::-1], 14)) == 0.0
    # No movement at all: neutral 50 (TA-Lib gives 0, which reads as "oversold").
    flat = ind.rsi(np.full(30, 7.0), 14)
    assert np.isnan(flat[:14]).all() and (flat[14:] == 50.0).all()
    assert math.isnan(ind.RSI(2).update(1.0))  # warm-up


def test_stoch_flat_window_is_neutral() -> None:
    h = np.r_[np.arange(10.0) + 1, np.full(10, 5.0)]
    lo = h - np.r_[np.full(10, 0.5), np.zeros(10)]
    k, d = ind.stoch(h, lo, h, 3, 1, 1)
    assert (k[-8:] == 50.0).all() and (d[-8:] == 50.0).all()
    # Elsewhere it agrees with TA-Lib.
    ref_k, _ = talib.STOCH(h, lo, h, 3, 1, 0, 1, 0)
    np.testing.assert_allclose(k[:12], ref_k[:12])


def test_bbands_and_zscore_on_an_exactly_flat_window() -> None:
    x = np.r_[np.linspace(1.0, 3.0, 10), np.full(10, 0.1)]
    upper, middle, lower = ind.bbands(x, 5, 2.0)
    assert (upper[-6:] == 0.1).all() and (middle[-6:] == 0.1).all() and (lower[-6:] == 0.1).all()
    z = ind.zscore(x, 5)
    assert np.isnan(z[-6:]).all() and not np.isnan(z[4:14]).any()


def test_bbands_by_hand() -> None:
    upper, middle, lower = ind.bbands([1.0, 2.0, 3.0, 4.0], 4, 1.5)
    std = np.std([1.0, 2.0, 3.0, 4.0])
    assert middle[-1] == 2.5
    assert upper[-1] == pytest.approx(2.5 + 1.5 * std, rel=1e-15)
    assert lower[-1] == pytest.approx(2.5 - 1.5 * std, rel=1e-15)


def test_zscore_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    window = x[2:]
    expected = (10.0 - window.mean()) / window.std(ddof=0)
    assert ind.zscore(x, 3)[-1] == pytest.approx(expected, rel=1e-14)


def test_atr_uses_the_true_range() -> None:
    high = np.array([10.0, 11.0, 15.0, 12.0])
    low = np.array([9.0, 10.0, 12.0, 8.0])
    close = np.array([9.5, 10.5, 14.0, 9.0])
    # TR from bar 1: max(1, 1.5, 0.5) = 1.5, max(3, 4.5, 1.5) = 4.5, max(4, 2, 6) = 6.
    np.testing.assert_allclose(ind.atr(high, low, close, 2), [NAN, NAN, 3.0, 4.5])


def test_obv_by_hand() -> None:
    close = [10.0, 11.0, 11.0, 10.0, 12.0]
    volume = [5.0, 3.0, 4.0, 2.0, 1.0]
    np.testing.assert_array_equal(ind.obv(close, volume), [5.0, 8.0, 8.0, 6.0, 7.0])


def test_donchian_includes_the_current_bar() -> None:
    upper, middle, lower = ind.donchian([3.0, 5.0, 4.0, 9.0], [1.0, 2.0, 0.5, 4.0], 2)
    np.testing.assert_array_equal(upper, [NAN, 5.0, 5.0, 9.0])
    np.testing.assert_array_equal(lower, [NAN, 1.0, 0.5, 0.5])
    np.testing.assert_array_equal(middle, [NAN, 3.0, 2.75, 4.75])


def test_macd_with_equal_fast_and_slow_is_zero() -> None:
    line, signal, hist = ind.macd(np.linspace(1.0, 50.0, 60), 5, 5, 3)
    assert np.nanmax(np.abs(line)) == 0.0 and np.nanmax(np.abs(hist)) == 0.0
    assert np.isnan(line[:6]).all() and not np.isnan(signal[6:]).any()


# Every vectorised indicator, as a function of the bar columns.
FUNCS: dict[str, Callable[[Bars], Any]] = {
    "sma": lambda b: ind.sma(b["close"], 10),
    "ema": lambda b: ind.ema(b["close"], 10),
    "wma": lambda b: ind.wma(b["close"], 10),
    "rsi": lambda b: ind.rsi(b["close"], 10),
    "macd": lambda b: ind.macd(b["close"], 4, 9, 3),
    "bbands": lambda b: ind.bbands(b["close"], 10),
    "atr": lambda b: ind.atr(b["high"], b["low"], b["close"], 10),
    "adx": lambda b: ind.adx(b["high"], b["low"], b["close"], 5),
    "stoch": lambda b: ind.stoch(b["high"], b["low"], b["close"], 5, 3, 3),
    "obv": lambda b: ind.obv(b["close"], b["volume"]),
    "vwap": lambda b: ind.vwap(b["high"], b["low"], b["close"], b["volume"]),
    "vwap-rolling": lambda b: ind.vwap(b["high"], b["low"], b["close"], b["volume"], 10),
    "donchian": lambda b: ind.donchian(b["high"], b["low"], 10),
    "zscore": lambda b: ind.zscore(b["close"], 10),
}
RECURSIVE = ["ema", "rsi", "macd", "atr", "adx", "obv", "vwap"]


def _outputs(result: Any) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize("name", FUNCS)
def test_leading_nans_only_delay_the_warm_up(name: str, btc: Bars) -> None:
    bars = {k: v[:3_000] for k, v in btc.items()}
    padded = {k: np.r_[np.full(25, NAN), v] for k, v in bars.items()}
    for plain, shifted in zip(
        _outputs(FUNCS[name](bars)), _outputs(FUNCS[name](padded)), strict=True
    ):
        assert np.isnan(shifted[:25]).all()
        assert_same_series(shifted[25:], plain, rtol=1e-12, atol=1e-9 * np.nanmax(np.abs(plain)))


@pytest.mark.parametrize("name", RECURSIVE)
def test_recursive_indicators_skip_a_nan_bar(name: str, btc: Bars) -> None:
    bars = {k: v[:3_000] for k, v in btc.items()}
    holed = {k: np.insert(v, 1_500, NAN) for k, v in bars.items()}
    for plain, with_hole in zip(
        _outputs(FUNCS[name](bars)), _outputs(FUNCS[name](holed)), strict=True
    ):
        assert np.isnan(with_hole[1_500])
        assert_same_series(np.delete(with_hole, 1_500), plain, rtol=0.0)


@pytest.mark.parametrize("name", sorted(set(FUNCS) - set(RECURSIVE)))
def test_window_indicators_are_nan_while_the_window_holds_a_nan(name: str, btc: Bars) -> None:
    bars = {k: v[:3_000].copy() for k, v in btc.items()}
    plain = _outputs(FUNCS[name](bars))
    for column in ("close",) if name in ("sma", "wma", "bbands", "zscore") else ("high", "low"):
        holed = {k: v.copy() for k, v in bars.items()}
        holed[column][1_500] = NAN
        for before, after in zip(plain, _outputs(FUNCS[name](holed)), strict=True):
            undefined = np.flatnonzero(np.isnan(after) & ~np.isnan(before))
            assert undefined[0] == 1_500 and undefined.size >= 5  # the whole window, at least
            assert undefined[-1] - undefined[0] + 1 == undefined.size
            # After the NaN has left the window the values are those of the clean series.
            tail = undefined[-1] + 1
            assert_same_series(
                after[tail:], before[tail:], rtol=1e-12, atol=1e-9 * np.nanmax(np.abs(before))
            )


def test_nan_inputs_for_streaming_match_documented_rules() -> None:
    ema = ind.EMA(2)
    out = [ema.update(v) for v in (NAN, 1.0, 3.0, NAN, 5.0)]
    np.testing.assert_array_equal(out, [NAN, NAN, 2.0, NAN, 2.0 + 2 / 3 * 3.0])
    sma = ind.SMA(2)
    out = [sma.update(v) for v in (1.0, 3.0, NAN, 5.0, 7.0)]
    np.testing.assert_array_equal(out, [NAN, 2.0, NAN, NAN, 6.0])


def test_streaming_accepts_numpy_scalars_and_ints(btc: Bars) -> None:
    close = btc["close"][:200]
    values = stream(ind.RSI(14), close)
    rsi = ind.RSI(14)
    again = np.array([rsi.update(v) for v in close])  # numpy float64 scalars
    np.testing.assert_array_equal(again, values)
    assert isinstance(ind.SMA(1).update(3), float)
