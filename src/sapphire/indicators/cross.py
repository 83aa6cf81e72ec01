"""Crossovers: the bars where one series crosses above or below another."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from sapphire.indicators._common import FloatArray, as_aligned

BoolArray = NDArray[np.bool_]


@njit(cache=True)
def _crossed(a: FloatArray, b: FloatArray, sign: float) -> BoolArray:
    # With sign = -1 both sides flip, turning "crossed below" into "crossed above".
    # Every comparison with a NaN is False, which gives the NaN rule for free.
    n = a.shape[0]
    out = np.empty(n, dtype=np.bool_)
    if n == 0:
        return out
    out[0] = False
    was_at_or_below = sign * a[0] <= sign * b[0]
    for t in range(1, n):
        x = sign * a[t]
        y = sign * b[t]
        out[t] = was_at_or_below and x > y
        was_at_or_below = x <= y
    return out


def _operands(func: str, a: ArrayLike, b: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Both operands as aligned arrays; a scalar on either side is broadcast."""
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim == 0 and b_arr.ndim == 1:
        a_arr = np.full(b_arr.shape, a_arr)
    elif b_arr.ndim == 0 and a_arr.ndim == 1:
        b_arr = np.full(a_arr.shape, b_arr)
    a_arr, b_arr = as_aligned(func, a=a_arr, b=b_arr)
    return a_arr, b_arr


def crossed_above(a: ArrayLike, b: ArrayLike) -> BoolArray:
    """True where a[t-1] <= b[t-1] and a[t] > b[t]; False at t=0 and wherever a value is NaN."""
    return _crossed(*_operands("crossed_above", a, b), 1.0)


def crossed_below(a: ArrayLike, b: ArrayLike) -> BoolArray:
    """True where a[t-1] >= b[t-1] and a[t] < b[t]; False at t=0 and wherever a value is NaN."""
    return _crossed(*_operands("crossed_below", a, b), -1.0)
