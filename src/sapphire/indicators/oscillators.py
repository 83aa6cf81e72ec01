"""Oscillators: RSI, MACD and the stochastic oscillator, vectorised and streaming."""

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
    resync_interval,
)
from sapphire.indicators._rolling import FAST_K, RollingExtreme, channel_kernel
from sapphire.indicators.moving_averages import SMA, sma_into


@njit(cache=True, error_model="numpy")
def _rsi_kernel(close: FloatArray, period: int) -> FloatArray:
    n = close.shape[0]
    out = np.empty(n)
    keep = (period - 1.0) / period
    add = 1.0 / period
    count = -1  # -1: no previous close yet; then the number of changes seen, up to period
    prev = 0.0
    gain = 0.0
    loss = 0.0
    for t in range(n):
        ct = close[t]
        out[t] = np.nan
        if np.isnan(ct):
            continue
        change = ct - prev
        prev = ct
        if count < 0:
            count = 0
            continue
        up = change if change > 0.0 else 0.0
        down = -change if change < 0.0 else 0.0
        if count >= period:
            gain = gain * keep + up * add
            loss = loss * keep + down * add
        else:
            gain += up
            loss += down
            count += 1
            if count < period:
                continue
            gain /= period
            loss /= period
        total = gain + loss
        out[t] = 100.0 * (gain / total) if total != 0.0 else 50.0
    return out


