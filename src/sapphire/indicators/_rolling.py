"""Rolling-window machinery shared by the window indicators, compiled and streaming.

Every window indicator follows the same rules in its Numba kernel and in its streaming
twin, so the two agree to the last bit:

- the output is NaN until the window holds `period` consecutive non-NaN bars, and again
  for `period - 1` bars after any NaN;
- running sums are updated in O(1) per bar and re-summed from scratch on the first full
  window and then every `resync` bars (`_common.resync_interval`), so floating-point
  drift stays negligible over millions of bars.

Kernels that produce several outputs write them into the rows of one (k, n) block.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numba import njit

from sapphire.indicators._common import NAN, FloatArray, resync_interval

# What `Window.push` asks its owner to do with the new value.
SKIP, RESUM, SLIDE = 0, 1, 2


class Window:
    """The last `period` values of a stream, and whether the running sums need a re-sum."""

    __slots__ = ("_buf", "_pos", "_resync", "_since", "clean", "leaving", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._resync = resync_interval(period)
        self.reset()

    def reset(self) -> None:
        """Forget every value."""
        self._buf = [NAN] * self.period
        self._pos = 0
        self._since = 0
        self.clean = 0
        self.leaving = NAN

    def push(self, x: float) -> int:
        """Store `x`; return SKIP (no full clean window), RESUM (re-sum) or SLIDE (update)."""
        pos = self._pos
        self.leaving = self._buf[pos]
        self._buf[pos] = x
        self._pos = pos + 1 if pos + 1 < self.period else 0
        if math.isnan(x):
            self.clean = 0
            return SKIP
        self.clean += 1
        if self.clean < self.period:
            return SKIP
        if self.clean == self.period or self._since >= self._resync:
            self._since = 0
            return RESUM
        self._since += 1
        return SLIDE

    def values(self) -> list[float]:
        """The window's values, oldest first."""
        return self._buf[self._pos :] + self._buf[: self._pos]


# Rolling highest high and lowest low (Donchian channel, stochastic %K).
CHANNEL, FAST_K = 0, 1


@njit(cache=True, error_model="numpy")
def channel_kernel(
    high: FloatArray, low: FloatArray, close: FloatArray, period: int, mode: int
) -> FloatArray:
    """Highest high and lowest low of the last `period` bars, by van Herk/Gil-Werman.

    CHANNEL returns rows (upper, middle, lower); FAST_K returns one row, the raw
    stochastic %K of `close` in that range (50 where the range is 0), and also treats a
    NaN close as a bad bar. The series is cut into blocks of `period` bars: a window is
    the tail of the previous block (suffix extremes, kept in O(period) buffers) plus the
    head of the current one (prefix extremes, carried along): O(n), no data-dependent
    loops. NaNs are ignored by the comparisons; windows that hold one are masked.
    """
    n = high.shape[0]
    out = np.empty((3 if mode == CHANNEL else 1, n))
    tail_high = np.empty(period)
    tail_low = np.empty(period)
    clean = 0
    for start in range(0, n, period):
        stop = min(start + period, n)
        top = -np.inf
        bottom = np.inf
        for t in range(start, stop):
            h = high[t]
            lo = low[t]
            if h > top:
                top = h
            if lo < bottom:
                bottom = lo
            bad = np.isnan(h) or np.isnan(lo) or (mode == FAST_K and np.isnan(close[t]))
            clean = 0 if bad else clean + 1
            if clean < period:
                for row in range(out.shape[0]):
                    out[row, t] = np.nan
                continue
            upper = top
            lower = bottom
            first = t - period + 1
            if first < start:
                h = tail_high[first - start + period]
                lo = tail_low[first - start + period]
                if h > upper:
                    upper = h
                if lo < lower:
                    lower = lo
            if mode == CHANNEL:
                out[0, t] = upper
                out[1, t] = 0.5 * (upper + lower)
                out[2, t] = lower
            else:
                span = upper - lower
                out[0, t] = 50.0 if span == 0.0 else 100.0 * (close[t] - lower) / span
        top = -np.inf
        bottom = np.inf
        for i in range(stop - 1, start - 1, -1):
            h = high[i]
            lo = low[i]
            if h > top:
                top = h
            if lo < bottom:
                bottom = lo
            tail_high[i - start] = top
            tail_low[i - start] = bottom
    return out


