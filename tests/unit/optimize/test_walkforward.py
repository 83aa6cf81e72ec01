"""Walk-forward: fold windows, the warm-up rule, stitching, efficiency and the result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest import Backtest
from sapphire.backtest.runner import bars_from_frame
from sapphire.indicators import sma
from sapphire.optimize.folds import Fold, make_folds
from sapphire.optimize.out_of_sample import (
    annualised_return,
    efficiency,
    out_of_sample_backtest,
    stitch_equity,
)
from sapphire.optimize.walkforward import walk_forward
from sapphire.optimize.walkforward_result import WalkForwardResult, load_walkforward
from sapphire.strategy.base import Bars, Param, Signals, Strategy

HOUR = 3_600 * 10**9


def hourly_frame(n: int, *, start: str = "2024-01-01", drift: float = 0.001) -> pd.DataFrame:
    """n hourly bars of a steadily rising price (close > any trailing average)."""
    close = 100.0 * (1.0 + drift) ** np.arange(n)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
            "open": close / (1.0 + drift),
            "high": close * 1.001,
            "low": close / (1.0 + drift) * 0.999,
            "close": close,
            "volume": np.ones(n),
        }
    )


def times(frame: pd.DataFrame) -> np.ndarray:
    return bars_from_frame(frame).time


class EveryTenth(Strategy):
    """Enter long on every 10th bar once a `window`-bar SMA exists and close is above it;
    exit 5 bars after the signal."""

    window = Param(20, low=2, high=100)
    exit_after = Param(5, low=1, high=9)

    def signals(self, bars: Bars) -> Signals:
        t = np.arange(len(bars))
        average = sma(bars.close, self.window)
        with np.errstate(invalid="ignore"):
            above = bars.close > average
        return Signals(enter_long=above & (t % 10 == 0), exit_long=t % 10 == self.exit_after)


# --- fold windows -------------------------------------------------------------------


def test_rolling_folds_slide_the_train_window_by_the_step() -> None:
    time = hourly_frame(24 * 10).pipe(times)  # 10 days of hourly bars
    folds = make_folds(time, HOUR, train="3d", test="1d")
    assert [(f.train_start, f.train_end, f.test_end) for f in folds] == [
        (24 * k, 24 * (3 + k), 24 * (4 + k)) for k in range(7)
    ]
    assert [f.number for f in folds] == list(range(1, 8))
    assert all(f.test_start == f.train_end for f in folds)


def test_anchored_folds_start_every_train_window_at_the_first_bar() -> None:
    time = hourly_frame(24 * 10).pipe(times)
    folds = make_folds(time, HOUR, train="3d", test="1d", anchored=True)
    assert [f.train_start for f in folds] == [0] * 7
    assert [f.train_end for f in folds] == [24 * (3 + k) for k in range(7)]
    assert [f.test_end for f in folds] == [24 * (4 + k) for k in range(7)]


def test_a_step_longer_than_the_test_leaves_gaps_and_a_partial_test_is_dropped() -> None:
    time = hourly_frame(24 * 10 + 12).pipe(times)  # 10.5 days
    folds = make_folds(time, HOUR, train="2d", test="1d", step="3d")
    assert [(f.train_start, f.train_end, f.test_end) for f in folds] == [
        (0, 48, 72),
        (72, 120, 144),
        (144, 192, 216),
    ]  # the next fold would test 264..288 > 252 bars


def test_bar_count_windows() -> None:
    time = hourly_frame(100).pipe(times)
    rolling = make_folds(time, HOUR, train=40, test=20, step=25)
    assert [(f.train_start, f.train_end, f.test_end) for f in rolling] == [
        (0, 40, 60),
        (25, 65, 85),
    ]
    anchored = make_folds(time, HOUR, train=40, test=30, anchored=True)
    assert [(f.train_start, f.train_end, f.test_end) for f in anchored] == [
        (0, 40, 70),
        (0, 70, 100),
    ]


def test_durations_follow_the_clock_across_gaps() -> None:
    frame = hourly_frame(24 * 6)
    frame = frame.drop(index=range(30, 40)).reset_index(drop=True)  # 10 bars missing on day 2
    folds = make_folds(frame.pipe(times), HOUR, train="2d", test="1d")
    assert [(f.train_start, f.train_end, f.test_end) for f in folds][:2] == [
        (0, 38, 62),
        (24, 62, 86),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": "1h", "test": "1d"}, "train='1h' is not longer than one bar"),
        ({"train": "3d", "test": 1}, "give all as durations"),
        ({"train": 50, "test": 1}, "test=1 is not longer than one bar"),
        ({"train": "3d", "test": "soon"}, "test='soon' is invalid"),
        ({"train": "-2d", "test": "1d"}, "train='-2d' is invalid: the duration must be positive"),
        ({"train": 0, "test": 5}, "train=0 is invalid"),
        ({"train": "3d", "test": "1d", "step": "12h"}, "step='12h' is shorter than test='1d'"),
        ({"train": "8d", "test": "3d"}, "no walk-forward fold fits: train=8 days"),
        ({"train": 200, "test": 50}, "no walk-forward fold fits: train=200 bars"),
    ],
)
def test_bad_windows_are_rejected_naming_the_value(kwargs: dict, message: str) -> None:
    time = hourly_frame(24 * 10).pipe(times)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make_folds(time, HOUR, **kwargs)


def test_a_window_emptied_by_a_gap_is_rejected() -> None:
    frame = hourly_frame(24 * 6)
    frame = frame.drop(index=range(49, 72)).reset_index(drop=True)  # day 3 all but one bar
    with pytest.raises(ValueError, match="fold 1: the test window holds 1 bar"):
        make_folds(frame.pipe(times), HOUR, train="2d", test="1d")


# --- the warm-up rule ---------------------------------------------------------------


def test_out_of_sample_run_is_warmed_up_but_trades_only_inside_the_test_window() -> None:
    frame = hourly_frame(24 * 4)
    fold = Fold(1, train_start=0, train_end=60, test_end=93)  # test: bars 60..92
    oos = out_of_sample_backtest(frame, EveryTenth, {"window": 20}, fold, {"cash": 1_000.0})

    assert len(oos.equity) == 33
    assert oos.equity.index[0] == frame["timestamp"].iloc[60]
    # Signals on bars 0, 10, ..., 50 (inside the train window) are dropped...
    assert oos.trades["entry_bar"].min() > fold.test_start
    # ...but the SMA is warm, so the signal on the test window's first bar (60) trades.
    assert oos.trades["entry_bar"].tolist() == [61, 71, 81, 91]
    assert oos.trades["exit_bar"].tolist() == [66, 76, 86, 92]
    # The position still open at the end of the test window is closed there.
    assert oos.trades["exit_reason"].tolist() == ["signal"] * 3 + ["end"]
    assert oos.equity.iloc[0] == 1_000.0  # flat when the test window opens
    assert oos.metrics["n_trades"] == 4
    assert oos.metrics["final_equity"] == pytest.approx(1_000.0 + oos.trades["pnl"].sum())

    # A cold start on the test window alone would miss the first trades: the SMA needs
    # 20 bars (19 of warm-up) before the first signal.
    cold = Backtest(frame.iloc[60:93], EveryTenth, window=20, cash=1_000.0).run()
    assert (cold.trades["entry_bar"] + 60).tolist() == [81, 91]


def test_out_of_sample_run_matches_the_continuous_run_inside_the_test_window() -> None:
    frame = hourly_frame(24 * 4)
    fold = Fold(2, train_start=20, train_end=60, test_end=90)
    # fixed sizes: an equity-fraction size would differ, as the test window starts afresh
    fixed = {"size": 1.0, "size_mode": "fixed"}
    oos = out_of_sample_backtest(frame, EveryTenth, {"window": 30}, fold, fixed)
    full = Backtest(frame.iloc[:90], EveryTenth, window=30, **fixed).run()
    inside = full.trades[full.trades["entry_bar"] > fold.test_start].reset_index(drop=True)
    pd.testing.assert_frame_equal(oos.trades, inside)


def test_no_parameters_means_a_flat_test_window() -> None:
    frame = hourly_frame(24 * 4)
    oos = out_of_sample_backtest(frame, EveryTenth, None, Fold(1, 0, 48, 72), {"cash": 500.0})
    assert oos.trades.empty
    assert (oos.equity == 500.0).all() and len(oos.equity) == 24
    assert oos.metrics["total_return"] == 0.0


# --- stitching and efficiency --------------------------------------------------------


def test_stitched_equity_chains_each_fold_from_the_previous_final_equity() -> None:
    idx = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    a = pd.Series([100.0, 110.0, 120.0], index=idx[:3])  # +20%
    b = pd.Series([90.0, 95.0, 75.0], index=idx[3:])  # -25%
    stitched, scales = stitch_equity([a, b], 100.0)
    assert scales == [1.0, 1.2]
    assert stitched.tolist() == pytest.approx([100.0, 110.0, 120.0, 108.0, 114.0, 90.0])
    assert stitched.iloc[-1] == pytest.approx(100.0 * 1.2 * 0.75)
    assert stitched.index.equals(idx)


def test_efficiency_is_the_ratio_of_simple_annualised_returns() -> None:
    day = 24 * HOUR
    assert annualised_return(0.01, 24, HOUR) == pytest.approx(0.01 * 365)
    assert annualised_return(0.07, 24 * 7, HOUR) == pytest.approx(0.07 * 365 / 7)
    assert annualised_return(0.1, 0, day) != annualised_return(0.1, 0, day)  # NaN
    assert efficiency(0.5, 1.0) == 0.5
    assert efficiency(-0.2, 0.4) == pytest.approx(-0.5)
    assert efficiency(0.3, 0.0) is None and efficiency(0.3, -0.1) is None
    assert efficiency(math.nan, 0.2) is None


# --- the whole walk-forward (optimiser included) --------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> WalkForwardResult:
    from sapphire.data.samples import SAMPLE_PATH

    frame = pd.read_csv(SAMPLE_PATH, parse_dates=["timestamp"], nrows=60 * 24 * 5)
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC")
    storage = f"sqlite:///{tmp_path_factory.mktemp('wf') / 'studies.db'}"
    return walk_forward(
        frame,
        "sma_cross",
        train="2d",
        test="1d",
        trials=6,
        sampler="random",
        seed=7,
        study="wf-unit",
        storage=storage,
        progress=False,
        save=False,
        fee=0.0005,
        size=0.5,
        size_mode="equity",
    )


def test_walk_forward_runs_every_fold_and_stitches_the_folds(small_run: WalkForwardResult) -> None:
    wf = small_run
    assert [f.number for f in wf.folds] == [1, 2, 3]
    assert [f.study for f in wf.folds] == ["wf-unit-fold1", "wf-unit-fold2", "wf-unit-fold3"]
    assert all(f.n_trials == 6 for f in wf.folds) and wf.n_trials == 18
    for fold in wf.folds:
        assert fold.test_start == fold.train_end
        assert fold.test_end - fold.test_start == pd.Timedelta(days=1)
        assert fold.best_params is not None and fold.best_params["fast"] < fold.best_params["slow"]
        assert set(fold.in_sample) >= {"sharpe", "total_return", "max_drawdown", "n_trades"}
    # The stitched curve covers the test windows only, back to back.
    assert len(wf.equity) == sum(f.test_bars for f in wf.folds) == 3 * 1_440
    assert wf.equity.index[0] == wf.folds[0].test_start
    assert wf.equity.index.is_monotonic_increasing
    # Its final value is the product of the folds' out-of-sample returns.
    product = np.prod([1.0 + f.out_of_sample["total_return"] for f in wf.folds])
    assert wf.equity.iloc[-1] == pytest.approx(10_000.0 * product, rel=1e-12)
    assert wf.metrics["total_return"] == pytest.approx(product - 1.0, rel=1e-12)
    # One trade list, every trade inside its fold's test window.
    assert (
        wf.metrics["n_trades"]
        == len(wf.trades)
        == sum(f.out_of_sample["n_trades"] for f in wf.folds)
    )
    for fold in wf.folds:
        mine = wf.trades[wf.trades["fold"] == fold.number]
        assert (mine["entry_time"] > fold.test_start).all()
        assert (mine["exit_time"] < fold.test_end).all()
    assert wf.best_params == wf.folds[-1].best_params


def test_walk_forward_is_reproducible_with_a_seed(small_run: WalkForwardResult) -> None:
    from sapphire.data.samples import SAMPLE_PATH

    frame = pd.read_csv(SAMPLE_PATH, parse_dates=["timestamp"], nrows=60 * 24 * 4)
    frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC")
    again = walk_forward(
        frame, "sma_cross", train="2d", test="1d", trials=6, sampler="random", seed=7,
        study="wf-again", progress=False, save=False, fee=0.0005, size=0.5, size_mode="equity",
    )  # fmt: skip
    # Same data up to the end of fold 2's test window, same per-fold seeds.
    assert [f.best_params for f in again.folds] == [f.best_params for f in small_run.folds[:2]]


def test_walk_forward_json_is_one_plain_object(small_run: WalkForwardResult) -> None:
    payload = small_run.to_json()
    text = json.dumps(payload, allow_nan=True)
    back = json.loads(text)
    assert back["study"] == "wf-unit"
    assert back["n_folds"] == 3 and back["n_trials"] == 18
    assert back["best_params"] == small_run.folds[-1].best_params
    assert back["train"] == "2d" and back["test"] == "1d" and back["step"] == "1d"
    assert back["elapsed_s"] > 0
    fold = back["folds"][0]
    for key in ("in_sample", "out_of_sample", "best_params", "efficiency", "train_start"):
        assert key in fold
    assert fold["out_of_sample"]["total_return"] == small_run.folds[0].out_of_sample["total_return"]


def test_walk_forward_saves_and_loads(small_run: WalkForwardResult) -> None:
    path = small_run.save()
    assert path.name == "wf-unit.json"
    loaded = load_walkforward("wf-unit")
    assert loaded is not None
    assert loaded.to_json()["folds"][1]["best_params"] == small_run.folds[1].best_params
    pd.testing.assert_series_equal(loaded.equity, small_run.equity, check_freq=False)
    assert len(loaded.trades) == len(small_run.trades)
    assert load_walkforward("no-such-walk-forward") is None


def test_walk_forward_plot_writes_the_report(small_run: WalkForwardResult, tmp_path: Path) -> None:
    path = small_run.plot(tmp_path / "wf.html")
    html = path.read_text(encoding="utf-8")
    assert 'id="wf-equity"' in html and 'id="wf-folds"' in html
    assert html.count('class="fold-row"') == 3
    assert "fold 3" in html


def test_walk_forward_rejects_bad_arguments(btc_df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="trials=0 is invalid"):
        walk_forward(btc_df, "sma_cross", trials=0, progress=False)
    with pytest.raises(ValueError, match="no walk-forward fold fits: train=30 days"):
        walk_forward(btc_df, "sma_cross", train="30d", test="7d", progress=False)
    bars = bars_from_frame(btc_df.iloc[:100])
    with pytest.raises(ValueError, match="start/end/resample need a DataFrame"):
        walk_forward(bars, "sma_cross", start="2022-01-01", progress=False)


def test_a_fold_without_a_feasible_trial_stays_flat(btc_df: pd.DataFrame) -> None:
    wf = walk_forward(
        btc_df.iloc[: 60 * 24 * 3], "sma_cross", train="1d", test="1d", trials=3, seed=1,
        min_trades=10**6, study="wf-flat", progress=False, save=False, cash=5_000.0,
    )  # fmt: skip
    assert len(wf.folds) == 2
    assert all(f.best_params is None and f.best_value is None for f in wf.folds)
    assert (wf.equity == 5_000.0).all() and wf.trades.empty
    assert wf.metrics["total_return"] == 0.0 and wf.metrics["n_trades"] == 0
    assert wf.efficiency is None and all(f.efficiency is None for f in wf.folds)
    assert json.loads(json.dumps(wf.to_json()))["best_params"] is None


def test_anchored_walk_forward_trains_from_the_first_bar(btc_df: pd.DataFrame) -> None:
    frame = btc_df.iloc[: 60 * 24 * 4]
    wf = walk_forward(
        frame, "sma_cross", train="2d", test="1d", anchored=True, trials=2, seed=1,
        study="wf-anchored", progress=False, save=False,
    )  # fmt: skip
    first = frame["timestamp"].iloc[0]
    assert [f.train_start for f in wf.folds] == [first, first]
    assert [f.train_bars for f in wf.folds] == [2 * 1_440, 3 * 1_440]
    assert wf.to_json()["anchored"] is True
