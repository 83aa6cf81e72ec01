"""Trend strength: Wilder's average directional index (ADX), vectorised and streaming."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from sapphire.indicators._common import NAN, FloatArray, Streaming, as_aligned, check_period

# ADX follows TA-Lib: on bar 0 nothing; bars 1..period-1 sum the directional movements
# (DM) and true ranges (TR); bars period..2*period-1 smooth them Wilder-style and sum
# their DX; the first ADX, on bar 2*period-1, is that sum / period; later bars smooth
# ADX with each new DX. A bar whose smoothed DMs are both 0 has no DX and leaves ADX
# unchanged. Since a DM never exceeds the TR, DX = 100 |+DM - -DM| / (+DM + -DM): the
# TR cancels out of the ratio of the two directional indicators.


@njit(cache=True, error_model="numpy")
def _adx_kernel(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    n = close.shape[0]
    out = np.empty(n)
    keep = (period - 1.0) / period
    add = 1.0 / period
    bars = 0  # valid bars seen
    prev_high = 0.0
    prev_low = 0.0
    plus = 0.0
    minus = 0.0
    adx = 0.0
    for t in range(n):
        h = high[t]
        lo = low[t]
        out[t] = np.nan
        if np.isnan(h) or np.isnan(lo) or np.isnan(close[t]):
            continue
        up = h - prev_high
        down = prev_low - lo
        prev_high = h
        prev_low = lo
        bars += 1
        if bars == 1:
            continue
        plus_dm = up if up > 0.0 and up > down else 0.0
        minus_dm = down if down > 0.0 and down > up else 0.0
        if bars <= period:
            plus += plus_dm
            minus += minus_dm
            continue
        plus = plus * keep + plus_dm
        minus = minus * keep + minus_dm
        total = plus + minus
        if bars <= 2 * period:
            if total != 0.0:
                adx += 100.0 * abs(plus - minus) / total
            if bars < 2 * period:
                continue
            adx /= period
        elif total != 0.0:
            adx = adx * keep + 100.0 * abs(plus - minus) / total * add
        out[t] = adx
    return out


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Average directional index, 0-100: trend strength regardless of direction."""
    period = check_period("adx", period)
    h, lo, c = as_aligned("adx", high=high, low=low, close=close)
    return _adx_kernel(h, lo, c, period)


class ADX(Streaming[float]):
    """Streaming average directional index; twin of `adx`."""

    __slots__ = (
        "_add",
        "_adx",
        "_bars",
        "_keep",
        "_minus",
        "_period",
        "_plus",
        "_prev_high",
        "_prev_low",
    )

    def __init__(self, period: int = 14) -> None:
        self._period = check_period("ADX", period)
        self._keep = (self._period - 1.0) / self._period
        self._add = 1.0 / self._period
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._bars = 0
        self._prev_high = 0.0
        self._prev_low = 0.0
        self._plus = 0.0
        self._minus = 0.0
        self._adx = 0.0
        self._value = NAN

    def update(self, high: float, low: float, close: float) -> float:
        """Add one bar; return the ADX (NaN during warm-up and for a bar with a NaN)."""
        high, low, close = float(high), float(low), float(close)
        self._value = NAN
        if math.isnan(high) or math.isnan(low) or math.isnan(close):
            return NAN
        up = high - self._prev_high
        down = self._prev_low - low
        self._prev_high = high
        self._prev_low = low
        self._bars += 1
        bars = self._bars
        period = self._period
        if bars == 1:
            return NAN
        plus_dm = up if up > 0.0 and up > down else 0.0
        minus_dm = down if down > 0.0 and down > up else 0.0
        if bars <= period:
            self._plus += plus_dm
            self._minus += minus_dm
            return NAN
        plus = self._plus = self._plus * self._keep + plus_dm
        minus = self._minus = self._minus * self._keep + minus_dm
        total = plus + minus
        if bars <= 2 * period:
            if total != 0.0:
                self._adx += 100.0 * abs(plus - minus) / total
            if bars < 2 * period:
                return NAN
            self._adx /= period
        elif total != 0.0:
            self._adx = self._adx * self._keep + 100.0 * abs(plus - minus) / total * self._add
        self._value = self._adx
        return self._adx
