"""Technical indicators, vectorised over NumPy arrays and streaming one bar at a time.

Every indicator comes twice: a function over whole float64 arrays (Numba kernels where
the computation is a loop) and a streaming class of the same name in CamelCase whose
`update(...)` takes one bar and returns the current value. Fed the same bars, the two
return the same numbers, bar for bar.

    from sapphire.indicators import RSI, rsi

    values = rsi(close, 14)           # the whole series at once
    live = RSI(14)
    for price in close:
        current = live.update(price)  # one bar at a time; also live.value, live.ready

Conventions shared by all indicators:

- Outputs are float64 arrays of the input length, NaN where undefined (the warm-up bars,
  as in TA-Lib, whose values these match where TA-Lib has the indicator).
- NaN inputs: a window indicator (SMA, WMA, Bollinger Bands, z-score, Donchian,
  stochastic, rolling VWAP) is NaN while its window holds a NaN. A recursive indicator
  (EMA, RSI, MACD, ATR, ADX, OBV, cumulative VWAP) skips a bar with a NaN: NaN there,
  state unchanged. Leading NaNs therefore just delay the warm-up, so indicators chain
  (`ema(rsi(close), 9)`).
- Flat windows: RSI and the stochastic give the neutral 50 where the window has no
  movement at all (TA-Lib gives 0); the z-score is NaN where the std is 0.
"""

from __future__ import annotations

from sapphire.indicators.cross import crossed_above, crossed_below
from sapphire.indicators.moving_averages import EMA, SMA, WMA, ema, sma, wma
from sapphire.indicators.oscillators import MACD, RSI, Stoch, macd, rsi, stoch
from sapphire.indicators.statistics import ZScore, zscore
from sapphire.indicators.trend import ADX, adx
from sapphire.indicators.volatility import ATR, BBands, Donchian, atr, bbands, donchian
from sapphire.indicators.volume import OBV, VWAP, obv, vwap

__all__ = [
    "ADX",
    "ATR",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "BBands",
    "Donchian",
    "Stoch",
    "ZScore",
    "adx",
    "atr",
    "bbands",
    "crossed_above",
    "crossed_below",
    "donchian",
    "ema",
    "macd",
    "obv",
    "rsi",
    "sma",
    "stoch",
    "vwap",
    "wma",
    "zscore",
]
