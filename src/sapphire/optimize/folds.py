"""Walk-forward windows: the train/test folds cut from the bars, rolling or anchored,
by duration or by bar count."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["Fold", "WindowSpec", "make_folds", "window_spec"]

WindowSpec = str | int | pd.Timedelta


@dataclass(frozen=True)
class Fold:
    """One fold's windows as bar indices into the walk-forward's bars (ends exclusive).

    `number` counts from 1; the train window is `[train_start, train_end)` and the test
    window `[test_start, test_end)` with `test_start == train_end`.
    """

    number: int
    train_start: int
    train_end: int
    test_end: int

    @property
    def test_start(self) -> int:
        """First bar of the test window (the bar after the train window)."""
        return self.train_end


def _parse_window(name: str, value: Any) -> int | pd.Timedelta:
    """Return a bar count (int) or a positive duration, or raise naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid: expected a duration like '7d' or bars")
    if isinstance(value, int | np.integer):
        if value <= 0:
            raise ValueError(f"{name}={value!r} is invalid: a bar count must be positive")
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return _parse_window(name, int(value.strip()))
    try:
        if isinstance(value, str):  # pandas deprecates the unit "d" in favour of "D"
            value_str = re.sub(r"(?<=[\d.\s])d\b", "D", value.strip())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                delta = pd.Timedelta(value_str)
        else:
            delta = pd.Timedelta(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}={value!r} is invalid: expected a duration like '30d', '12h', '90min' "
            "or a whole number of bars"
        ) from None
    if pd.isna(delta) or delta <= pd.Timedelta(0):
        raise ValueError(f"{name}={value!r} is invalid: the duration must be positive")
    return delta


def _describe_window(value: int | pd.Timedelta) -> str:
    return f"{value} bars" if isinstance(value, int) else str(value)


def make_folds(
    time_ns: NDArray[np.int64],
    timeframe_ns: int,
    *,
    train: WindowSpec,
    test: WindowSpec,
    step: WindowSpec | None = None,
    anchored: bool = False,
) -> list[Fold]:
    """Cut bars (open times `time_ns`) into walk-forward folds.

    `train`, `test` and `step` are durations ("30d", "12h", a `Timedelta`) or bar counts
    (ints); `step` defaults to `test`. Fold k (from 0) trains on
    `[start + k*step, start + train + k*step)` (rolling) or `[start, start + train +
    k*step)` (anchored) and tests on the `test` that follows; durations are measured on
    bar open times from the first bar, bar counts on positions. A fold is kept only if
    its whole test window lies inside the data.
    """
    n = int(time_ns.shape[0])
    tr = _parse_window("train", train)
    te = _parse_window("test", test)
    st = te if step is None else _parse_window("step", step)
    kinds = {type(v) is int for v in (tr, te, st)}
    if len(kinds) > 1:
        raise ValueError(
            f"train={train!r}, test={test!r}, step={step!r}: give all as durations "
            "('7d') or all as bar counts (ints), not a mix"
        )
    bar = pd.Timedelta(int(timeframe_ns), unit="ns")
    for name, value, raw in (("train", tr, train), ("test", te, test)):
        if isinstance(value, int) and value < 2:
            raise ValueError(f"{name}={raw!r} is not longer than one bar: give at least 2 bars")
        if isinstance(value, pd.Timedelta) and value <= bar:
            raise ValueError(
                f"{name}={raw!r} is not longer than one bar ({bar}): give a longer window"
            )
    if isinstance(st, int) and isinstance(te, int):
        overlap = st < te
    else:
        overlap = pd.Timedelta(st) < pd.Timedelta(te)
    if overlap:
        raise ValueError(
            f"step={step!r} is shorter than test={test!r}: the test windows would overlap "
            "and could not be stitched into one out-of-sample curve"
        )

    folds: list[Fold] = []
    if isinstance(tr, int):
        assert isinstance(te, int) and isinstance(st, int)
        k = 0
        while True:
            train_end = tr + k * st
            test_end = train_end + te
            if test_end > n:
                break
            folds.append(Fold(k + 1, 0 if anchored else k * st, train_end, test_end))
            k += 1
    elif n:
        assert isinstance(te, pd.Timedelta) and isinstance(st, pd.Timedelta)
        t0 = int(time_ns[0])
        data_end = int(time_ns[-1]) + int(timeframe_ns)
        tr_ns, te_ns, st_ns = tr.value, te.value, st.value
        k = 0
        while True:
            train_end_ns = t0 + tr_ns + k * st_ns
            test_end_ns = train_end_ns + te_ns
            if test_end_ns > data_end:
                break
            train_start_ns = t0 if anchored else t0 + k * st_ns
            a, b, c = np.searchsorted(time_ns, [train_start_ns, train_end_ns, test_end_ns])
            folds.append(Fold(k + 1, int(a), int(b), int(c)))
            k += 1
    if not folds:
        span = (
            f"{n} bars"
            if not n
            else f"{n} bars from {_iso(time_ns[0])} to {_iso(time_ns[-1] + timeframe_ns)} "
            f"({pd.Timedelta(int(time_ns[-1] - time_ns[0] + timeframe_ns), unit='ns')})"
        )
        raise ValueError(
            f"no walk-forward fold fits: train={_describe_window(tr)} + "
            f"test={_describe_window(te)} is longer than the data, {span}"
        )
    for fold in folds:
        for what, lo, hi in (
            ("train", fold.train_start, fold.train_end),
            ("test", fold.test_start, fold.test_end),
        ):
            if hi - lo < 2:
                raise ValueError(
                    f"fold {fold.number}: the {what} window holds {hi - lo} bar(s) "
                    f"(bars {lo}..{hi}); a gap in the data? give longer windows"
                )
    return folds


def _iso(ns: Any) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def window_spec(value: WindowSpec) -> str | int:
    """A window as the user wrote it: a duration string or a bar count."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    return value if isinstance(value, str) else str(value)
