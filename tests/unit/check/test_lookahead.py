"""The look-ahead detector: built-ins pass, strategies that peek are caught."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sapphire import Bars, Param, Signals, Strategy
from sapphire.backtest.runner import bars_from_frame
from sapphire.check import check_lookahead
from sapphire.check.lookahead import _cut_points
from sapphire.indicators import crossed_above, crossed_below, sma
from sapphire.strategy import builtin_strategies


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df)


# --------------------------------------------------------------- honest strategies


@pytest.mark.parametrize("name", sorted(builtin_strategies()))
@pytest.mark.parametrize("short", [False, True])
def test_every_builtin_passes(bars: Bars, name: str, short: bool) -> None:
    report = check_lookahead(name, bars, params={"short": short})
    assert report.clean, report.violations[:5]
    assert report.n_violations == 0 and report.violations == [] and report.horizon == 0
    assert report.params["short"] is short
    assert len(report.cuts) == 20 and report.cuts[-1] == len(bars) - 1


def test_builtins_pass_with_other_parameters_and_the_dataframe(btc_df: pd.DataFrame) -> None:
    for name, params in [
        ("sma_cross", {"fast": 3, "slow": 400}),
        ("volatility_breakout", {"channel": 300, "atr_mult": 0.5, "short": True}),
        ("mean_reversion", {"period": 500, "entry_z": 1.0, "exit_z": 0.5}),
    ]:
        assert check_lookahead(name, btc_df, params=params, checkpoints=8).clean


class LongWarmup(Strategy):
    """Honest, with NaN stops for its first 1000 bars (NaN == NaN in the warm-up)."""

    period = Param(1000, low=2)

    def signals(self, bars: Bars) -> Signals:
        slow = sma(bars.close, self.period)
        return Signals(
            enter_long=crossed_above(bars.close, slow),
            exit_long=crossed_below(bars.close, slow),
            stop_loss=np.abs(bars.close - slow) / bars.close,
            entry_type="limit",
            entry_price=bars.low * 0.999,
        )


def test_nan_warmup_and_scalar_or_array_extras_are_not_lookahead(bars: Bars) -> None:
    report = check_lookahead(LongWarmup, bars, checkpoints=12)
    assert report.clean


# --------------------------------------------------------------- strategies that peek


class NextClose(Strategy):
    """Buys when the *next* close is higher: np.roll(close, -1)."""

    def signals(self, bars: Bars) -> Signals:
        nxt = np.roll(bars.close, -1)
        return Signals(enter_long=nxt > bars.close, exit_long=nxt < bars.close)


class ShiftMinusOne(Strategy):
    """The pandas spelling of the same mistake: close.shift(-1)."""

    def signals(self, bars: Bars) -> Signals:
        close = pd.Series(bars.close)
        up = (close.shift(-1) > close).to_numpy()
        return Signals(enter_long=up, exit_long=~up)


class CentredWindow(Strategy):
    """A centred rolling mean: each value averages `window // 2` future bars."""

    window = Param(21, low=3)

    def signals(self, bars: Bars) -> Signals:
        mid = pd.Series(bars.close).rolling(self.window, center=True).mean().to_numpy()
        with np.errstate(invalid="ignore"):
            return Signals(enter_long=bars.close > mid, exit_long=bars.close < mid)


class WholeSeriesNormalised(Strategy):
    """Compares the close with the mean of the whole series, future included."""

    def signals(self, bars: Bars) -> Signals:
        above = bars.close > bars.close.mean()
        return Signals(enter_long=above, exit_long=~above)


class FutureStop(Strategy):
    """Honest entries, but the stop distance is read from the next bar's low."""

    def signals(self, bars: Bars) -> Signals:
        fast, slow = sma(bars.close, 10), sma(bars.close, 30)
        nxt_low = np.append(bars.low[1:], np.nan)
        return Signals(
            enter_long=crossed_above(fast, slow),
            exit_long=crossed_below(fast, slow),
            stop_loss=(bars.close - nxt_low) / bars.close + 1e-4,
        )


class FutureLimitPrice(Strategy):
    """A limit entry placed at the next bar's low (a guaranteed fill at the best price)."""

    def signals(self, bars: Bars) -> Signals:
        fast, slow = sma(bars.close, 10), sma(bars.close, 30)
        price = np.append(bars.low[1:], bars.low[-1])
        return Signals(
            enter_long=crossed_above(fast, slow),
            exit_long=crossed_below(fast, slow),
            entry_type="limit",
            entry_price=price,
        )


