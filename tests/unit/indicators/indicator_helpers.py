"""Helpers shared by the `sapphire.indicators` tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def assert_same_series(
    actual: ArrayLike, expected: ArrayLike, rtol: float = 1e-9, atol: float = 0.0
) -> None:
    """Same length, NaN in the same places, and the defined values equal within tolerance."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    mismatch = np.flatnonzero(nan_a != nan_e)
    assert mismatch.size == 0, f"NaN positions differ first at bar {mismatch[0]}"
    assert (~nan_e).any(), "nothing defined to compare"
    np.testing.assert_allclose(actual[~nan_e], expected[~nan_e], rtol=rtol, atol=atol)


def stream(indicator: Any, *columns: NDArray[np.float64]) -> NDArray[np.float64]:
    """Feed the bars one at a time; the outputs as an array (one column per output)."""
    update = indicator.update
    return np.array([update(*bar) for bar in zip(*(c.tolist() for c in columns), strict=True)])
