"""Moving-average crossover."""

from __future__ import annotations

from sapphire.indicators import crossed_above, crossed_below, sma
from sapphire.strategy.base import Bars, Param, Signals, Strategy


class SmaCross(Strategy):
    """Long when the fast SMA crosses above the slow one, out on the opposite cross.

    Enter at a bar's close when fast[t-1] <= slow[t-1] and fast[t] > slow[t]; exit on
    the mirror cross. With `short=True` the mirror cross also opens a short.
    """

    fast = Param(10, low=2, high=200, doc="fast SMA period (bars)")
    slow = Param(30, low=3, high=1000, doc="slow SMA period (bars)")
    short = Param(False, doc="also trade the short side")
    constraints = (("fast", "<", "slow"),)  # the fast average must be faster

    def signals(self, bars: Bars) -> Signals:
        """Crossovers of the two averages."""
        fast, slow = sma(bars.close, self.fast), sma(bars.close, self.slow)
        up, down = crossed_above(fast, slow), crossed_below(fast, slow)
        if self.short:
            return Signals(enter_long=up, exit_long=down, enter_short=down, exit_short=up)
        return Signals(enter_long=up, exit_long=down)
