"""Donchian channel breakout with an ATR stop."""

from __future__ import annotations

import numpy as np

from sapphire.indicators import atr, donchian
from sapphire.strategy.base import Bars, Param, Signals, Strategy


def _shift(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    out[0] = np.nan
    out[1:] = x[:-1]
    return out


class VolatilityBreakout(Strategy):
    """Buy a close above the highest high of the previous `channel` bars; stop at `atr_mult` ATRs.

    Exit when the close falls below the lowest low of the previous `exit_channel`
    bars, or at the stop-loss (`atr_mult` x ATR from the entry, as a fraction of the
    close at the signal). With `short=True` the mirror breakout sells.
    """

    channel = Param(20, low=2, high=2000, doc="entry channel (bars)")
    exit_channel = Param(10, low=2, high=2000, doc="exit channel (bars)")
    atr_period = Param(14, low=2, high=500, doc="ATR period (bars)")
    atr_mult = Param(2.0, low=0.0, high=20.0, doc="stop distance in ATRs; 0 = no stop")
    short = Param(False, doc="also trade the short side")

    def signals(self, bars: Bars) -> Signals:
        """Channel breakouts and an ATR-sized stop per entry."""
        close = bars.close
        upper = _shift(donchian(bars.high, bars.low, self.channel)[0])
        exit_upper, _, exit_lower = donchian(bars.high, bars.low, self.exit_channel)
        exit_lower, exit_upper = _shift(exit_lower), _shift(exit_upper)
        lower = _shift(donchian(bars.high, bars.low, self.channel)[2])
        stop = self.atr_mult * atr(bars.high, bars.low, close, self.atr_period) / close
        with np.errstate(invalid="ignore"):
            enter_long = close > upper
            exit_long = close < exit_lower
            if not self.short:
                return Signals(enter_long=enter_long, exit_long=exit_long, stop_loss=stop)
            return Signals(
                enter_long=enter_long,
                exit_long=exit_long,
                enter_short=close < lower,
                exit_short=close > exit_upper,
                stop_loss=stop,
            )
