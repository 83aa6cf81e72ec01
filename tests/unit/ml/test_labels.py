"""Labels on hand-made paths: forward return, direction, triple barrier, meta-labels, weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import bars_from_frame
from sapphire.ml.labels import (
    LabelSpec,
    direction,
    forward_return,
    meta_labels,
    rolling_volatility,
    triple_barrier,
    uniqueness_weights,
)
from sapphire.strategy.base import Bars

A = 0.01  # the 1-bar log return of the set-up bars: +A then -A, so vol (window 2) is A
H = 4  # horizon: barriers at close * exp(+-k * A * sqrt(4)) = exp(+-0.02 k)
W = 2 * A


def _path(
    highs: dict[int, float] | None = None,
    lows: dict[int, float] | None = None,
    closes: dict[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bars 0-2: 100, 100e^A, 100 (event at bar 2), then bars 3-6 flat at 100 unless set."""
    close = np.array([100.0, 100.0 * math.exp(A), 100.0, 100.0, 100.0, 100.0, 100.0])
    for i, v in (closes or {}).items():
        close[i] = v
    high, low = close.copy(), close.copy()
    for i, v in (highs or {}).items():
        high[i] = v
    for i, v in (lows or {}).items():
        low[i] = v
    return close, high, low


def _barrier(path: tuple[np.ndarray, np.ndarray, np.ndarray], **kwargs: Any) -> dict[str, Any]:
    close, high, low = path
    kwargs = {"horizon": H, "pt": 1.0, "sl": 1.0, "vol_window": 2, "events": [2], **kwargs}
    frame = triple_barrier(close, high, low, **kwargs)
    assert len(frame) == 1
    return dict(frame.iloc[0])


def test_volatility_is_the_std_of_log_returns() -> None:
    close, _, _ = _path()
    vol = rolling_volatility(close, 2)
    assert np.isnan(vol[:2]).all()
    assert vol[2] == pytest.approx(A, rel=1e-12)
    rng = np.random.default_rng(0)
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    expected = pd.Series(np.log(walk)).diff().rolling(20).std(ddof=0).to_numpy()
    np.testing.assert_allclose(rolling_volatility(walk, 20), expected, atol=1e-12)


def test_profit_take_touched_first() -> None:
    row = _barrier(_path(highs={4: 102.5}, lows={5: 97.0}))
    assert (row["t0"], row["t1"], row["label"], row["barrier"]) == (2, 4, 1, "pt")
    assert row["ret"] == pytest.approx(W, rel=1e-12)  # at the barrier price, not the high


def test_stop_loss_touched_first() -> None:
    row = _barrier(_path(highs={6: 103.0}, lows={5: 97.0}))
    assert (row["t1"], row["label"], row["barrier"]) == (5, -1, "sl")
    assert row["ret"] == pytest.approx(-W, rel=1e-12)


def test_time_out_returns_the_close_at_the_horizon() -> None:
    row = _barrier(_path(highs={3: 101.9}, lows={4: 98.1}, closes={6: 101.0}))
    assert (row["t1"], row["label"], row["barrier"]) == (6, 0, "time")
    assert row["ret"] == pytest.approx(math.log(1.01), rel=1e-12)


def test_both_barriers_in_one_bar_count_the_stop() -> None:
    row = _barrier(_path(highs={3: 103.0}, lows={3: 97.0}))
    assert (row["t1"], row["label"], row["barrier"]) == (3, -1, "sl")
    short = _barrier(_path(highs={3: 103.0}, lows={3: 97.0}), side=[0, 0, -1, 0, 0, 0, 0])
    assert (short["t1"], short["label"], short["barrier"]) == (3, -1, "sl")
    assert short["ret"] == pytest.approx(W, rel=1e-12)  # the short's stop is the upper barrier


def test_barrier_multiples_scale_the_width() -> None:
    # pt = 2: the upper barrier is 100 e^0.04 = 104.08; 103 does not reach it, 97 < 98.02 does
    row = _barrier(_path(highs={3: 103.0}, lows={5: 97.0}), pt=2.0)
    assert (row["t1"], row["barrier"]) == (5, "sl")
    row = _barrier(_path(highs={3: 104.1}), pt=2.0)
    assert (row["t1"], row["barrier"], row["ret"]) == (3, "pt", pytest.approx(2 * W))


def test_a_zero_multiple_disables_its_barrier() -> None:
    row = _barrier(_path(highs={3: 150.0}, closes={6: 99.0}), pt=0.0)
    assert (row["t1"], row["label"], row["barrier"]) == (6, 0, "time")


