"""`Backtest(engine="event", maintenance_margin=...)`: the bar venue liquidates a 10x long
on a hand-made path at the exact price and fees; the kernel refuses the options."""

from __future__ import annotations

import numpy as np
import pytest

from sapphire import Backtest, Bars, Signals, Strategy

MIN = 60_000_000_000


class LongOnce(Strategy):
    """Enter long on the first bar, never exit (the end closes what is left)."""

    def signals(self, bars: Bars) -> Signals:
        enter = np.zeros(len(bars), dtype=bool)
        enter[0] = True
        return Signals(enter_long=enter)


def _bars() -> Bars:
    o = [20000.0, 20000.0, 19000.0, 19000.0, 15000.0]
    h = [20000.0, 20100.0, 19500.0, 19500.0, 15000.0]
    lo = [20000.0, 19900.0, 18101.0, 18100.5, 14000.0]
    c = [20000.0, 20000.0, 18500.0, 18500.0, 14500.0]
    n = len(o)
    return Bars(
        time=np.arange(n, dtype=np.int64) * MIN, open=np.array(o), high=np.array(h),
        low=np.array(lo), close=np.array(c), volume=np.ones(n), timeframe_ns=MIN,
    )  # fmt: skip


def _run(**kw: object) -> object:
    return Backtest(
        _bars(), LongOnce, size=5, size_mode="fixed", leverage=20, taker_fee=0.0005,
        maker_fee=0.0002, **kw,
    ).run()  # type: ignore[arg-type]  # fmt: skip


def test_a_10x_long_is_liquidated_at_the_low_with_taker_and_liquidation_fees() -> None:
    r = _run(engine="event", maintenance_margin=0.005, liquidation_fee=0.001)
    (trade,) = r.trades.itertuples()  # type: ignore[attr-defined]
    assert trade.exit_reason == "liquidation" and trade.side == "long"
    assert (trade.entry_bar, trade.exit_bar) == (1, 3)
    assert trade.entry_price == 20000.0 and trade.exit_price == 18100.5
    # entry taker fee 50; exit taker 45.25125 + liquidation fee 90.5025
    assert trade.fees == pytest.approx(50 + 45.25125 + 90.5025, rel=1e-12)
    assert trade.pnl == pytest.approx(-9497.5 - 50 - 135.75375, rel=1e-12)
    fills = r.fills  # type: ignore[attr-defined]
    assert list(fills["role"]) == ["entry", "liquidation"]
    assert fills["fee"].iloc[1] == pytest.approx(135.75375, rel=1e-12)
    equity = r.equity  # type: ignore[attr-defined]
    assert equity.iloc[2] == pytest.approx(9950 + 5 * (18500 - 20000))
    assert equity.iloc[3] == pytest.approx(316.74625, rel=1e-12)
    assert equity.iloc[-1] == pytest.approx(316.74625, rel=1e-12)  # flat after it
    assert r.config["maintenance_margin"] == 0.005  # type: ignore[attr-defined]


def test_without_the_option_the_event_engine_equals_the_kernel() -> None:
    event, vector = _run(engine="event"), _run()
    for r in (event, vector):
        (trade,) = r.trades.itertuples()  # type: ignore[attr-defined]
        assert trade.exit_reason == "end" and trade.exit_price == 14500.0
    assert np.allclose(event.equity.to_numpy(), vector.equity.to_numpy(), rtol=1e-12)  # type: ignore[attr-defined]


def test_the_liquidation_options_are_refused_by_the_kernel_and_checked() -> None:
    with pytest.raises(ValueError, match="maintenance_margin and liquidation_fee need engine"):
        _run(maintenance_margin=0.005, liquidation_fee=0.001)
    with pytest.raises(ValueError, match="maintenance_margin need engine='event'"):
        _run(maintenance_margin=0.005)
    with pytest.raises(ValueError, match="liquidation_fee needs maintenance_margin"):
        _run(engine="event", liquidation_fee=0.001)
    with pytest.raises(ValueError, match=r"maintenance_margin=1\.5 is invalid"):
        _run(engine="event", maintenance_margin=1.5)
