"""Mean reversion on the rolling z-score (Bollinger bands in z units)."""

from __future__ import annotations

import numpy as np

from sapphire.indicators import crossed_above, crossed_below, zscore
from sapphire.strategy.base import Bars, Param, Signals, Strategy


class MeanReversion(Strategy):
    """Buy when the close falls `entry_z` standard deviations below its mean, sell at `exit_z`.

    The z-score is (close - SMA) / population std over `period` bars, so `entry_z=2`
    is a touch of the lower Bollinger band (2 std). With `short=True` the mirror
    trade sells the upper band and covers at -`exit_z`.
    """

    period = Param(20, low=3, high=2000, doc="look-back of the mean and std (bars)")
    entry_z = Param(2.0, low=0.1, high=10.0, doc="z-score distance that opens a trade")
    exit_z = Param(0.0, low=-5.0, high=5.0, doc="z-score at which the trade is closed")
    short = Param(False, doc="also trade the short side")
    constraints = (("exit_z", ">", "-entry_z"),)  # the exit lies on the mean's side

    def signals(self, bars: Bars) -> Signals:
        """Band crossings of the z-score."""
        z = zscore(bars.close, self.period)
        lower = np.full_like(z, -self.entry_z)
        exit_level = np.full_like(z, self.exit_z)
        enter_long = crossed_below(z, lower)
        exit_long = crossed_above(z, exit_level)
        if not self.short:
            return Signals(enter_long=enter_long, exit_long=exit_long)
        return Signals(
            enter_long=enter_long,
            exit_long=exit_long,
            enter_short=crossed_above(z, -lower),
            exit_short=crossed_below(z, -exit_level),
        )
