"""Drift: PSI (bins, bands, NaN), KS, ADWIN (exact window statistics, bounded detection delay,
false alarms within delta) and DriftMonitor (a +1 std shift caught within a stated number of
bars; stationary false-alarm rate at or below ks_alpha).

Measured (fixed seeds, N(0, 1) data unless said otherwise):
- ADWIN(delta=0.002, clock=32) after 2,000 stationary values: a +1 std shift is detected
  within 96 values (the bound tested; max seen 47 over 40 seeds), +2 std at the first check
  (<= 32); stationary streams (normal and Bernoulli(0.3)): 0 detections in 4,650 checks at
  delta=0.002, 3 in 4,650 at delta=0.05 (bound tested: delta per check).
- DriftMonitor defaults (every=500, window=2000, ks_alpha=0.01), reference 5,000 rows: a
  +1 std shift of one feature is flagged within every + 300 = 800 bars of its start at any
  alignment with the check schedule (max seen 674 over 8 seeds); stationary false alarms per
  (check, feature) at ks_alpha=0.05: 71 / 1,600 = 4.4 % (bound tested: 1.2 x ks_alpha).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sapphire.ml.drift import ADWIN, DriftMonitor, drift_report, ks_test, psi, psi_band

COLS = ["a", "b", "c", "d"]


def _frame(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(rows, len(COLS))), columns=COLS)


# -- PSI and KS ------------------------------------------------------------------------------


def test_psi_matches_a_hand_computation() -> None:
    reference = np.arange(100.0)  # quartile edges 24.75, 49.5, 74.25: 25 % per bin
    current = np.tile(np.arange(50.0), 2)  # 50 % / 50 % / 0 / 0
    eps = 1e-4
    expected = 2 * (0.5 - 0.25) * math.log(0.5 / 0.25) + 2 * (eps - 0.25) * math.log(eps / 0.25)
    assert psi(reference, current, bins=4) == pytest.approx(expected, rel=1e-12)
    assert psi(reference, reference, bins=4) == 0.0


def test_psi_separates_noise_from_a_shift_with_the_bands() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    same = psi(reference, rng.normal(size=5_000))
    small = psi(reference, rng.normal(0.3, 1.0, size=5_000))
    large = psi(reference, rng.normal(1.0, 1.0, size=5_000))
    assert same < 0.01 and psi_band(same) == "stable"
    assert 0.05 < small < 0.2
    assert large > 0.5 and psi_band(large) == "significant"


def test_psi_bands_at_their_edges() -> None:
    assert psi_band(0.0) == "stable" and psi_band(0.0999) == "stable"
    assert psi_band(0.1) == "moderate" and psi_band(0.1999) == "moderate"
    assert psi_band(0.2) == "significant" and psi_band(7.0) == "significant"
    for bad in (float("nan"), -0.1):
        with pytest.raises(ValueError, match="PSI must be a number >= 0"):
            psi_band(bad)


def test_psi_counts_nan_as_its_own_bin_and_survives_ties() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=10_000)
    current = rng.normal(size=5_000)
    current[:1_000] = np.nan  # 20 % missing where training had none: drift
    assert psi(reference, current) > 1.0
    assert psi(np.r_[reference, np.full(100, np.nan)], reference) < 0.05
    constant = np.full(1_000, 3.0)
    assert psi(constant, constant) == 0.0
    assert psi(constant, constant + 1.0) > 5.0


def test_psi_and_ks_reject_bad_input_by_name() -> None:
    with pytest.raises(ValueError, match="bins must be an int >= 2, got 1"):
        psi([1.0, 2.0], [1.0], bins=1)
    with pytest.raises(ValueError, match="current is empty"):
        psi([1.0, 2.0], [])
    with pytest.raises(ValueError, match="reference has no non-NaN values"):
        psi([np.nan], [1.0])
    with pytest.raises(ValueError, match="current holds infinite values"):
        psi([1.0, 2.0], [np.inf])
    with pytest.raises(ValueError, match="current has no non-NaN values"):
        ks_test([1.0, 2.0], [np.nan])


def test_ks_test_is_scipys_two_sample_test_without_nan() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=500), rng.normal(0.2, 1.0, size=300)
    expected = stats.ks_2samp(a, b)
    assert ks_test(a, np.r_[b, np.nan]) == (expected.statistic, expected.pvalue)


# -- ADWIN -----------------------------------------------------------------------------------


def test_adwin_window_statistics_are_exact_through_bucket_merges() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, size=5_000)
    adwin = ADWIN()
    assert not any(adwin.update(v) for v in x)
    assert adwin.width == 5_000 and adwin.detections == 0
    assert adwin.mean == pytest.approx(x.mean(), rel=1e-12)
    assert adwin.variance == pytest.approx(x.var(), rel=1e-9)
    buckets = sum(len(row) for row in adwin._rows)  # O(M log W) memory
    assert buckets <= adwin.max_buckets * (math.log2(5_000) + 1)


@pytest.mark.parametrize(("shift", "bound"), [(1.0, 96), (2.0, 32)])
def test_adwin_detects_a_mean_shift_within_a_bounded_delay(shift: float, bound: int) -> None:
    delays = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        stream = np.r_[rng.normal(size=2_000), rng.normal(shift, 1.0, size=1_000)]
        adwin = ADWIN(delta=0.002)
        hits = [i for i, v in enumerate(stream) if adwin.update(v)]
        assert hits and hits[0] >= 2_000, f"seed {seed}: false alarm at {hits[:1]}"
        delays.append(hits[0] - 2_000)
        assert abs(adwin.mean - shift) < 0.5  # the old regime was dropped from the window
    assert max(delays) <= bound, delays


@pytest.mark.parametrize("delta", [0.002, 0.05])
def test_adwin_false_alarms_stay_within_delta(delta: float) -> None:
    alarms = checks = 0
    for seed in range(50):
        rng = np.random.default_rng(10_000 + seed)
        stream = rng.normal(size=3_000) if seed % 2 else (rng.random(3_000) < 0.3) * 1.0
        adwin = ADWIN(delta=delta)
        alarms += sum(adwin.update(v) for v in stream)
        checks += len(stream) // adwin.clock
    assert alarms / checks <= delta


def test_adwin_rejects_bad_parameters_and_values() -> None:
    with pytest.raises(ValueError, match="delta must be in"):
        ADWIN(delta=1.5)
    with pytest.raises(ValueError, match="clock must be an int >= 1, got 0"):
        ADWIN(clock=0)
    with pytest.raises(ValueError, match="ADWIN needs finite values, got nan"):
        ADWIN().update(float("nan"))


# -- DriftMonitor ----------------------------------------------------------------------------


def test_monitor_flags_a_one_std_shift_within_every_plus_300_bars() -> None:
    every, window = 500, 2000
    delays = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        monitor = DriftMonitor(_frame(rng, 5_000))  # defaults: every=500, window=2000
        start = window + int(rng.integers(0, every))  # any alignment with the schedule
        rows = rng.normal(size=(start + 2 * window, len(COLS)))
        rows[start:, 1] += 1.0
        found = None
        for i, row in enumerate(rows):
            events = monitor.update(i, row)
            assert i >= start or not any(e.psi and e.psi >= 0.2 for e in events)
            if i >= start and any(e.feature == "b" for e in events):
                found = i - start + 1
                break
        assert found is not None
        delays.append(found)
        report = monitor.report()
        assert report.loc[["b"], "drifted"].all() and report.loc[["b"], "ks_p"].lt(0.01).all()
    assert max(delays) <= every + 300, delays


def test_monitor_false_alarm_rate_is_at_most_ks_alpha() -> None:
    alpha, window = 0.05, 1000
    alarms = checks = 0
    for seed in range(80):  # a fresh reference per seed; non-overlapping windows
        rng = np.random.default_rng(20_000 + seed)
        monitor = DriftMonitor(_frame(rng, 3_000), every=window, window=window, ks_alpha=alpha)
        for i, row in enumerate(rng.normal(size=(5 * window, len(COLS)))):
            alarms += len(monitor.update(i, row))
        checks += 5 * len(COLS)
    assert alarms / checks <= alpha * 1.2, (alarms, checks)


def test_monitor_reports_performance_drift_from_adwin() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(_frame(rng, 1_000), every=10**9)
    errors = np.r_[rng.normal(0.0, 1.0, 3_000), rng.normal(2.0, 1.0, 1_000)]
    events = []
    for i, err in enumerate(errors):
        events += [(i, e) for e in monitor.update(i, rng.normal(size=4), error=err)]
    assert events and all(e.kind == "performance" for _, e in events)
    first, event = events[0]
    assert 3_000 <= first < 3_000 + 64
    assert event.band == "up" and event.feature is None and "moved from" in event.message
    assert monitor.adwin.mean > 1.5


def test_monitor_report_before_and_after_a_check() -> None:
    rng = np.random.default_rng(5)
    monitor = DriftMonitor(_frame(rng, 2_000), every=400, window=800, features=["a", "c"])
    report = monitor.report()
    assert list(report.index) == ["a", "c"] and report["psi"].isna().all()
    for i in range(400):
        monitor.update(1_000 + i, rng.normal(size=4))
    report = monitor.report()
    assert list(report.columns) == ["psi", "band", "ks_stat", "ks_p", "drifted", "ts_ns", "n"]
    assert (report["n"] == 400).all() and (report["ts_ns"] == 1_399).all()
    assert (report["band"] == "stable").all() and (report["psi"] < 0.2).all()


def test_monitor_rejects_bad_input_by_name() -> None:
    reference = _frame(np.random.default_rng(6), 100)
    with pytest.raises(ValueError, match=r"features \['zz'\] are not columns"):
        DriftMonitor(reference, features=["a", "zz"])
    with pytest.raises(ValueError, match="every must be an int >= 1, got 0"):
        DriftMonitor(reference, every=0)
    with pytest.raises(ValueError, match="reference column 'a' has no non-NaN values"):
        DriftMonitor(reference.assign(a=np.nan))
    with pytest.raises(ValueError, match="row has 3 values, expected 4"):
        DriftMonitor(reference).update(0, [1.0, 2.0, 3.0])


def test_drift_report_flags_the_shifted_feature() -> None:
    rng = np.random.default_rng(7)
    reference, current = _frame(rng, 5_000), _frame(rng, 2_000)
    current["c"] += 1.0
    report = drift_report(reference, current)
    assert list(report.columns) == ["psi", "band", "ks_stat", "ks_p", "drifted"]
    assert report["drifted"].tolist() == [False, False, True, False]
    assert report.loc["c", "band"] == "significant"
    with pytest.raises(ValueError, match=r"current lacks the reference's columns \['d'\]"):
        drift_report(reference, current.drop(columns="d"))


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, 1.0, n)
    x = np.empty(n)
    x[0] = e[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_calibrated_window_scores_ignore_persistence_and_catch_shifts() -> None:
    """A persistent feature (AR(1), phi 0.98): windowed PSI is large on unchanged data, the
    calibrated window z-scores are not; a shift of the mean or of the spread is caught."""
    from sapphire.ml.drift import window_null, window_z

    window = 300
    reference = pd.DataFrame({"x": _ar1(10_000, 0.98, 1)})
    null = window_null(reference, window)
    psis, worst = [], 0.0
    for seed in range(2, 12):
        fresh = pd.DataFrame({"x": _ar1(3_000, 0.98, seed)})
        for lo in range(0, 3_000 - window + 1, window):
            current = fresh.iloc[lo : lo + window]
            psis.append(psi(reference["x"], current["x"]))
            z_mean, z_std = window_z(null, current)
            worst = max(worst, abs(z_mean[0]), abs(z_std[0]))
    assert np.mean(np.array(psis) >= 0.2) > 0.5  # i.i.d. PSI alarms on most windows
    assert worst < 6.0  # the calibrated scores never reach the alert level
    base = pd.DataFrame({"x": _ar1(window, 0.98, 99)})
    shifted_mean = base + 5.0 * reference["x"].std()
    shifted_std = base * 5.0
    assert abs(window_z(null, shifted_mean)[0][0]) > 6.0
    assert abs(window_z(null, shifted_std)[1][0]) > 6.0
