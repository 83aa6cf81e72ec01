"""Rolling statistics: mean, population standard deviation and z-score."""

from __future__ import annotations

from numpy.typing import ArrayLike

from sapphire.indicators._common import NAN, FloatArray, Streaming, as_series, check_period
from sapphire.indicators._rolling import MEAN_STD, ZSCORE, RollingMeanStd, rolling_stat_kernel


def rolling_mean_std(x: ArrayLike, period: int) -> tuple[FloatArray, FloatArray]:
    """Rolling mean and population standard deviation (ddof=0) of the last `period` values."""
    period = check_period("rolling_mean_std", period, minimum=2)
    mean, std = rolling_stat_kernel(as_series("rolling_mean_std", "x", x), period, MEAN_STD, 0.0)
    return mean, std


def zscore(x: ArrayLike, period: int = 20) -> FloatArray:
    """(x - rolling mean) / rolling population std over `period` bars; NaN where std == 0."""
    period = check_period("zscore", period, minimum=2)
    return rolling_stat_kernel(as_series("zscore", "x", x), period, ZSCORE, 0.0)[0]


class ZScore(Streaming[float]):
    """Streaming rolling z-score; twin of `zscore`."""

    __slots__ = ("_stats",)

    def __init__(self, period: int = 20) -> None:
        self._stats = RollingMeanStd(check_period("ZScore", period, minimum=2))
        self.reset()

    def reset(self) -> None:
        """Forget every value."""
        self._stats.reset()
        self._value = NAN

    def update(self, x: float) -> float:
        """Add one value; return its z-score (NaN during warm-up and where std == 0)."""
        x = float(x)
        mean, std = self._stats.update(x)
        self._value = (x - mean) / std if std > 0.0 else NAN
        return self._value
