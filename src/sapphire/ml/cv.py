"""Leak-free cross-validation for overlapping labels: purged k-fold, CPCV, walk-forward.

Every sample is a label interval `[t0, t1]` (bar indices, `t1 >= t0`; any integer clock
works, the embargo is then counted in that clock's units). A training sample leaks into a
test sample when their intervals overlap, and, for samples that follow a test block, when
they start within `embargo` bars of a test sample's end (Lopez de Prado, *Advances in
Financial Machine Learning*, ch. 7 and 12). The splitters below drop from the training set
every sample whose `[t0, t1]` overlaps any test sample's `[t0, t1 + embargo]`, and
`overlaps` checks exactly that rule with an independent algorithm.

Samples are grouped in order of `t0` (stable); splits return positions into the arrays as
given, sorted ascending.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
Split = tuple[IntArray, IntArray]


def _intervals(t0: ArrayLike, t1: ArrayLike) -> tuple[IntArray, IntArray]:
    """Validate label intervals and return them as int64 arrays."""
    arrays = []
    for name, values in (("t0", t0), ("t1", t1)):
        a = np.asarray(values)
        if np.issubdtype(a.dtype, np.datetime64):
            a = a.astype("datetime64[ns]").view(np.int64)
        if a.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            f = a.astype(np.float64)
            bad = ~np.isfinite(f) | (f != np.round(f))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{name}[{i}] = {a[i].item()!r} is not a whole bar index")
        arrays.append(a.astype(np.int64))
    a0, a1 = arrays
    if a0.shape != a1.shape:
        raise ValueError(f"t0 and t1 differ in length: {a0.size} != {a1.size}")
    back = a1 < a0
    if back.any():
        i = int(np.argmax(back))
        raise ValueError(f"label {i} ends before it starts: t1={a1[i]} < t0={a0[i]}")
    return a0, a1


def _embargo_bars(embargo: float | int, t0: IntArray, t1: IntArray) -> int:
    """Bars of embargo: an int is bars, a float in [0, 1) a fraction of the span covered."""
    if isinstance(embargo, float):
        if t0.size == 0:
            return 0
        span = int(t1.max() - t0.min() + 1)
        return math.ceil(embargo * span)
    return int(embargo)


def _check_embargo(embargo: float | int) -> None:
    """Reject an embargo that is neither bars (int >= 0) nor a fraction in [0, 1)."""
    if isinstance(embargo, bool) or not isinstance(embargo, int | float | np.integer):
        raise ValueError(f"embargo={embargo!r} is invalid: expected bars (int) or a fraction")
    if isinstance(embargo, float) and not 0.0 <= embargo < 1.0:
        raise ValueError(f"embargo={embargo!r} is invalid: a fraction must be in [0, 1)")
    if not isinstance(embargo, float) and embargo < 0:
        raise ValueError(f"embargo={embargo!r} is invalid: bars must be >= 0")


def _purged_train(
    test_pos: IntArray, candidates: IntArray, t0: IntArray, t1: IntArray, embargo_bars: int
) -> IntArray:
    """Candidates whose [t0, t1] does not meet the union of test [t0, t1 + embargo]."""
    if test_pos.size == 0 or candidates.size == 0:
        return candidates
    # merge the test intervals into disjoint blocks, then test each candidate against them
    order = np.argsort(t0[test_pos], kind="stable")
    starts = t0[test_pos][order]
    ends = t1[test_pos][order] + embargo_bars
    run_end = np.maximum.accumulate(ends)
    new_block = np.r_[True, starts[1:] > run_end[:-1]]
    block_start = starts[new_block]
    block_end = np.r_[run_end[np.flatnonzero(new_block)[1:] - 1], run_end[-1]]
    c0, c1 = t0[candidates], t1[candidates]
    # the last block starting at or before the candidate's end is the only one that can meet it
    k = np.searchsorted(block_start, c1, side="right") - 1
    hit = (k >= 0) & (block_end[np.maximum(k, 0)] >= c0)
    return candidates[~hit]


def overlaps(
    train_pos: ArrayLike, test_pos: ArrayLike, t0: ArrayLike, t1: ArrayLike, embargo_bars: int
) -> bool:
    """True if any training [t0, t1] meets any test [t0, t1 + embargo_bars]."""
    a0, a1 = _intervals(t0, t1)
    train = np.asarray(train_pos, dtype=np.int64)
    test = np.asarray(test_pos, dtype=np.int64)
    if train.size == 0 or test.size == 0:
        return False
    order = np.argsort(a0[test], kind="stable")
    s0 = a0[test][order]
    reach = np.maximum.accumulate(a1[test][order]) + int(embargo_bars)
    # test samples starting at or before the training sample's end: does any reach its start?
    k = np.searchsorted(s0, a1[train], side="right")
    return bool(np.any((k > 0) & (reach[np.maximum(k - 1, 0)] >= a0[train])))


def _groups(t0: IntArray, n_groups: int, what: str) -> list[IntArray]:
    """Positions of `n_groups` contiguous, near-equal groups in t0 order."""
    if t0.size < n_groups:
        raise ValueError(f"{t0.size} samples cannot fill {n_groups} {what}: need at least one each")
    order = np.argsort(t0, kind="stable").astype(np.int64)
    return [np.sort(g) for g in np.array_split(order, n_groups)]


class PurgedKFold:
    """K contiguous test folds in time order; training purged of overlaps and embargoed."""

    def __init__(self, n_splits: int = 5, embargo: float | int = 0.01) -> None:
        if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
            raise ValueError(f"n_splits={n_splits!r} is invalid: expected an int >= 2")
        _check_embargo(embargo)
        self.n_splits = n_splits
        self.embargo = embargo

    def __repr__(self) -> str:
        return f"PurgedKFold(n_splits={self.n_splits}, embargo={self.embargo!r})"

    def split(self, t0: ArrayLike, t1: ArrayLike) -> Iterator[Split]:
        """Yield (train positions, test positions) for each fold, in time order."""
        a0, a1 = _intervals(t0, t1)
        e = _embargo_bars(self.embargo, a0, a1)
        folds = _groups(a0, self.n_splits, "folds")
        everything = np.arange(a0.size, dtype=np.int64)
        for test in folds:
            rest = np.setdiff1d(everything, test, assume_unique=True)
            yield _purged_train(test, rest, a0, a1, e), test

    def embargo_bars(self, t0: ArrayLike, t1: ArrayLike) -> int:
        """The embargo in bars that `split` applies to these intervals."""
        a0, a1 = _intervals(t0, t1)
        return _embargo_bars(self.embargo, a0, a1)


class CombinatorialPurgedCV:
    """Combinatorial purged CV: every choice of `n_test_groups` of `n_groups` tests once.

    Split `s` tests the groups `combinations(range(n_groups), n_test_groups)[s]`. Each
    group is tested in C(N-1, k-1) splits, so the out-of-sample predictions assemble into
    `n_paths = C(N-1, k-1)` complete backtest paths (`paths`, `assemble_paths`).
    """

    def __init__(
        self, n_groups: int = 6, n_test_groups: int = 2, embargo: float | int = 0.01
    ) -> None:
        if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 2:
            raise ValueError(f"n_groups={n_groups!r} is invalid: expected an int >= 2")
        if (
            isinstance(n_test_groups, bool)
            or not isinstance(n_test_groups, int)
            or not 1 <= n_test_groups < n_groups
        ):
            raise ValueError(
                f"n_test_groups={n_test_groups!r} is invalid: expected an int in [1, {n_groups})"
            )
        _check_embargo(embargo)
        self.n_groups = n_groups
        self.n_test_groups = n_test_groups
        self.embargo = embargo
        self.combinations = list(itertools.combinations(range(n_groups), n_test_groups))

    def __repr__(self) -> str:
        return (
            f"CombinatorialPurgedCV(n_groups={self.n_groups}, "
            f"n_test_groups={self.n_test_groups}, embargo={self.embargo!r})"
        )

    @property
    def n_splits(self) -> int:
        """Number of train/test splits, C(N, k)."""
        return len(self.combinations)

    @property
    def n_paths(self) -> int:
        """Number of backtest paths, C(N-1, k-1) = k * C(N, k) / N."""
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)

    def groups(self, t0: ArrayLike) -> list[IntArray]:
        """Positions of each of the N groups (contiguous in t0 order)."""
        a0, _ = _intervals(t0, t0)
        return _groups(a0, self.n_groups, "groups")

    def split(self, t0: ArrayLike, t1: ArrayLike) -> Iterator[Split]:
        """Yield (train positions, test positions) for each of the C(N, k) splits."""
        a0, a1 = _intervals(t0, t1)
        e = _embargo_bars(self.embargo, a0, a1)
        groups = _groups(a0, self.n_groups, "groups")
        for combo in self.combinations:
            test = np.sort(np.concatenate([groups[g] for g in combo]))
            rest = np.sort(
                np.concatenate([groups[g] for g in range(self.n_groups) if g not in combo])
            )
            yield _purged_train(test, rest, a0, a1, e), test

    def paths(self) -> list[list[tuple[int, int]]]:
        """Backtest paths: path p is [(split, group) for group 0..N-1].

        Path p takes group g from the p-th split (in split order) that tests g, so every
        (split, group) pair is used by exactly one path.
        """
        seen = [0] * self.n_groups
        paths: list[list[tuple[int, int]]] = [[] for _ in range(self.n_paths)]
        for s, combo in enumerate(self.combinations):
            for g in combo:
                paths[seen[g]].append((s, g))
                seen[g] += 1
        return [sorted(p, key=lambda sg: sg[1]) for p in paths]

    def assemble_paths(
        self, t0: ArrayLike, test_predictions: list[ArrayLike]
    ) -> NDArray[np.float64]:
        """Out-of-sample predictions per path, shape (n_paths, n_samples).

        `test_predictions[s]` holds split s's predictions for its test positions (in the
        ascending order `split` yields them).
        """
        if len(test_predictions) != self.n_splits:
            raise ValueError(
                f"got predictions for {len(test_predictions)} splits, expected {self.n_splits}"
            )
        groups = self.groups(t0)
        n = sum(g.size for g in groups)
        by_split: list[dict[int, NDArray[np.float64]]] = []
        for s, combo in enumerate(self.combinations):
            pred = np.asarray(test_predictions[s], dtype=np.float64)
            test = np.sort(np.concatenate([groups[g] for g in combo]))
            if pred.shape != test.shape:
                raise ValueError(
                    f"split {s}: {pred.shape[0] if pred.ndim else 0} predictions for "
                    f"{test.size} test samples"
                )
            by_split.append({g: pred[np.searchsorted(test, groups[g])] for g in combo})
        out = np.full((self.n_paths, n), np.nan)
        for p, path in enumerate(self.paths()):
            for s, g in path:
                out[p, groups[g]] = by_split[s][g]
        return out


def walk_forward_splits(
    n: int,
    *,
    train: int,
    test: int,
    purge: int,
    mode: Literal["sliding", "expanding"] = "sliding",
    t1: ArrayLike | None = None,
    t0: ArrayLike | None = None,
) -> list[Split]:
    """Walk-forward splits of n time-ordered rows: train, a purge gap, then test.

    Test windows `[s, s + test)` follow each other from `s = train + purge`; only whole
    test windows are kept. The training window ends `purge` rows before the test window
    (choose `purge` >= the label horizon) and holds the `train` rows before that
    ("sliding") or every row from 0 ("expanding"). With `t1` (label end per row) training
    rows whose label ends at or after the first test row's start are dropped as well; the
    start is `t0[first test row]` when `t0` is given, else the row number itself.
    """
    for name, value, low in (
        ("n", n, 0),
        ("train", train, 1),
        ("test", test, 1),
        ("purge", purge, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}={value!r} is invalid: expected an int >= {low}")
    if mode not in ("sliding", "expanding"):
        raise ValueError(f"mode={mode!r} is invalid: expected 'sliding' or 'expanding'")
    ends = starts = None
    if t1 is not None:
        starts_arg = np.arange(n) if t0 is None else t0
        starts, ends = _intervals(starts_arg, t1)
        if ends.size != n:
            raise ValueError(f"t1 holds {ends.size} rows, expected n={n}")
    splits: list[Split] = []
    s = train + purge
    while s + test <= n:
        lo = 0 if mode == "expanding" else s - purge - train
        tr = np.arange(lo, s - purge, dtype=np.int64)
        if ends is not None and starts is not None:
            tr = tr[ends[tr] < starts[s]]
        splits.append((tr, np.arange(s, s + test, dtype=np.int64)))
        s += test
    if not splits:
        raise ValueError(
            f"no walk-forward split fits in n={n} rows: train={train} + purge={purge} + "
            f"test={test} rows are needed"
        )
    return splits
