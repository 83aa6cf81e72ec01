"""sma_cross follows the crossover rule of the spec exactly."""

from __future__ import annotations

import numpy as np

from sapphire.backtest import bars_from_frame
from sapphire.strategy import get_strategy


def test_sma_cross_matches_the_written_rule(btc_df) -> None:  # type: ignore[no-untyped-def]
    bars = bars_from_frame(btc_df)
    close = btc_df["close"].to_numpy()
    fast = btc_df["close"].rolling(12).mean().to_numpy()
    slow = btc_df["close"].rolling(40).mean().to_numpy()
    prev_f, prev_s = np.roll(fast, 1), np.roll(slow, 1)
    with np.errstate(invalid="ignore"):
        up = (prev_f <= prev_s) & (fast > slow)
        down = (prev_f >= prev_s) & (fast < slow)
    up[0] = down[0] = False
    sig = get_strategy("sma_cross")(fast=12, slow=40, short=True).signals(bars)
    # Pandas' rolling mean differs from a running sum by rounding only; compare away from ties.
    tie = np.abs(fast - slow) < 1e-6 * close
    tie |= np.roll(tie, 1)
    np.testing.assert_array_equal(np.asarray(sig.enter_long)[~tie], up[~tie])
    np.testing.assert_array_equal(np.asarray(sig.exit_long)[~tie], down[~tie])
    np.testing.assert_array_equal(np.asarray(sig.enter_short), np.asarray(sig.exit_long))
    np.testing.assert_array_equal(np.asarray(sig.exit_short), np.asarray(sig.enter_long))
    assert up.sum() > 100
