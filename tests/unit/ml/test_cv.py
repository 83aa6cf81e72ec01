"""Purged k-fold, combinatorial purged CV and walk-forward splits never leak."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.ml.cv import CombinatorialPurgedCV, PurgedKFold, overlaps, walk_forward_splits


def _brute_overlaps(train, test, t0, t1, e) -> bool:
    """O(n*m) reference for `overlaps`."""
    a0, a1 = t0[train][:, None], t1[train][:, None]
    b0, b1 = t0[test][None, :], t1[test][None, :] + e
    return bool(np.any((a0 <= b1) & (b0 <= a1)))


@st.composite
def _labels(draw):
    n = draw(st.integers(12, 120))
    sparse = draw(st.booleans())
    gaps = draw(st.lists(st.integers(0, 5 if sparse else 1), min_size=n, max_size=n))
    t0 = np.cumsum(np.asarray(gaps, dtype=np.int64))
    hold = draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    t1 = t0 + np.asarray(hold, dtype=np.int64)
    if draw(st.booleans()):  # unsorted input: splitters must sort by t0 themselves
        perm = np.random.default_rng(draw(st.integers(0, 10**6))).permutation(n)
        t0, t1 = t0[perm], t1[perm]
    return t0, t1


_EMBARGO = st.one_of(st.integers(0, 8), st.floats(0.0, 0.2))


@settings(max_examples=150, deadline=None)
@given(_labels(), st.integers(2, 6), _EMBARGO)
def test_purged_kfold_never_overlaps(labels, k, embargo):
    t0, t1 = labels
    cv = PurgedKFold(k, embargo=embargo)
    e = cv.embargo_bars(t0, t1)
    seen = []
    for train, test in cv.split(t0, t1):
        assert not overlaps(train, test, t0, t1, e)
        assert not _brute_overlaps(train, test, t0, t1, e)
        assert np.intersect1d(train, test).size == 0
        seen.append(test)
        # purging is minimal: every dropped sample really does overlap
        dropped = np.setdiff1d(np.setdiff1d(np.arange(t0.size), test), train)
        for i in dropped:
            assert _brute_overlaps(np.array([i]), test, t0, t1, e)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(t0.size))


@settings(max_examples=100, deadline=None)
@given(_labels(), st.integers(3, 6), st.integers(1, 2), _EMBARGO)
def test_cpcv_never_overlaps(labels, n_groups, k, embargo):
    t0, t1 = labels
    cv = CombinatorialPurgedCV(n_groups, k, embargo=embargo)
    e = PurgedKFold(2, embargo).embargo_bars(t0, t1)
    splits = list(cv.split(t0, t1))
    assert len(splits) == math.comb(n_groups, k) == cv.n_splits
    for train, test in splits:
        assert not overlaps(train, test, t0, t1, e)
        assert not _brute_overlaps(train, test, t0, t1, e)
        dropped = np.setdiff1d(np.setdiff1d(np.arange(t0.size), test), train)
        for i in dropped:
            assert _brute_overlaps(np.array([i]), test, t0, t1, e)


@settings(max_examples=100, deadline=None)
@given(_labels(), st.integers(0, 8))
def test_overlaps_agrees_with_brute_force(labels, e):
    t0, t1 = labels
    rng = np.random.default_rng(t0.size)
    for _ in range(5):
        mask = rng.random(t0.size) < 0.5
        train, test = np.flatnonzero(mask), np.flatnonzero(~mask)
        assert overlaps(train, test, t0, t1, e) == _brute_overlaps(train, test, t0, t1, e)


def test_purged_kfold_hand_example():
    # 10 one-bar-ahead labels [i, i+2]; fold 2 tests samples 4,5 (k=5)
    t0 = np.arange(10)
    t1 = t0 + 2
    train, test = list(PurgedKFold(5, embargo=1).split(t0, t1))[2]
    assert test.tolist() == [4, 5]
    # purge: 2, 3 end at >= 4; embargo: 6, 7, 8 start <= 5 + 2 + 1
    assert train.tolist() == [0, 1, 9]


def test_embargo_fraction_of_span():
    t0 = np.arange(1000)
    assert PurgedKFold(5, 0.01).embargo_bars(t0, t0 + 9) == math.ceil(0.01 * 1009)
    assert PurgedKFold(5, 0).embargo_bars(t0, t0) == 0


def test_cpcv_paths_cover_every_group_once():
    cv = CombinatorialPurgedCV(6, 2)
    assert (cv.n_splits, cv.n_paths) == (15, 5)
    paths = cv.paths()
    assert len(paths) == 5
    used = set()
    for path in paths:
        assert [g for _, g in path] == list(range(6))
        for s, g in path:
            assert g in cv.combinations[s]
            used.add((s, g))
    assert len(used) == 15 * 2  # every (split, test group) pair used exactly once


def test_cpcv_assemble_paths():
    t0 = np.arange(60)
    t1 = t0 + 3
    cv = CombinatorialPurgedCV(5, 2, embargo=0)
    preds = []
    for s, (_, test) in enumerate(cv.split(t0, t1)):
        preds.append(test * 100.0 + s)  # encodes (split, position)
    out = cv.assemble_paths(t0, preds)
    assert out.shape == (cv.n_paths, 60)
    groups = cv.groups(t0)
    for p, path in enumerate(cv.paths()):
        for s, g in path:
            assert np.array_equal(out[p, groups[g]], groups[g] * 100.0 + s)
    with pytest.raises(ValueError, match="expected 10"):
        cv.assemble_paths(t0, preds[:3])


def test_walk_forward_purge_and_order():
    t0 = np.arange(500)
    t1 = t0 + 20
    for mode in ("sliding", "expanding"):
        splits = walk_forward_splits(500, train=100, test=50, purge=10, mode=mode, t1=t1)
        assert len(splits) == (500 - 110) // 50
        for train, test in splits:
            assert train.max() < test.min() - 10
            assert t1[train].max() < test.min()
            assert not overlaps(train, test, t0, t1, 0)
            if mode == "sliding":
                assert train.min() == test.min() - 10 - 100
            else:
                assert train.min() == 0
    # a purge shorter than the horizon still cannot leak once t1 is given
    for train, test in walk_forward_splits(500, train=100, test=50, purge=0, t1=t1):
        assert not overlaps(train, test, t0, t1, 0)
        assert train.size == 100 - 20


@settings(max_examples=100, deadline=None)
@given(
    st.integers(20, 300),
    st.integers(1, 60),
    st.integers(1, 40),
    st.integers(0, 20),
    st.sampled_from(["sliding", "expanding"]),
    st.integers(0, 10**6),
)
def test_walk_forward_never_overlaps(n, train, test, purge, mode, seed):
    t0 = np.arange(n)
    t1 = t0 + np.random.default_rng(seed).integers(0, 30, n)
    if train + purge + test > n:
        with pytest.raises(ValueError, match="no walk-forward split"):
            walk_forward_splits(n, train=train, test=test, purge=purge, mode=mode, t1=t1)
        return
    splits = walk_forward_splits(n, train=train, test=test, purge=purge, mode=mode, t1=t1)
    for train_pos, test_pos in splits:
        assert test_pos.size == test
        assert not overlaps(train_pos, test_pos, t0, t1, 0)
        if train_pos.size:
            assert train_pos.max() < test_pos.min() - purge


def test_walk_forward_with_event_times():
    t0 = np.arange(0, 1000, 5)  # sparse events: rows are not bars
    t1 = t0 + 30
    for train, test in walk_forward_splits(200, train=50, test=20, purge=0, t0=t0, t1=t1):
        assert not overlaps(train, test, t0, t1, 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: PurgedKFold(1), "n_splits=1"),
        (lambda: PurgedKFold(5, embargo=1.5), "embargo=1.5"),
        (lambda: PurgedKFold(5, embargo=-1), "embargo=-1"),
        (lambda: CombinatorialPurgedCV(6, 6), "n_test_groups=6"),
        (lambda: list(PurgedKFold(5).split([0, 1], [1, 2])), "2 samples cannot fill 5"),
        (lambda: list(PurgedKFold(2).split([0, 5], [1, 2])), r"t1=2 < t0=5"),
        (lambda: list(PurgedKFold(2).split([0, 1.5], [1, 2])), r"t0\[1\] = 1.5"),
        (lambda: list(PurgedKFold(2).split([0, 1], [1])), "differ in length"),
        (lambda: walk_forward_splits(10, train=8, test=5, purge=0), "no walk-forward split"),
        (lambda: walk_forward_splits(10, train=2, test=2, purge=1, mode="x"), "mode='x'"),
        (lambda: walk_forward_splits(10, train=0, test=2, purge=1), "train=0"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