def test_side_turns_the_barriers_and_labels_the_bet() -> None:
    side = [0, 0, -1, 0, 0, 0, 0]
    row = _barrier(_path(lows={4: 97.0}), side=side, pt=1.0, sl=1.0)
    assert (row["t1"], row["label"], row["barrier"], row["side"]) == (4, 1, "pt", -1)
    assert row["ret"] == pytest.approx(-W, rel=1e-12)  # the price fell: a long's return
    timeout = _barrier(_path(closes={6: 101.0}), side=side)
    assert (timeout["label"], timeout["barrier"]) == (-1, "time")  # the short lost at time-out


def test_meta_labels_say_whether_the_bet_paid() -> None:
    close, high, low = _path(highs={4: 102.5}, closes={6: 99.0})
    long_wins = meta_labels(close, high, low, [0, 0, 1, 0, 0, 0, 0], horizon=H, vol_window=2, pt=1)
    assert long_wins[["t0", "t1", "label", "barrier"]].values.tolist() == [[2, 4, 1, "pt"]]
    short_loses = meta_labels(
        close, high, low, [0, 0, -1, 0, 0, 0, 0], horizon=H, vol_window=2, pt=1
    )
    assert short_loses[["label", "barrier", "side"]].values.tolist() == [[0, "sl", -1]]


def test_default_events_need_volatility_and_a_full_horizon() -> None:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    time_ = np.arange(50, dtype=np.int64) * 60_000_000_000
    frame = triple_barrier(
        close, close * 1.001, close * 0.999, horizon=5, vol_window=10, time=time_
    )
    assert frame["t0"].tolist() == list(range(10, 45))
    assert (frame["t1"] > frame["t0"]).all() and (frame["t1"] <= frame["t0"] + 5).all()
    assert np.array_equal(frame["touch_ns"], time_[frame["t1"]])
    series = pd.Series(close, index=pd.to_datetime(time_, utc=True))
    from_index = triple_barrier(series, close * 1.001, close * 0.999, horizon=5, vol_window=10)
    assert np.array_equal(from_index["touch_ns"], frame["touch_ns"])
    mask = np.zeros(50, dtype=bool)
    mask[[5, 12, 30, 47]] = True  # 5: no volatility yet, 47: no full horizon
    picked = triple_barrier(
        close, close * 1.001, close * 0.999, horizon=5, vol_window=10, events=mask, time=time_
    )
    assert picked["t0"].tolist() == [12, 30]
    assert picked.equals(frame[frame["t0"].isin([12, 30])].reset_index(drop=True))
    assert triple_barrier(close, close, close, horizon=5, vol_window=10, events=[]).empty
    plain = triple_barrier(close, close * 1.001, close * 0.999, horizon=5, vol_window=10)
    assert (plain["touch_ns"] == np.iinfo(np.int64).min).all()  # NaT: no times known


def _naive_barrier(
    close: np.ndarray, high: np.ndarray, low: np.ndarray, t: int, vol: float
) -> tuple[int, int]:
    up, down = close[t] * math.exp(2.0 * vol), close[t] * math.exp(-1.0 * vol)
    for j in range(t + 1, t + 11):
        if low[j] <= down:
            return j, -1
        if high[j] >= up:
            return j, 1
    return t + 10, 0


def test_triple_barrier_matches_a_plain_loop_on_real_bars(btc_df: pd.DataFrame) -> None:
    bars = bars_from_frame(btc_df.iloc[:20_000])
    frame = triple_barrier(bars.close, bars.high, bars.low, horizon=10, vol_window=50)
    vol = rolling_volatility(bars.close, 50) * math.sqrt(10)
    rng = np.random.default_rng(2)
    for i in rng.choice(len(frame), 400, replace=False):
        t = int(frame["t0"].iloc[i])
        assert _naive_barrier(bars.close, bars.high, bars.low, t, vol[t]) == (
            frame["t1"].iloc[i],
            frame["label"].iloc[i],
        )
    assert set(frame["barrier"]) == {"pt", "sl", "time"}


def test_forward_return_and_direction_with_a_dead_zone() -> None:
    close = [100.0, 101.0, 99.0, 99.5]
    r = forward_return(close, 1)
    np.testing.assert_allclose(r[:3], np.log([1.01, 99 / 101, 99.5 / 99]), rtol=1e-12)
    assert np.isnan(r[3])
    np.testing.assert_array_equal(direction(close, 1, dead_zone=0.006), [1.0, -1.0, 0.0, np.nan])
    np.testing.assert_array_equal(direction(close, 1), [1.0, -1.0, 1.0, np.nan])
    np.testing.assert_allclose(forward_return(close, 2)[:2], np.log([0.99, 99.5 / 101]))
    assert np.isnan(forward_return(close, 5)).all()


