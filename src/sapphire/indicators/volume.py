"""Volume indicators: on-balance volume and the volume-weighted average price."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from sapphire.indicators._common import (
    NAN,
    FloatArray,
    Streaming,
    as_aligned,
    check_period,
    resync_interval,
)
from sapphire.indicators._rolling import RESUM, SKIP, Window


@njit(cache=True, error_model="numpy")
def _obv_kernel(close: FloatArray, volume: FloatArray) -> FloatArray:
    n = close.shape[0]
    out = np.empty(n)
    started = False
    prev = 0.0
    total = 0.0
    for t in range(n):
        c = close[t]
        v = volume[t]
        if np.isnan(c) or np.isnan(v):
            out[t] = np.nan
            continue
        if started:
            # +v, -v or +0.0 without a data-dependent branch; exact either way.
            total += v * ((1.0 if c > prev else 0.0) - (1.0 if c < prev else 0.0))
        else:
            total = v
            started = True
        prev = c
        out[t] = total
    return out


def obv(close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """On-balance volume: the first bar's volume, then +volume on up closes, -volume on down."""
    c, v = as_aligned("obv", close=close, volume=volume)
    return _obv_kernel(c, v)


class OBV(Streaming[float]):
    """Streaming on-balance volume; twin of `obv`."""

    __slots__ = ("_prev", "_started", "_total")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._started = False
        self._prev = 0.0
        self._total = 0.0
        self._value = NAN

    def update(self, close: float, volume: float) -> float:
        """Add one bar; return the OBV (NaN for a bar with a NaN)."""
        close, volume = float(close), float(volume)
        if math.isnan(close) or math.isnan(volume):
            self._value = NAN
            return NAN
        if self._started:
            prev = self._prev
            self._total += volume * (
                (1.0 if close > prev else 0.0) - (1.0 if close < prev else 0.0)
            )
        else:
            self._total = volume
            self._started = True
        self._prev = close
        self._value = self._total
        return self._total


@njit(cache=True, error_model="numpy")
def _typical_volume(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, t: int
) -> float:
    """Typical price times volume of bar t; NaN when any input is."""
    return (high[t] + low[t] + close[t]) / 3.0 * volume[t]


@njit(cache=True, error_model="numpy")
def _vwap_cumulative(
    high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray
) -> FloatArray:
    n = close.shape[0]
    out = np.empty(n)
    total_pv = 0.0
    total_v = 0.0
    for t in range(n):
        pv = _typical_volume(high, low, close, volume, t)
        if not np.isnan(pv):
            total_pv += pv
            total_v += volume[t]
        out[t] = total_pv / total_v if total_v != 0.0 and not np.isnan(pv) else np.nan
    return out


@njit(cache=True, error_model="numpy")
def _vwap_rolling(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    period: int,
    resync: int,
) -> FloatArray:
    # Same schedule as the rolling mean (see _rolling.py); `traded` counts the bars with a
    # non-zero volume in the window, so a window without trades is NaN, not 0/0 noise.
    n = close.shape[0]
    out = np.empty(n)
    clean = 0
    since = 0
    total_pv = 0.0
    total_v = 0.0
    traded = 0
    for t in range(n):
        out[t] = np.nan
        pv = _typical_volume(high, low, close, volume, t)
        if np.isnan(pv):
            clean = 0
            continue
        clean += 1
        if clean < period:
            continue
        if clean == period or since >= resync:
            total_pv = 0.0
            total_v = 0.0
            traded = 0
            for i in range(t - period + 1, t + 1):
                total_pv += _typical_volume(high, low, close, volume, i)
                total_v += volume[i]
                if volume[i] != 0.0:
                    traded += 1
            since = 0
        else:
            total_pv += pv - _typical_volume(high, low, close, volume, t - period)
            total_v += volume[t] - volume[t - period]
            if volume[t] != 0.0:
                traded += 1
            if volume[t - period] != 0.0:
                traded -= 1
            since += 1
        if traded > 0:
            out[t] = total_pv / total_v
    return out


def _check_vwap_period(func: str, period: int | None) -> int | None:
    return None if period is None else check_period(func, period)


def vwap(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    period: int | None = None,
) -> FloatArray:
    """Volume-weighted typical price (h+l+c)/3: cumulative (period=None) or rolling `period`."""
    period = _check_vwap_period("vwap", period)
    h, lo, c, v = as_aligned("vwap", high=high, low=low, close=close, volume=volume)
    if period is None:
        return _vwap_cumulative(h, lo, c, v)
    return _vwap_rolling(h, lo, c, v, period, resync_interval(period))


class VWAP(Streaming[float]):
    """Streaming VWAP; twin of `vwap` (cumulative when `period` is None, else rolling)."""

    __slots__ = ("_pv", "_total_pv", "_total_v", "_traded", "_volume")

    def __init__(self, period: int | None = None) -> None:
        period = _check_vwap_period("VWAP", period)
        self._pv = None if period is None else Window(period)
        self._volume = None if period is None else Window(period)
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        if self._pv is not None and self._volume is not None:
            self._pv.reset()
            self._volume.reset()
        self._total_pv = 0.0
        self._total_v = 0.0
        self._traded = 0
        self._value = NAN

    def update(self, high: float, low: float, close: float, volume: float) -> float:
        """Add one bar; return the VWAP (NaN during warm-up, or while nothing has traded)."""
        high, low, close, volume = float(high), float(low), float(close), float(volume)
        pv = (high + low + close) / 3.0 * volume
        if math.isnan(pv):
            volume = NAN
        self._value = NAN
        if self._pv is None or self._volume is None:
            if not math.isnan(pv):
                self._total_pv += pv
                self._total_v += volume
                if self._total_v != 0.0:
                    self._value = self._total_pv / self._total_v
            return self._value
        action = self._pv.push(pv)
        self._volume.push(volume)
        if action == SKIP:
            return NAN
        if action == RESUM:
            total_pv = 0.0
            total_v = 0.0
            traded = 0
            for p, v in zip(self._pv.values(), self._volume.values(), strict=True):
                total_pv += p
                total_v += v
                traded += v != 0.0
            self._total_pv = total_pv
            self._total_v = total_v
            self._traded = traded
        else:
            leaving = self._volume.leaving
            self._total_pv += pv - self._pv.leaving
            self._total_v += volume - leaving
            self._traded += (volume != 0.0) - (leaving != 0.0)
        if self._traded > 0:
            self._value = self._total_pv / self._total_v
        return self._value