@pytest.mark.parametrize("strategy", [NextClose, ShiftMinusOne])
def test_next_bar_close_is_caught(bars: Bars, strategy: type[Strategy]) -> None:
    report = check_lookahead(strategy, bars)
    assert not report.clean
    assert report.horizon == 1
    assert set(report.arrays) <= {"enter_long", "exit_long"} and report.arrays
    for v in report.violations:
        # the changed signal is the last bar of a truncated copy: it read bar `cut`
        assert v.bar == v.cut - 1 and v.ahead == 1
        assert v.full != v.truncated
        assert v.time == pd.Timestamp(bars.time[v.bar], tz="UTC").isoformat()
    assert report.violations == sorted(report.violations, key=lambda v: v.bar)


def test_centred_window_is_caught_with_its_reach(bars: Bars) -> None:
    report = check_lookahead(CentredWindow, bars, params={"window": 21})
    assert not report.clean
    assert 1 <= report.horizon <= 10
    assert all(0 < v.ahead <= 10 for v in report.violations)


def test_whole_series_statistic_is_caught_far_back(bars: Bars) -> None:
    report = check_lookahead(WholeSeriesNormalised, bars)
    assert not report.clean
    assert report.horizon > 1000  # bars long before the cut changed
    assert report.n_violations > len(report.violations) == 50


@pytest.mark.parametrize(
    ("strategy", "array"), [(FutureStop, "stop_loss"), (FutureLimitPrice, "entry_price")]
)
def test_peeking_stops_and_prices_are_caught(
    bars: Bars, strategy: type[Strategy], array: str
) -> None:
    report = check_lookahead(strategy, bars)
    assert list(report.arrays) == [array]
    assert report.horizon == 1


def test_report_to_json_and_summary(bars: Bars) -> None:
    report = check_lookahead(NextClose, bars, checkpoints=4, max_report=3)
    payload = report.to_json()
    assert payload["lookahead"] is True and payload["clean"] is False
    assert payload["strategy"] == "next_close"
    assert len(payload["violations"]) <= 3
    assert payload["n_violations"] == report.n_violations >= len(payload["violations"])
    first = payload["violations"][0]
    assert set(first) == {"bar", "time", "array", "full", "truncated", "cut", "ahead"}
    assert "look-ahead" in report.summary()
    clean = check_lookahead("sma_cross", bars, checkpoints=2)
    assert "no look-ahead" in clean.summary()
    assert clean.to_json()["violations"] == []


# ------------------------------------------------------------------ inputs and cuts


def test_strategy_instance_and_bars(bars: Bars) -> None:
    from sapphire.strategy.builtins import SmaCross

    report = check_lookahead(SmaCross(fast=7, slow=50), bars, checkpoints=3)
    assert report.params == {"fast": 7, "slow": 50, "short": False}
    assert report.clean


def test_cut_points_cover_the_series_and_are_seeded() -> None:
    cuts = _cut_points(45_031, 20, seed=0)
    assert cuts == sorted(set(cuts)) and len(cuts) == 20
    assert cuts[-1] == 45_030 and cuts[0] <= 45_031 // 21 + 1
    assert max(np.diff(cuts)) < 45_031 / 5
    assert _cut_points(45_031, 20, seed=0) == cuts
    assert _cut_points(45_031, 20, seed=1) != cuts
    assert _cut_points(45_031, 1, seed=0) == [45_030]
    assert len(_cut_points(45_031, 2, seed=0)) == 2
    assert _cut_points(2, 20, seed=0) == [1]
    assert _cut_points(1, 20, seed=0) == []


class Fragile(Strategy):
    """Refuses to run on fewer than 1000 bars."""

    def signals(self, bars: Bars) -> Signals:
        if len(bars) < 1000:
            raise ValueError("need 1000 bars")
        return Signals()


class WrongLength(Strategy):
    def signals(self, bars: Bars) -> Signals:
        return Signals(enter_long=np.zeros(45_031, dtype=bool))


def test_bad_input_gives_clear_errors(bars: Bars) -> None:
    with pytest.raises(ValueError, match="checkpoints=0"):
        check_lookahead("sma_cross", bars, checkpoints=0)
    with pytest.raises(ValueError, match="max_report=-1"):
        check_lookahead("sma_cross", bars, max_report=-1)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        check_lookahead("nope", bars)
    with pytest.raises(ValueError, match="has no parameter 'speed'"):
        check_lookahead("sma_cross", bars, params={"speed": 3})
    short = Bars(*(a[:900] for a in (bars.time, bars.open, bars.high, bars.low, bars.close,
                                     bars.volume)), timeframe_ns=bars.timeframe_ns)  # fmt: skip
    with pytest.raises(ValueError, match="need 1000 bars"):
        check_lookahead(Fragile, short)
    with pytest.raises(ValueError, match=r"failed on the first \d+ of 45031 bars.*shape"):
        check_lookahead(WrongLength, bars, checkpoints=2)