def test_uniqueness_on_hand_computed_overlaps() -> None:
    # bars 0..5: labels [0,2], [1,3], [4,5]; concurrency 1,2,2,1,1,1
    # uniqueness (1 + 1/2 + 1/2)/3 = 2/3, (1/2 + 1/2 + 1)/3 = 2/3, 1; mean 7/9
    w = uniqueness_weights([0, 1, 4], [2, 3, 5], 6)
    np.testing.assert_allclose(w, [6 / 7, 6 / 7, 9 / 7], rtol=1e-12)
    np.testing.assert_allclose(uniqueness_weights([3, 3, 3], [5, 5, 5], 6), [1.0, 1.0, 1.0])
    # [0,0] alone; [1,4] shares bar 4 with [4,4]: (1+1+1+1/2)/4 = 7/8 and 1/2
    w = uniqueness_weights([0, 1, 4], [0, 4, 4], 5)
    np.testing.assert_allclose(w, np.array([1.0, 7 / 8, 1 / 2]) / (19 / 24), rtol=1e-12)
    assert uniqueness_weights([], [], 3).size == 0


@pytest.mark.parametrize(
    ("t0", "t1", "n", "named"),
    [([0, 3], [2, 2], 5, r"label 1 has \[t0, t1\] = \[3, 2\]"), ([0], [5], 5, r"\[0, 5\]")],
)
def test_uniqueness_rejects_bad_intervals(t0: list[int], t1: list[int], n: int, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        uniqueness_weights(t0, t1, n)


def test_bad_label_arguments_are_named() -> None:
    close, high, low = _path()
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        triple_barrier(close, high, low, horizon=0)
    with pytest.raises(ValueError, match="pt must be a finite number >= 0, got -1"):
        triple_barrier(close, high, low, horizon=2, pt=-1.0)
    with pytest.raises(ValueError, match=r"side must be -1, 0 or \+1, got 2\.0"):
        triple_barrier(close, high, low, horizon=2, side=[0, 2, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"event bar 9 is outside 0\.\.6"):
        triple_barrier(close, high, low, horizon=2, events=[9])
    with pytest.raises(ValueError, match="dead_zone must be a finite number >= 0"):
        direction(close, 1, dead_zone=float("nan"))


def test_label_spec_round_trips_and_rejects_unknowns() -> None:
    spec = LabelSpec.from_mapping({"kind": "meta", "horizon": 10, "pt": 1})
    assert spec.pt == 1.0 and isinstance(spec.pt, float)
    assert LabelSpec.from_mapping(spec.to_mapping()) == spec
    with pytest.raises(ValueError, match=r"unknown key.*horizn"):
        LabelSpec.from_mapping({"horizn": 3})
    with pytest.raises(ValueError, match="unknown kind 'sign'"):
        LabelSpec.from_mapping({"kind": "sign"})
    with pytest.raises(ValueError, match="vol_window must be an integer >= 2, got 1"):
        LabelSpec(vol_window=1)


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df.iloc[:5_000])


@pytest.mark.parametrize("kind", ["forward_return", "direction", "triple_barrier", "meta"])
def test_label_spec_makes_consistent_labels(bars: Bars, kind: str) -> None:
    side = np.sign(np.sin(np.arange(len(bars)) / 50.0))
    spec = LabelSpec.from_mapping(
        {"kind": kind, "horizon": 15, "vol_window": 60, "dead_zone": 1e-4}
    )
    labels = spec.make(bars, side=side if kind == "meta" else None)
    assert len(labels) > 4_000
    assert (labels.t1 >= labels.t0).all() and (labels.t1 <= labels.t0 + 15).all()
    assert labels.weight.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(labels.weight, uniqueness_weights(labels.t0, labels.t1, len(bars)))
    classes = {"forward_return": None, "direction": {-1, 0, 1}, "triple_barrier": {-1, 0, 1}}
    expected = classes.get(kind, {0, 1})
    assert labels.task == ("regression" if expected is None else "classification")
    if expected is not None:
        assert set(np.unique(labels.y)) == expected
    if kind in ("forward_return", "direction"):
        np.testing.assert_allclose(
            labels.ret, np.log(bars.close[labels.t1] / bars.close[labels.t0])
        )


def test_meta_spec_needs_a_side(bars: Bars) -> None:
    with pytest.raises(ValueError, match="needs the primary model's side"):
        LabelSpec(kind="meta").make(bars)