class RollingExtreme:
    """Streaming rolling max (`sign=1`) or min (`sign=-1`) over a monotonic deque."""

    __slots__ = ("_bar", "_clean", "_dq", "_period", "_sign")

    def __init__(self, period: int, sign: float) -> None:
        self._period = period
        self._sign = sign
        self._dq: deque[tuple[int, float]] = deque()
        self._bar = 0
        self._clean = 0

    def reset(self) -> None:
        """Forget every value."""
        self._dq.clear()
        self._bar = 0
        self._clean = 0

    def update(self, x: float) -> float:
        """Add one value; return the extreme of the window, or NaN while it is not full."""
        bar = self._bar
        self._bar = bar + 1
        dq = self._dq
        if math.isnan(x):
            self._clean = 0
            dq.clear()
            return NAN
        self._clean += 1
        key = x * self._sign
        while dq and dq[-1][1] <= key:
            dq.pop()
        dq.append((bar, key))
        if dq[0][0] <= bar - self._period:
            dq.popleft()
        return dq[0][1] * self._sign if self._clean >= self._period else NAN


# Rolling mean and standard deviation (Bollinger Bands, z-score).
#
# The window sum is kept compensated (hi + lo, Neumaier), so the mean cannot drift, and
# the sum of squared deviations `m2` slides with Welford's update. Each slide adds a
# first-order bound of its rounding error to `err`; when `err` would exceed
# MEANSTD_TOL * m2 the window is re-summed exactly (compensated sum, corrected two-pass
# m2) instead. The variance is thus accurate to ~1e-10 even when it is tiny next to the
# price level (period 2 on a 40,000 price), and the O(period) re-sum only runs when the
# data call for it. A run of `period` equal values is exactly flat: std exactly 0.
MEANSTD_TOL = 1e-10
EPS = 2.220446049250313e-16
MEAN_STD, BANDS, ZSCORE = 0, 1, 2


@njit(cache=True, error_model="numpy")
def _resum(x: FloatArray, start: int, stop: int) -> tuple[float, float, float]:
    """Compensated sum (hi, lo) and corrected two-pass m2 of x[start:stop]."""
    period = stop - start
    hi = 0.0
    lo = 0.0
    for i in range(start, stop):
        v = x[i]
        s = hi + v
        bb = s - hi
        lo += (hi - (s - bb)) + (v - bb)
        hi = s
    mean = (hi + lo) / period
    m2 = 0.0
    dsum = 0.0
    for i in range(start, stop):
        dev = x[i] - mean
        dsum += dev
        m2 += dev * dev
    return hi, lo, m2 - dsum * dsum / period


@njit(cache=True, error_model="numpy")
def rolling_stat_kernel(x: FloatArray, period: int, mode: int, nbdev: float) -> FloatArray:
    """Rolling mean and population std of the last `period` values, emitted per `mode`.

    MEAN_STD returns rows (mean, std); BANDS (mean + nbdev*std, mean, mean - nbdev*std);
    ZSCORE one row, (x - mean) / std, NaN where std is 0.
    """
    n = x.shape[0]
    rows = 2 if mode == MEAN_STD else 3 if mode == BANDS else 1
    out = np.empty((rows, n))
    inv = 1.0 / period
    tol = MEANSTD_TOL
    clean = 0
    run = 0
    hi = 0.0
    lo = 0.0
    mean = 0.0
    m2 = 0.0
    err = 0.0
    for t in range(n):
        xt = x[t]
        if np.isnan(xt):
            clean = 0
            run = 0
        else:
            clean += 1
            run = run + 1 if clean > 1 and xt == x[t - 1] else 1
        if clean < period:
            for row in range(rows):
                out[row, t] = np.nan
            continue
        if run >= period:
            mean_t = xt
            std_t = 0.0
            err = np.inf  # the sums were not kept up: re-sum after the flat run
        else:
            slid = False
            if clean > period and err <= tol * m2:
                xo = x[t - period]
                delta = xt - xo
                s = hi + delta
                bb = s - hi
                new_lo = lo + ((hi - (s - bb)) + (delta - bb))
                new_mean = (s + new_lo) * inv
                inc = delta * ((xt - new_mean) + (xo - mean))
                new_m2 = m2 + inc
                new_err = err + EPS * (abs(new_m2) + 3.0 * abs(inc) + 4.0 * abs(delta * new_mean))
                if new_err <= tol * new_m2:
                    hi = s
                    lo = new_lo
                    mean = new_mean
                    m2 = new_m2
                    err = new_err
                    slid = True
            if not slid:
                hi, lo, m2 = _resum(x, t - period + 1, t + 1)
                mean = (hi + lo) * inv
                err = EPS * period * abs(m2)
            mean_t = mean
            std_t = np.sqrt(m2 * inv) if m2 > 0.0 else 0.0
        if mode == MEAN_STD:
            out[0, t] = mean_t
            out[1, t] = std_t
        elif mode == BANDS:
            out[0, t] = mean_t + nbdev * std_t
            out[1, t] = mean_t
            out[2, t] = mean_t - nbdev * std_t
        else:
            out[0, t] = (xt - mean_t) / std_t if std_t > 0.0 else np.nan
    return out