def rsi(close: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's relative strength index, 0-100 (50 where the window is perfectly flat)."""
    period = check_period("rsi", period)
    return _rsi_kernel(as_series("rsi", "close", close), period)


class RSI(Streaming[float]):
    """Streaming relative strength index; twin of `rsi`."""

    __slots__ = ("_add", "_count", "_gain", "_keep", "_loss", "_period", "_prev")

    def __init__(self, period: int = 14) -> None:
        self._period = check_period("RSI", period)
        self._keep = (self._period - 1.0) / self._period
        self._add = 1.0 / self._period
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._count = -1
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self._value = NAN

    def update(self, close: float) -> float:
        """Add one close; return the RSI (NaN during warm-up and for a NaN input)."""
        close = float(close)
        self._value = NAN
        if math.isnan(close):
            return NAN
        change = close - self._prev
        self._prev = close
        if self._count < 0:
            self._count = 0
            return NAN
        up = change if change > 0.0 else 0.0
        down = -change if change < 0.0 else 0.0
        if self._count >= self._period:
            self._gain = self._gain * self._keep + up * self._add
            self._loss = self._loss * self._keep + down * self._add
        else:
            self._gain += up
            self._loss += down
            self._count += 1
            if self._count < self._period:
                return NAN
            self._gain /= self._period
            self._loss /= self._period
        total = self._gain + self._loss
        self._value = 100.0 * (self._gain / total) if total != 0.0 else 50.0
        return self._value


@njit(cache=True, error_model="numpy")
def _macd_kernel(x: FloatArray, fast: int, slow: int, signal: int) -> FloatArray:
    n = x.shape[0]
    out = np.full((3, n), np.nan)
    k_fast = 2.0 / (fast + 1.0)
    k_slow = 2.0 / (slow + 1.0)
    k_signal = 2.0 / (signal + 1.0)
    seed = np.empty(slow)
    count = 0  # valid inputs seen, up to slow
    count_signal = 0  # MACD values seen, up to signal
    ema_fast = 0.0
    ema_slow = 0.0
    ema_signal = 0.0
    for t in range(n):
        xt = x[t]
        if np.isnan(xt):
            continue
        if count >= slow:
            ema_fast = ema_fast * (1.0 - k_fast) + k_fast * xt
            ema_slow = ema_slow * (1.0 - k_slow) + k_slow * xt
        else:
            seed[count] = xt
            count += 1
            if count < slow:
                continue
            # Both EMAs start on the slow one's first bar, each seeded with the mean of its
            # own last `period` values (as TA-Lib does).
            ema_slow = 0.0
            for i in range(slow):
                ema_slow += seed[i]
            ema_slow /= slow
            ema_fast = 0.0
            for i in range(slow - fast, slow):
                ema_fast += seed[i]
            ema_fast /= fast
        line = ema_fast - ema_slow
        if count_signal >= signal:
            ema_signal = ema_signal * (1.0 - k_signal) + k_signal * line
        else:
            ema_signal += line
            count_signal += 1
            if count_signal < signal:
                continue
            ema_signal /= signal
        out[0, t] = line
        out[1, t] = ema_signal
        out[2, t] = line - ema_signal
    return out


def _check_macd(func: str, fast: int, slow: int, signal: int) -> tuple[int, int, int]:
    fast = check_period(func, fast, name="fast")
    slow = check_period(func, slow, name="slow")
    signal = check_period(func, signal, name="signal")
    if fast > slow:
        raise ValueError(f"{func}: fast must be <= slow, got fast={fast}, slow={slow}")
    return fast, slow, signal


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line (fast - slow EMA), signal EMA and histogram, as TA-Lib's MACD (NaN together)."""
    fast, slow, signal = _check_macd("macd", fast, slow, signal)
    line, signal_line, hist = _macd_kernel(as_series("macd", "close", close), fast, slow, signal)
    return line, signal_line, hist


class MACD(Streaming[tuple[float, float, float]]):
    """Streaming MACD; twin of `macd`, returning (macd, signal, hist)."""

    __slots__ = (
        "_count",
        "_count_signal",
        "_ema_fast",
        "_ema_signal",
        "_ema_slow",
        "_fast",
        "_k_fast",
        "_k_signal",
        "_k_slow",
        "_seed",
        "_signal",
        "_slow",
    )

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self._fast, self._slow, self._signal = _check_macd("MACD", fast, slow, signal)
        self._k_fast = 2.0 / (self._fast + 1.0)
        self._k_slow = 2.0 / (self._slow + 1.0)
        self._k_signal = 2.0 / (self._signal + 1.0)
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._seed: list[float] = []
        self._count = 0
        self._count_signal = 0
        self._ema_fast = 0.0
        self._ema_slow = 0.0
        self._ema_signal = 0.0
        self._value = (NAN, NAN, NAN)

    def update(self, close: float) -> tuple[float, float, float]:
        """Add one close; return (macd, signal, hist), NaN during warm-up."""
        close = float(close)
        self._value = (NAN, NAN, NAN)
        if math.isnan(close):
            return self._value
        fast, slow, signal = self._fast, self._slow, self._signal
        if self._count >= slow:
            k_fast = self._k_fast
            k_slow = self._k_slow
            self._ema_fast = self._ema_fast * (1.0 - k_fast) + k_fast * close
            self._ema_slow = self._ema_slow * (1.0 - k_slow) + k_slow * close
        else:
            self._seed.append(close)
            self._count += 1
            if self._count < slow:
                return self._value
            ema_slow = 0.0
            for v in self._seed:
                ema_slow += v
            ema_fast = 0.0
            for v in self._seed[slow - fast :]:
                ema_fast += v
            self._ema_slow = ema_slow / slow
            self._ema_fast = ema_fast / fast
            self._seed = []
        line = self._ema_fast - self._ema_slow
        if self._count_signal >= signal:
            k_signal = self._k_signal
            self._ema_signal = self._ema_signal * (1.0 - k_signal) + k_signal * line
        else:
            self._ema_signal += line
            self._count_signal += 1
            if self._count_signal < signal:
                return self._value
            self._ema_signal /= signal
        self._value = (line, self._ema_signal, line - self._ema_signal)
        return self._value


def _check_stoch(func: str, fastk: int, slowk: int, slowd: int) -> tuple[int, int, int]:
    return (
        check_period(func, fastk, name="fastk"),
        check_period(func, slowk, name="slowk"),
        check_period(func, slowd, name="slowd"),
    )


def stoch(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    fastk: int = 5,
    slowk: int = 3,
    slowd: int = 3,
) -> tuple[FloatArray, FloatArray]:
    """Slow stochastic (%K, %D), SMA-smoothed as TA-Lib's STOCH; raw %K is 50 on a 0 range."""
    fastk, slowk, slowd = _check_stoch("stoch", fastk, slowk, slowd)
    h, lo, c = as_aligned("stoch", high=high, low=low, close=close)
    raw = channel_kernel(h, lo, c, fastk, FAST_K)[0]
    k, d = np.empty((2, raw.shape[0]))
    sma_into(raw, slowk, resync_interval(slowk), k)
    sma_into(k, slowd, resync_interval(slowd), d)
    k[np.isnan(d)] = np.nan
    return k, d


class Stoch(Streaming[tuple[float, float]]):
    """Streaming slow stochastic; twin of `stoch`, returning (slowk, slowd)."""

    __slots__ = ("_d", "_highest", "_k", "_lowest")

    def __init__(self, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> None:
        fastk, slowk, slowd = _check_stoch("Stoch", fastk, slowk, slowd)
        self._highest = RollingExtreme(fastk, 1.0)
        self._lowest = RollingExtreme(fastk, -1.0)
        self._k = SMA(slowk)
        self._d = SMA(slowd)
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._highest.reset()
        self._lowest.reset()
        self._k.reset()
        self._d.reset()
        self._value = (NAN, NAN)

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        """Add one bar; return (slowk, slowd), NaN during warm-up."""
        high, low, close = float(high), float(low), float(close)
        if math.isnan(high) or math.isnan(low) or math.isnan(close):
            high = low = NAN
        highest = self._highest.update(high)
        lowest = self._lowest.update(low)
        span = highest - lowest
        raw = 50.0 if span == 0.0 else 100.0 * (close - lowest) / span
        k = self._k.update(raw)
        d = self._d.update(k)
        self._value = (NAN if math.isnan(d) else k, d)
        return self._value
