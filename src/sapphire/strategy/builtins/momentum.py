"""Time-series momentum on the rate of change."""

from __future__ import annotations

import numpy as np

from sapphire.indicators import crossed_above, crossed_below
from sapphire.strategy.base import Bars, Param, Signals, Strategy


class Momentum(Strategy):
    """Long when the `lookback`-bar return rises above `threshold`, out when it turns negative.

    With `short=True`, short when it falls below -`threshold`, cover when it turns positive.
    """

    lookback = Param(60, low=2, high=5000, doc="bars over which the return is measured")
    threshold = Param(0.005, low=0.0, high=1.0, doc="entry threshold on the return")
    short = Param(False, doc="also trade the short side")

    def signals(self, bars: Bars) -> Signals:
        """Threshold crossings of the rate of change."""
        close = bars.close
        roc = np.full(close.shape[0], np.nan)
        n = self.lookback
        roc[n:] = close[n:] / close[:-n] - 1.0
        zero = np.zeros_like(roc)
        up = np.full_like(roc, self.threshold)
        enter_long = crossed_above(roc, up)
        exit_long = crossed_below(roc, zero)
        if not self.short:
            return Signals(enter_long=enter_long, exit_long=exit_long)
        enter_short = crossed_below(roc, -up)
        exit_short = crossed_above(roc, zero)
        return Signals(
            enter_long=enter_long,
            exit_long=exit_long,
            enter_short=enter_short,
            exit_short=exit_short,
        )
