"""Moving averages: simple, exponential and weighted, vectorised and streaming."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from sapphire.indicators._common import (
    NAN,
    FloatArray,
    Streaming,
    as_series,
    check_period,
    resync_interval,
)
from sapphire.indicators._rolling import RESUM, SKIP, Window


@njit(cache=True, error_model="numpy")
def sma_into(x: FloatArray, period: int, resync: int, out: FloatArray) -> None:
    """Rolling mean into `out`: a running sum, re-summed on each clean window and every `resync`."""
    n = x.shape[0]
    t = 0
    clean = 0
    while t < n:
        if np.isnan(x[t]):
            clean = 0
            out[t] = np.nan
            t += 1
            continue
        clean += 1
        if clean < period:
            out[t] = np.nan
            t += 1
            continue
        total = 0.0
        for i in range(t - period + 1, t + 1):
            total += x[i]
        out[t] = total / period
        t += 1
        stop = min(n, t + resync)
        while t < stop:
            xt = x[t]
            if np.isnan(xt):
                break
            total += xt - x[t - period]
            out[t] = total / period
            t += 1


def sma(x: ArrayLike, period: int) -> FloatArray:
    """Simple moving average of the last `period` values (NaN for the first period-1)."""
    period = check_period("sma", period)
    values = as_series("sma", "x", x)
    out = np.empty(values.shape[0])
    sma_into(values, period, resync_interval(period), out)
    return out


class SMA(Streaming[float]):
    """Streaming simple moving average; twin of `sma`."""

    __slots__ = ("_total", "_window")

    def __init__(self, period: int) -> None:
        self._window = Window(check_period("SMA", period))
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._window.reset()
        self._total = 0.0
        self._value = NAN

    def update(self, x: float) -> float:
        """Add one value; return the average (NaN during warm-up)."""
        x = float(x)
        window = self._window
        action = window.push(x)
        if action == SKIP:
            self._value = NAN
            return NAN
        if action == RESUM:
            total = 0.0
            for v in window.values():
                total += v
            self._total = total
        else:
            self._total += x - window.leaving
        self._value = self._total / window.period
        return self._value


@njit(cache=True, error_model="numpy")
def ema_kernel(x: FloatArray, period: int) -> FloatArray:
    """EMA seeded with the mean of the first `period` values; NaN inputs are skipped."""
    n = x.shape[0]
    out = np.empty(n)
    k = 2.0 / (period + 1.0)
    decay = 1.0 - k
    count = 0
    prev = 0.0
    for t in range(n):
        xt = x[t]
        if np.isnan(xt):
            out[t] = np.nan
        elif count >= period:
            prev = prev * decay + k * xt
            out[t] = prev
        else:
            prev += xt
            count += 1
            if count == period:
                prev /= period
                out[t] = prev
            else:
                out[t] = np.nan
    return out


def ema(x: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average, k = 2/(period+1), seeded with the SMA of the first period."""
    period = check_period("ema", period)
    return ema_kernel(as_series("ema", "x", x), period)


class EMA(Streaming[float]):
    """Streaming exponential moving average; twin of `ema`."""

    __slots__ = ("_count", "_decay", "_k", "_period", "_prev")

    def __init__(self, period: int) -> None:
        self._period = check_period("EMA", period)
        self._k = 2.0 / (self._period + 1.0)
        self._decay = 1.0 - self._k
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._count = 0
        self._prev = 0.0
        self._value = NAN

    def update(self, x: float) -> float:
        """Add one value; return the average (NaN during warm-up and for a NaN input)."""
        x = float(x)
        if math.isnan(x):
            self._value = NAN
        elif self._count >= self._period:
            self._prev = self._prev * self._decay + self._k * x
            self._value = self._prev
        else:
            self._prev += x
            self._count += 1
            if self._count == self._period:
                self._prev /= self._period
                self._value = self._prev
            else:
                self._value = NAN
        return self._value


@njit(cache=True, error_model="numpy")
def _wma_kernel(x: FloatArray, period: int, resync: int) -> FloatArray:
    n = x.shape[0]
    out = np.empty(n)
    divider = period * (period + 1) / 2.0
    t = 0
    clean = 0
    while t < n:
        if np.isnan(x[t]):
            clean = 0
            out[t] = np.nan
            t += 1
            continue
        clean += 1
        if clean < period:
            out[t] = np.nan
            t += 1
            continue
        total = 0.0
        weighted = 0.0
        weight = 1.0
        for i in range(t - period + 1, t + 1):
            total += x[i]
            weighted += weight * x[i]
            weight += 1.0
        out[t] = weighted / divider
        t += 1
        stop = min(n, t + resync)
        while t < stop:
            xt = x[t]
            if np.isnan(xt):
                break
            # Every weight drops by one (removing the old sum); x enters with weight period.
            weighted += period * xt - total
            total += xt - x[t - period]
            out[t] = weighted / divider
            t += 1
    return out


def wma(x: ArrayLike, period: int) -> FloatArray:
    """Linearly weighted moving average: weights 1..period, the newest value heaviest."""
    period = check_period("wma", period)
    return _wma_kernel(as_series("wma", "x", x), period, resync_interval(period))


class WMA(Streaming[float]):
    """Streaming linearly weighted moving average; twin of `wma`."""

    __slots__ = ("_divider", "_total", "_weighted", "_window")

    def __init__(self, period: int) -> None:
        period = check_period("WMA", period)
        self._window = Window(period)
        self._divider = period * (period + 1) / 2.0
        self.reset()

    def reset(self) -> None:
        """Forget every bar."""
        self._window.reset()
        self._total = 0.0
        self._weighted = 0.0
        self._value = NAN

    def update(self, x: float) -> float:
        """Add one value; return the average (NaN during warm-up)."""
        x = float(x)
        window = self._window
        action = window.push(x)
        if action == SKIP:
            self._value = NAN
            return NAN
        if action == RESUM:
            total = 0.0
            weighted = 0.0
            weight = 1.0
            for v in window.values():
                total += v
                weighted += weight * v
                weight += 1.0
            self._total = total
            self._weighted = weighted
        else:
            self._weighted += window.period * x - self._total
            self._total += x - window.leaving
        self._value = self._weighted / self._divider
        return self._value