class RollingMeanStd:
    """Streaming twin of `rolling_stat_kernel`: (mean, std) of the last `period` values."""

    __slots__ = (
        "_buf",
        "_clean",
        "_err",
        "_hi",
        "_inv",
        "_lo",
        "_m2",
        "_mean",
        "_period",
        "_pos",
        "_prev",
        "_run",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv = 1.0 / period
        self.reset()

    def reset(self) -> None:
        """Forget every value."""
        self._buf = [NAN] * self._period
        self._pos = 0
        self._clean = 0
        self._run = 0
        self._prev = NAN
        self._hi = 0.0
        self._lo = 0.0
        self._mean = 0.0
        self._m2 = 0.0
        self._err = 0.0

    def update(self, x: float) -> tuple[float, float]:
        """Add one value; return (mean, std) of the window, NaN while it is not full."""
        period = self._period
        inv = self._inv
        pos = self._pos
        xo = self._buf[pos]
        self._buf[pos] = x
        self._pos = pos + 1 if pos + 1 < period else 0
        if math.isnan(x):
            self._clean = 0
            self._run = 0
            return NAN, NAN
        self._clean += 1
        self._run = self._run + 1 if self._clean > 1 and x == self._prev else 1
        self._prev = x
        if self._clean < period:
            return NAN, NAN
        if self._run >= period:
            self._err = math.inf
            return x, 0.0
        if self._clean > period and self._err <= MEANSTD_TOL * self._m2:
            hi = self._hi
            delta = x - xo
            s = hi + delta
            bb = s - hi
            lo = self._lo + ((hi - (s - bb)) + (delta - bb))
            mean = (s + lo) * inv
            inc = delta * ((x - mean) + (xo - self._mean))
            m2 = self._m2 + inc
            err = self._err + EPS * (abs(m2) + 3.0 * abs(inc) + 4.0 * abs(delta * mean))
            if err <= MEANSTD_TOL * m2:
                self._hi = s
                self._lo = lo
                self._mean = mean
                self._m2 = m2
                self._err = err
                return mean, math.sqrt(m2 * inv) if m2 > 0.0 else 0.0
        hi = 0.0
        lo = 0.0
        values = self._buf[self._pos :] + self._buf[: self._pos]
        for v in values:
            s = hi + v
            bb = s - hi
            lo += (hi - (s - bb)) + (v - bb)
            hi = s
        mean = (hi + lo) / period
        m2 = 0.0
        dsum = 0.0
        for v in values:
            dev = v - mean
            dsum += dev
            m2 += dev * dev
        m2 -= dsum * dsum / period
        mean = (hi + lo) * inv
        self._hi = hi
        self._lo = lo
        self._mean = mean
        self._m2 = m2
        self._err = EPS * period * abs(m2)
        return mean, math.sqrt(m2 * inv) if m2 > 0.0 else 0.0
