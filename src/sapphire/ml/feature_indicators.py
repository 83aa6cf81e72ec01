"""The indicator families of model features: vectorised and streaming forms, warm-up.

Each `Indicator` is scale-free (ratios, oscillators, z-scores) so models transfer across
price levels and instruments; its `batch` form (Numba indicators of `sapphire.indicators`)
and its `stream` form (their streaming twins) give the same numbers bar for bar.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sapphire.indicators import (
    ADX,
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    BBands,
    Donchian,
    Stoch,
    ZScore,
    adx,
    atr,
    bbands,
    donchian,
    ema,
    macd,
    rsi,
    sma,
    stoch,
    zscore,
)
from sapphire.indicators._rolling import RollingMeanStd
from sapphire.indicators.statistics import rolling_mean_std

FloatArray = NDArray[np.float64]
Updater = Callable[[float, float, float], float]

NAN = math.nan


def _ratio(num: FloatArray, den: FloatArray, offset: float = 0.0) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num / den - offset, dtype=np.float64)


def _position(x: FloatArray, lower: FloatArray, upper: FloatArray, flat: float) -> FloatArray:
    span = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span == 0.0, flat, (x - lower) / span)


def _log_returns(close: FloatArray) -> FloatArray:
    out = np.full_like(close, NAN)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(close[1:] / close[:-1], out=out[1:])
    return out


def _macd_periods(period: int) -> tuple[int, int, int]:
    """MACD (fast, slow, signal) scaled from 12/26/9 so that `period` is the slow EMA."""
    return max(1, (12 * period + 13) // 26), period, max(1, (9 * period + 13) // 26)


def _on_close(make: Callable[[int], Callable[[float], float]]) -> Callable[[int], Updater]:
    def factory(period: int) -> Updater:
        update = make(period)
        return lambda h, lo, c: update(c)

    return factory


def _natr(p: int) -> Updater:
    update = ATR(p).update
    return lambda h, lo, c: update(h, lo, c) / c


def _sma_ratio(p: int) -> Callable[[float], float]:
    update = SMA(p).update
    return lambda c: c / update(c) - 1.0


def _ema_ratio(p: int) -> Callable[[float], float]:
    update = EMA(p).update
    return lambda c: c / update(c) - 1.0


def _bb_pctb(p: int) -> Callable[[float], float]:
    update = BBands(p, 2.0).update

    def pctb(c: float) -> float:
        upper, _, lower = update(c)
        span = upper - lower
        return NAN if span == 0.0 else (c - lower) / span

    return pctb


def _bb_pctb_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    upper, _, lower = bbands(c, p, 2.0)
    return _position(c, lower, upper, NAN)


def _macd_hist(p: int) -> Callable[[float], float]:
    update = MACD(*_macd_periods(p)).update
    return lambda c: update(c)[2] / c


def _stoch_k(p: int) -> Updater:
    update = Stoch(p, 3, 3).update
    return lambda h, lo, c: update(h, lo, c)[0]


def _vol(p: int) -> Updater:
    stats = RollingMeanStd(p)
    prev = [NAN]

    def vol(h: float, lo: float, c: float) -> float:
        r = math.log(c / prev[0]) if prev[0] == prev[0] and c == c else NAN
        prev[0] = c
        return stats.update(r)[1]

    return vol


def _roc_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    out = np.full_like(c, NAN)
    out[p:] = _ratio(c[p:], c[:-p], 1.0)
    return out


def _roc(p: int) -> Callable[[float], float]:
    closes: deque[float] = deque(maxlen=p + 1)

    def roc(c: float) -> float:
        closes.append(c)
        return c / closes[0] - 1.0 if len(closes) > p else NAN

    return roc


def _donchian_pos_batch(h: FloatArray, lo: FloatArray, c: FloatArray, p: int) -> FloatArray:
    upper, _, lower = donchian(h, lo, p)
    return _position(c, lower, upper, 0.5)


def _donchian_pos(p: int) -> Updater:
    update = Donchian(p).update

    def position(h: float, lo: float, c: float) -> float:
        upper, _, lower = update(h, lo)
        span = upper - lower
        return 0.5 if span == 0.0 else (c - lower) / span

    return position


@dataclass(frozen=True)
class Indicator:
    """One scale-free feature family: vectorised and streaming forms of the same numbers."""

    batch: Callable[[FloatArray, FloatArray, FloatArray, int], FloatArray]
    stream: Callable[[int], Updater]  # period -> update(high, low, close) -> value
    lookback: Callable[[int], int]  # index of the first defined value on clean data
    min_period: int
    doc: str


INDICATORS: dict[str, Indicator] = {
    "rsi": Indicator(
        lambda h, lo, c, p: rsi(c, p),
        _on_close(lambda p: RSI(p).update),
        lambda p: p,
        1,
        "Wilder RSI of the close, 0..100",
    ),
    "zscore": Indicator(
        lambda h, lo, c, p: zscore(c, p),
        _on_close(lambda p: ZScore(p).update),
        lambda p: p - 1,
        2,
        "z-score of the close over p bars",
    ),
    "natr": Indicator(
        lambda h, lo, c, p: _ratio(atr(h, lo, c, p), c),
        _natr,
        lambda p: p,
        1,
        "Wilder ATR / close",
    ),
    "sma_ratio": Indicator(
        lambda h, lo, c, p: _ratio(c, sma(c, p), 1.0),
        _on_close(_sma_ratio),
        lambda p: p - 1,
        1,
        "close / SMA - 1",
    ),
    "ema_ratio": Indicator(
        lambda h, lo, c, p: _ratio(c, ema(c, p), 1.0),
        _on_close(_ema_ratio),
        lambda p: p - 1,
        1,
        "close / EMA - 1",
    ),
    "bb_pctb": Indicator(
        _bb_pctb_batch,
        _on_close(_bb_pctb),
        lambda p: p - 1,
        2,
        "Bollinger %B of 2-std bands (0 lower, 1 upper), NaN on a flat window",
    ),
    "macd_hist": Indicator(
        lambda h, lo, c, p: _ratio(macd(c, *_macd_periods(p))[2], c),
        _on_close(_macd_hist),
        lambda p: p + _macd_periods(p)[2] - 2,
        2,
        "MACD histogram / close; slow EMA p, fast and signal scaled from 12/26/9",
    ),
    "adx": Indicator(
        lambda h, lo, c, p: adx(h, lo, c, p),
        lambda p: ADX(p).update,
        lambda p: 2 * p - 1,
        1,
        "Wilder ADX, 0..100",
    ),
    "stoch_k": Indicator(
        lambda h, lo, c, p: stoch(h, lo, c, p, 3, 3)[0],
        _stoch_k,
        lambda p: p + 3,
        1,
        "slow stochastic %K (fastk p, slowk 3, slowd 3), 0..100",
    ),
    "vol": Indicator(
        lambda h, lo, c, p: rolling_mean_std(_log_returns(c), p)[1],
        _vol,
        lambda p: p,
        2,
        "population std of 1-bar log returns over p bars",
    ),
    "roc": Indicator(_roc_batch, _on_close(_roc), lambda p: p, 1, "close / close p bars ago - 1"),
    "donchian_pos": Indicator(
        _donchian_pos_batch,
        _donchian_pos,
        lambda p: p - 1,
        1,
        "close within the p-bar high-low channel, 0..1 (0.5 when flat)",
    ),
}
