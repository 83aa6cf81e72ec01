"""Volatility and channels: ATR, Bollinger Bands and Donchian channels."""

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
    as_series,
    check_period,
)
from sapphire.indicators._rolling import (
    BANDS,
    CHANNEL,
    RollingExtreme,
    RollingMeanStd,
    channel_kernel,
    rolling_stat_kernel,
)


@njit(cache=True, error_model="numpy")
def _atr_kernel(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    n = close.shape[0]
    out = np.empty(n)
    keep = (period - 1.0) / period
    add = 1.0 / period
    count = -1  # -1: no previous close yet; then true ranges seen, up to period
    prev_close = 0.0
    atr = 0.0
    for t in range(n):
        h = high[t]
        lo = low[t]
        c = close[t]
        out[t] = np.nan
        if np.isnan(h) or np.isnan(lo) or np.isnan(c):
            continue
        tr = max(h - lo, abs(h - prev_close), abs(lo - prev_close))
        prev_close = c
        if count < 0:
            count = 0
            continue
        if count >= period:
            atr = atr * keep + tr * add
        else:
            atr += tr
            count += 1
            if count < period:
                continue
            atr /= period
        out[t] = atr
    return out


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average true range, Wilder-smoothed and seeded with the mean of the first `period` TRs."""
    period = check_period("atr", period)
    h, lo, c = as_aligned("atr", high=high, low=low, close=close)
    return _atr_kernel(h, lo, c, period)


class ATR(Streaming[float]):
    """Streaming average true range; twin of `atr`."""

    __slots__ = ("_add", "_atr", "_count", "_keep", "_period", "_prev_close")

    def __init__(self, period: int = 14) -> None:
        self._period = check_period("ATR", period)
        self._keep = (self._period - 1.0) / self._period
        self._add = 1.0 / self._period
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._count = -1
        self._prev_close = 0.0
        self._atr = 0.0
        self._value = NAN

    def update(self, high: float, low: float, close: float) -> float:
        """Add one bar; return the ATR (NaN during warm-up and for a bar with a NaN)."""
        high, low, close = float(high), float(low), float(close)
        self._value = NAN
        if math.isnan(high) or math.isnan(low) or math.isnan(close):
            return NAN
        prev = self._prev_close
        tr = max(high - low, abs(high - prev), abs(low - prev))
        self._prev_close = close
        if self._count < 0:
            self._count = 0
            return NAN
        if self._count >= self._period:
            self._atr = self._atr * self._keep + tr * self._add
        else:
            self._atr += tr
            self._count += 1
            if self._count < self._period:
                return NAN
            self._atr /= self._period
        self._value = self._atr
        return self._atr


def _check_nbdev(func: str, nbdev: float) -> float:
    if isinstance(nbdev, bool) or not isinstance(nbdev, int | float) or not nbdev >= 0.0:
        raise ValueError(f"{func}: nbdev must be a finite number >= 0, got {nbdev!r}")
    if math.isinf(nbdev):
        raise ValueError(f"{func}: nbdev must be a finite number >= 0, got {nbdev!r}")
    return float(nbdev)


def bbands(
    close: ArrayLike, period: int = 20, nbdev: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger Bands (upper, middle, lower): SMA +/- nbdev population standard deviations."""
    period = check_period("bbands", period, minimum=2)
    nbdev = _check_nbdev("bbands", nbdev)
    upper, middle, lower = rolling_stat_kernel(
        as_series("bbands", "close", close), period, BANDS, nbdev
    )
    return upper, middle, lower


class BBands(Streaming[tuple[float, float, float]]):
    """Streaming Bollinger Bands; twin of `bbands`, returning (upper, middle, lower)."""

    __slots__ = ("_nbdev", "_stats")

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        self._stats = RollingMeanStd(check_period("BBands", period, minimum=2))
        self._nbdev = _check_nbdev("BBands", nbdev)
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._stats.reset()
        self._value = (NAN, NAN, NAN)

    def update(self, close: float) -> tuple[float, float, float]:
        """Add one close; return (upper, middle, lower), NaN during warm-up."""
        mean, std = self._stats.update(float(close))
        self._value = (mean + self._nbdev * std, mean, mean - self._nbdev * std)
        return self._value


def donchian(
    high: ArrayLike, low: ArrayLike, period: int = 20
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Donchian channel (upper, middle, lower) over the last `period` bars, current included."""
    period = check_period("donchian", period)
    h, lo = as_aligned("donchian", high=high, low=low)
    upper, middle, lower = channel_kernel(h, lo, h, period, CHANNEL)
    return upper, middle, lower


class Donchian(Streaming[tuple[float, float, float]]):
    """Streaming Donchian channel; twin of `donchian`, returning (upper, middle, lower)."""

    __slots__ = ("_highest", "_lowest")

    def __init__(self, period: int = 20) -> None:
        period = check_period("Donchian", period)
        self._highest = RollingExtreme(period, 1.0)
        self._lowest = RollingExtreme(period, -1.0)
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._highest.reset()
        self._lowest.reset()
        self._value = (NAN, NAN, NAN)

    def update(self, high: float, low: float) -> tuple[float, float, float]:
        """Add one bar; return (upper, middle, lower), NaN during warm-up."""
        high, low = float(high), float(low)
        if math.isnan(high) or math.isnan(low):
            high = low = NAN
        upper = self._highest.update(high)
        lower = self._lowest.update(low)
        self._value = (upper, 0.5 * (upper + lower), lower)
        return self._value
