"""Input checks and small helpers shared by every indicator module."""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

NAN = math.nan
V = TypeVar("V")

# A rolling kernel updates its window sums in O(1) per bar and re-sums the window from
# scratch every `max(period, RESYNC_BARS)` bars, so floating-point drift cannot build up
# over long series while the re-sums cost at most one extra pass over the data.
RESYNC_BARS = 1024


def resync_interval(period: int) -> int:
    """Bars between two full re-sums of a rolling window of `period` bars."""
    return max(period, RESYNC_BARS)


def check_period(func: str, value: Any, minimum: int = 1, name: str = "period") -> int:
    """Return `value` as an int, or raise ValueError unless it is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_series(func: str, name: str, values: ArrayLike) -> FloatArray:
    """Convert one input to a contiguous 1-D float64 array, or raise ValueError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{func}: {name} must be numeric, got {type(values).__name__}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{func}: {name} must be one-dimensional, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def as_aligned(func: str, **inputs: ArrayLike) -> list[FloatArray]:
    """Convert several inputs with `as_series`; raise ValueError unless all lengths agree."""
    arrays = [as_series(func, name, values) for name, values in inputs.items()]
    if len({arr.shape[0] for arr in arrays}) > 1:
        got = ", ".join(f"{name}={arr.shape[0]}" for name, arr in zip(inputs, arrays, strict=True))
        raise ValueError(f"{func}: inputs must have the same length, got {got}")
    return arrays


class Streaming(Generic[V]):
    """Base of the streaming indicators: the last value and whether it is defined."""

    __slots__ = ("_value",)

    _value: V

    @property
    def value(self) -> V:
        """The value returned by the last `update` (NaN before the first)."""
        return self._value

    @property
    def ready(self) -> bool:
        """Whether the last value is defined: warm-up over and no NaN in play."""
        value: Any = self._value
        first = value[0] if isinstance(value, tuple) else value
        return not math.isnan(first)
