"""Value at risk and volatility statistics (floats: these are analytics, not ledger values).

VaR is reported as a positive fraction of equity: ``0.03`` means "with the given
confidence, one period's loss does not exceed 3 % of equity". Returns are simple
(arithmetic) period returns, ``equity[t] / equity[t-1] - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

VarMethod = Literal["historical", "parametric"]
VAR_METHODS: tuple[str, ...] = ("historical", "parametric")


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, float | int) and 0.5 <= float(confidence) < 1.0):
        raise ValueError(f"VaR confidence must be in [0.5, 1), got {confidence!r}")


def _as_returns(returns: Sequence[float] | np.ndarray, minimum: int) -> np.ndarray:
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {arr.shape}")
    if arr.size < minimum:
        raise ValueError(f"VaR needs at least {minimum} returns, got {arr.size}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"returns must be finite, got {float(arr[i])!r} at index {i}")
    return arr


def historical_var(returns: Sequence[float] | np.ndarray, confidence: float = 0.95) -> float:
    """Historical VaR: minus the ``1 - confidence`` empirical quantile of ``returns``.

    The quantile is numpy's default (linear interpolation between order statistics).
    Never negative: when even the worst tail is a gain the VaR is 0.
    """
    _check_confidence(confidence)
    arr = _as_returns(returns, 1)
    q = float(np.quantile(arr, 1.0 - float(confidence)))
    return max(0.0, -q)


def parametric_var(returns: Sequence[float] | np.ndarray, confidence: float = 0.95) -> float:
    """Parametric (normal, variance-covariance) VaR: ``-(mean + z * std)``.

    ``z`` is the ``1 - confidence`` quantile of the standard normal (-1.645 at 95 %,
    -2.326 at 99 %) and ``std`` the sample standard deviation (ddof=1). Never negative.
    """
    _check_confidence(confidence)
    arr = _as_returns(returns, 2)
    z = NormalDist().inv_cdf(1.0 - float(confidence))
    mu = float(arr.mean())
    sigma = float(arr.std(ddof=1))
    return max(0.0, -(mu + z * sigma))


def value_at_risk(
    returns: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: VarMethod | str = "historical",
) -> float:
    """VaR by ``method`` (``"historical"`` or ``"parametric"``)."""
    if method == "historical":
        return historical_var(returns, confidence)
    if method == "parametric":
        return parametric_var(returns, confidence)
    raise ValueError(f"unknown VaR method {method!r}; expected one of {', '.join(VAR_METHODS)}")


def realised_volatility(
    returns: Sequence[float] | np.ndarray, periods_per_year: float = 365.0
) -> float:
    """Annualised volatility: sample std (ddof=1) of period returns * sqrt(periods_per_year).

    Crypto trades every day, so daily returns annualise with 365 by default.
    """
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
    arr = _as_returns(returns, 2)
    return float(arr.std(ddof=1)) * math.sqrt(periods_per_year)


def returns_from_equity(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    """Simple returns of an equity curve; every equity value must be positive."""
    arr = np.asarray(equity, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"equity must be one-dimensional, got shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"equity must be positive and finite, got {float(arr[i])!r} at index {i}")
    return arr[1:] / arr[:-1] - 1.0
