"""Fractional differentiation with a fixed-width window (FFD, Lopez de Prado AFML ch. 5).

Differencing a price series by a fraction d in (0, 1) makes it stationary while keeping
more of its memory than returns (d = 1) do. `min_frac_order` finds the smallest such d.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
MIN_ADF_OBSERVATIONS = 20


@dataclass(frozen=True)
class FracDiffResult:
    """The order chosen by `min_frac_order` and its ADF test on the differenced series."""

    d: float
    adf_stat: float
    p_value: float
    correlation_with_original: float
    passed: bool = True  # False when no d on the grid passed (the result is then d = 1)


def _check(func: str, name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{func}: {name} must be a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{func}: {name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def ffd_weights(d: float, threshold: float = 1e-4, max_width: int | None = None) -> FloatArray:
    """FFD weights w_0 = 1, w_k = -w_(k-1) (d - k + 1) / k, kept while |w_k| >= threshold.

    Index k is the weight of lag k; `max_width` caps the number of weights.
    """
    d = _check("ffd_weights", "d", d, 0.0, math.inf)
    threshold = _check("ffd_weights", "threshold", threshold, 0.0, 1.0)
    if threshold == 0.0:
        raise ValueError("ffd_weights: threshold must be > 0, got 0")
    weights = [1.0]
    k = 1
    while max_width is None or k < max_width:
        w = -weights[-1] * (d - k + 1) / k
        if abs(w) < threshold:
            break
        weights.append(w)
        k += 1
    return np.asarray(weights)


def frac_diff(x: ArrayLike, d: float, threshold: float = 1e-4) -> FloatArray:
    """Fixed-width-window fractional difference of order d; NaN for the first width - 1 values.

    y[t] = sum_k w_k x[t - k] over the `ffd_weights`; a NaN in x makes every window holding
    it NaN.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"frac_diff: x must be one-dimensional, got shape {arr.shape}")
    n = arr.shape[0]
    weights = ffd_weights(d, threshold, max_width=n + 1)
    out = np.full(n, np.nan)
    width = weights.shape[0]
    if width <= n:
        out[width - 1 :] = np.convolve(arr, weights, mode="valid")
    return out


def min_frac_order(
    x: ArrayLike | Sequence[ArrayLike],
    *,
    p_value: float = 0.05,
    step: float = 0.05,
    threshold: float = 1e-4,
) -> FracDiffResult:
    """Smallest d in [0, 1] on a grid of `step` whose FFD series passes the ADF test.

    `x` is one series or a list of 1-D pieces of it (the training stretches of a CV split
    around its test groups): each piece is differenced on its own, so no window reaches
    across a gap, and the test runs on their values joined.
    ADF: statsmodels `adfuller` with a constant, one lag (maxlag=1, no autolag), as in
    AFML 5.6; it passes when its p-value < `p_value`. Orders whose series keep fewer than
    20 values are skipped. If none passes, the d = 1 result is returned with passed=False.
    """
    from statsmodels.tsa.stattools import adfuller

    func = "min_frac_order"
    p_value = _check(func, "p_value", p_value, 0.0, 1.0)
    step = _check(func, "step", step, 0.0, 1.0)
    if step == 0.0:
        raise ValueError(f"{func}: step must be > 0, got {step!r}")
    pieces = _pieces(x)
    grid = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    if grid[-1] < 1.0:
        grid = np.append(grid, 1.0)
    result: FracDiffResult | None = None
    for d in grid:
        ys, xs = [], []
        for arr in pieces:
            y = frac_diff(arr, float(d), threshold)
            valid = np.isfinite(y) & np.isfinite(arr)
            ys.append(y[valid])
            xs.append(arr[valid])
        y_all, x_all = np.concatenate(ys), np.concatenate(xs)
        if y_all.size < MIN_ADF_OBSERVATIONS:
            continue
        with warnings.catch_warnings():  # statsmodels 0.15 announces a new return type
            warnings.simplefilter("ignore", FutureWarning)
            stat, p = adfuller(y_all, maxlag=1, regression="c", autolag=None)[:2]
        corr = float(np.corrcoef(y_all, x_all)[0, 1]) if d > 0 else 1.0
        result = FracDiffResult(float(d), float(stat), float(p), corr, bool(p < p_value))
        if result.passed:
            return result
    if result is None:
        raise ValueError(
            f"{func}: the series is too short: no order keeps {MIN_ADF_OBSERVATIONS} values "
            f"(got {sum(a.shape[0] for a in pieces)} values, threshold {threshold})"
        )
    return result


def _pieces(x: ArrayLike | Sequence[ArrayLike]) -> list[FloatArray]:
    """One series, or a list of 1-D pieces, as a list of float arrays."""
    if isinstance(x, list | tuple) and x and np.ndim(x[0]) == 1:
        pieces = [np.asarray(piece, dtype=np.float64) for piece in x]
    else:
        pieces = [np.asarray(x, dtype=np.float64)]
    for piece in pieces:
        if piece.ndim != 1:
            raise ValueError(f"min_frac_order: x must be one-dimensional, got shape {piece.shape}")
    return pieces
