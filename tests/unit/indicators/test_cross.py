"""crossed_above / crossed_below on small hand-written series."""

from __future__ import annotations

import numpy as np

from sapphire.indicators import crossed_above, crossed_below

NAN = np.nan


def test_crossed_above_basic() -> None:
    a = [1.0, 2.0, 3.0, 2.0, 3.0, 3.0, 4.0]
    b = [2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    #      t0: False; t1: 2 > 2 no; t2: prev 2<=2 and 3>2 yes; t3: no; t4: prev 2<=2, 3>2 yes;
    #      t5: 3 > 3 no; t6: prev 3<=3 and 4>3 yes
    np.testing.assert_array_equal(crossed_above(a, b), [0, 0, 1, 0, 1, 0, 1])


def test_crossed_below_mirrors() -> None:
    a = [3.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.0]
    b = [2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0]
    np.testing.assert_array_equal(crossed_below(a, b), [0, 0, 1, 0, 1, 0, 1])
    # Swapping the operands turns one into the other.
    np.testing.assert_array_equal(crossed_below(a, b), crossed_above(b, a))


def test_touching_without_crossing_is_not_a_cross() -> None:
    a = [1.0, 2.0, 1.0, 2.0]
    b = [2.0, 2.0, 2.0, 2.0]
    assert not crossed_above(a, b).any()
    np.testing.assert_array_equal(crossed_below(a, b), [0, 0, 1, 0])


def test_first_bar_is_never_a_cross() -> None:
    assert not crossed_above([5.0], [1.0])[0]
    assert not crossed_below([1.0, 0.0], [5.0, 5.0])[0]


def test_nan_anywhere_in_the_four_values_blocks_the_cross() -> None:
    b = [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    # A NaN at t-1 or t in `a` blocks the cross at t, and the cross after the NaN too.
    a = [1.0, NAN, 3.0, 1.0, 3.0, 1.0]
    np.testing.assert_array_equal(crossed_above(a, b), [0, 0, 0, 0, 1, 0])
    a2 = [1.0, 3.0, 1.0, NAN, 1.0, 3.0]
    np.testing.assert_array_equal(crossed_above(a2, b), [0, 1, 0, 0, 0, 1])
    # A NaN in `b` blocks the same way.
    b2 = [2.0, NAN, 2.0, 2.0, NAN, 2.0]
    a3 = [1.0, 3.0, 3.0, 1.0, 3.0, 3.0]
    np.testing.assert_array_equal(crossed_above(a3, b2), [0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(crossed_below([3.0, NAN, 1.0], [2.0, 2.0, 2.0]), [0, 0, 0])


def test_scalar_threshold_is_broadcast() -> None:
    rsi = np.array([25.0, 29.0, 31.0, 35.0, 29.0, 28.0])
    np.testing.assert_array_equal(crossed_above(rsi, 30.0), [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(crossed_below(rsi, 30), [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(crossed_below(30.0, rsi), [0, 0, 1, 0, 0, 0])


def test_matches_the_definition_on_random_series() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 4, 2_000).astype(float)
    b = rng.integers(0, 4, 2_000).astype(float)
    a[rng.random(2_000) < 0.05] = np.nan
    b[rng.random(2_000) < 0.05] = np.nan
    above = np.zeros(2_000, dtype=bool)
    below = np.zeros(2_000, dtype=bool)
    for t in range(1, 2_000):
        above[t] = a[t - 1] <= b[t - 1] and a[t] > b[t]
        below[t] = a[t - 1] >= b[t - 1] and a[t] < b[t]
    assert above.any() and below.any()
    np.testing.assert_array_equal(crossed_above(a, b), above)
    np.testing.assert_array_equal(crossed_below(a, b), below)
    assert crossed_above(a, b).dtype == np.bool_
