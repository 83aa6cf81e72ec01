"""Drift detection: feature drift (PSI, Kolmogorov-Smirnov) against the training data, and
performance drift (ADWIN) on a stream of errors or PnL.

```python
monitor = DriftMonitor(X_train, every=500, window=2000)
for ts, row, err in live:
    for event in monitor.update(ts, row, error=err):
        alert(event.message)
monitor.report()  # latest psi / band / ks per feature
```

PSI bands: < 0.1 stable, < 0.2 moderate, >= 0.2 significant. A feature drifts when its PSI
reaches `psi_alert` or the KS test rejects "same distribution" at `ks_alpha`, so on
stationary, independent rows a check raises a false alarm with probability about `ks_alpha`
(PSI at 0.2 is far above its noise level for a window of hundreds of rows). Autocorrelated
features make KS p-values optimistic and inflate PSI: a window of consecutive bars of a
persistent feature holds few independent values. For those, `window_null` calibrates the
standard errors of a window's mean and standard deviation on the training rows themselves
and `window_z` scores a window against them (what `sapphire.ml.live.DriftWatch` uses).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "ADWIN",
    "DriftEvent",
    "DriftMonitor",
    "drift_report",
    "ks_test",
    "psi",
    "psi_band",
    "window_null",
    "window_z",
]

PSI_EPS = 1e-4  # floor of a bin's share, so that an empty bin gives a finite PSI
Band = Literal["stable", "moderate", "significant"]


def _finite_sample(values: ArrayLike, name: str) -> NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).ravel()
    if np.isinf(x).any():
        raise ValueError(f"{name} holds infinite values; expected finite numbers or NaN")
    return x


def psi_edges(reference: ArrayLike, bins: int = 10) -> NDArray[np.float64]:
    """Interior bin edges of the reference's quantiles (ties merged) for `psi`."""
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    ref = _finite_sample(reference, "reference")
    ref = ref[~np.isnan(ref)]
    if ref.size == 0:
        raise ValueError("reference has no non-NaN values to build PSI bins from")
    edges = np.quantile(ref, np.linspace(0.0, 1.0, int(bins) + 1)[1:-1])
    return np.unique(edges)


def _shares(x: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of `x` in each bin (-inf, e0], (e0, e1], ..., (e_k, inf) plus a NaN bin."""
    nan = np.isnan(x)
    counts = np.bincount(np.searchsorted(edges, x[~nan], side="left"), minlength=edges.size + 1)
    return np.append(counts, nan.sum()) / x.size


def _psi_from(
    ref_shares: NDArray[np.float64], current: NDArray[np.float64], edges: NDArray[np.float64]
) -> float:
    cur = np.maximum(_shares(current, edges), PSI_EPS)
    ref = np.maximum(ref_shares, PSI_EPS)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(reference: ArrayLike, current: ArrayLike, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`.

    Bins are the reference's quantiles (`bins` of them, fewer where values tie); NaN is a
    bin of its own; shares are floored at 1e-4 so that an empty bin stays finite.
    """
    edges = psi_edges(reference, bins)
    cur = _finite_sample(current, "current")
    if cur.size == 0:
        raise ValueError("current is empty; expected at least one value")
    return _psi_from(_shares(_finite_sample(reference, "reference"), edges), cur, edges)


def psi_band(value: float) -> Band:
    """ "stable" below 0.1, "moderate" below 0.2, "significant" from 0.2."""
    if not isinstance(value, int | float | np.floating) or math.isnan(value) or value < 0:
        raise ValueError(f"PSI must be a number >= 0, got {value!r}")
    return "stable" if value < 0.1 else "moderate" if value < 0.2 else "significant"


def ks_test(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp), NaN ignored: (stat, p)."""
    ref = _finite_sample(reference, "reference")
    cur = _finite_sample(current, "current")
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        empty = "reference" if ref.size == 0 else "current"
        raise ValueError(f"{empty} has no non-NaN values; the KS test needs at least one")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


class ADWIN:
    """Adaptive windowing change detector (Bifet & Gavalda 2007) on a stream of floats.

    ADWIN2: the window is kept as an exponential histogram (rows of buckets of 2**i items,
    at most `max_buckets` per row, each bucket holding its sum and variance). Every `clock`
    items, every split of the window at a bucket boundary into an older part W0 and a newer
    part W1 (both >= `min_window` items) is tested; if |mean(W0) - mean(W1)| > eps_cut, the
    oldest bucket is dropped and the test repeats. eps_cut is the paper's variance-based
    bound: sqrt(2/m * var(W) * ln(2/d')) + 2/(3m) * ln(2/d'), m = 1/(1/n0 + 1/n1), with
    d' = delta/ln(n) as in the authors' implementation (MOA). The false-alarm probability of a
    check on a stationary stream is at most `delta`.
    """

    def __init__(
        self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5, min_window: int = 10
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        for name, value, low in (("clock", clock, 1), ("max_buckets", max_buckets, 2),
                                 ("min_window", min_window, 1)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.delta, self.clock = float(delta), clock
        self.max_buckets, self.min_window = max_buckets, min_window
        # rows[i]: buckets of 2**i items, oldest first, as [sum, variance] pairs
        self._rows: list[deque[list[float]]] = []
        self.width = 0
        self._total = 0.0
        self._variance = 0.0  # sum of squared deviations from the window's mean
        self.detections = 0
        self._seen = 0

    @property
    def mean(self) -> float:
        """Mean of the current window (NaN while empty)."""
        return self._total / self.width if self.width else math.nan

    @property
    def variance(self) -> float:
        """Variance of the current window (NaN while empty)."""
        return self._variance / self.width if self.width else math.nan

    def update(self, x: float) -> bool:
        """Add one value; True when a change is detected (the window shrinks)."""
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"ADWIN needs finite values, got {x!r}")
        self._insert(value)
        self._seen += 1
        if self._seen % self.clock or self.width < 2 * self.min_window:
            return False
        changed = False
        while self._cut_found():
            self._drop_oldest()
            changed = True
        self.detections += changed
        return changed

    def _insert(self, value: float) -> None:
        if self.width:
            mean = self._total / self.width
            self._variance += self.width * (value - mean) ** 2 / (self.width + 1)
        self.width += 1
        self._total += value
        if not self._rows:
            self._rows.append(deque())
        self._rows[0].append([value, 0.0])
        row = 0
        while len(self._rows[row]) > self.max_buckets:  # merge the two oldest into one
            size = 2.0**row
            s1, v1 = self._rows[row].popleft()
            s2, v2 = self._rows[row].popleft()
            merged = v1 + v2 + size * size * (s1 / size - s2 / size) ** 2 / (2 * size)
            if row + 1 == len(self._rows):
                self._rows.append(deque())
            self._rows[row + 1].append([s1 + s2, merged])
            row += 1

    def _drop_oldest(self) -> None:
        row = len(self._rows) - 1
        n1 = 2.0**row
        s1, v1 = self._rows[row].popleft()
        if not self._rows[row]:
            self._rows.pop()
        self.width -= int(n1)
        self._total -= s1
        if self.width:
            rest = self._total / self.width
            self._variance -= v1 + n1 * self.width * (s1 / n1 - rest) ** 2 / (n1 + self.width)
            self._variance = max(self._variance, 0.0)
        else:
            self._variance = 0.0

    def _cut_found(self) -> bool:
        n = self.width
        variance = self._variance / n
        log_term = math.log(2.0 * math.log(n) / self.delta)
        n0, s0 = 0, 0.0
        for row in range(len(self._rows) - 1, -1, -1):  # oldest (largest buckets) first
            size = 1 << row
            for bucket_sum, _ in self._rows[row]:
                n0 += size
                s0 += bucket_sum
                n1 = n - n0
                if n1 < self.min_window:
                    return False
                if n0 < self.min_window:
                    continue
                m_inv = 1.0 / n0 + 1.0 / n1
                eps = math.sqrt(2.0 * m_inv * variance * log_term) + 2.0 / 3.0 * m_inv * log_term
                if abs(s0 / n0 - (self._total - s0) / n1) > eps:
                    return True
        return False


@dataclass(frozen=True)
class DriftEvent:
    """A drift found by `DriftMonitor`: of a feature (PSI/KS) or of performance (ADWIN)."""

    ts_ns: int
    kind: Literal["feature", "performance"]
    feature: str | None
    psi: float | None
    ks_p: float | None
    band: str
    message: str


class DriftMonitor:
    """Checks feature drift every `every` rows over the last `window` rows vs the training
    reference, and performance drift (ADWIN) on every error/PnL value.

    A drifting feature gives an event at every check while it drifts (the caller de-duplicates
    alerts if it wants to); `ks_alpha=0` turns the KS alarm off, leaving PSI >= `psi_alert`.
    """

    def __init__(
        self,
        reference: pd.DataFrame,
        *,
        every: int = 500,
        window: int = 2000,
        psi_alert: float = 0.2,
        ks_alpha: float = 0.01,
        adwin_delta: float = 0.002,
        features: Sequence[str] | None = None,
        bins: int = 10,
    ) -> None:
        if not isinstance(reference, pd.DataFrame) or reference.empty:
            raise ValueError("reference must be a non-empty DataFrame of training features")
        for name, value in (("every", every), ("window", window)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= ks_alpha < 1.0:
            raise ValueError(f"ks_alpha must be in [0, 1), got {ks_alpha!r}")
        if not psi_alert > 0:
            raise ValueError(f"psi_alert must be > 0, got {psi_alert!r}")
        self.columns = [str(c) for c in reference.columns]
        self.features = list(self.columns if features is None else features)
        unknown = [f for f in self.features if f not in self.columns]
        if unknown or not self.features:
            raise ValueError(f"features {unknown} are not columns of the reference {self.columns}")
        self._index = np.array([self.columns.index(f) for f in self.features])
        self.every, self.window = every, window
        self.psi_alert, self.ks_alpha = float(psi_alert), float(ks_alpha)
        self._edges, self._ref_shares, self._ref_sorted = [], [], []
        for name in self.features:
            ref = reference[name].to_numpy(dtype=np.float64)
            if np.isnan(ref).all():
                raise ValueError(f"reference column {name!r} has no non-NaN values")
            edges = psi_edges(ref, bins)
            self._edges.append(edges)
            self._ref_shares.append(_shares(_finite_sample(ref, f"reference[{name!r}]"), edges))
            self._ref_sorted.append(np.sort(ref[~np.isnan(ref)]))
        self._buffer = np.full((window, len(self.features)), np.nan)
        self.rows = 0
        self.adwin = ADWIN(delta=adwin_delta)
        self._latest: dict[str, tuple[float, str | None, float, float, bool, int | None, int]] = {
            name: (math.nan, None, math.nan, math.nan, False, None, 0) for name in self.features
        }

    def update(self, ts_ns: int, row: ArrayLike, error: float | None = None) -> list[DriftEvent]:
        """Add one feature row (the reference's columns, in order) and optionally the
        prediction's error (or PnL); returns the drifts found at this row."""
        values = np.asarray(row, dtype=np.float64).ravel()
        if values.size != len(self.columns):
            raise ValueError(
                f"row has {values.size} values, expected {len(self.columns)} ({self.columns})"
            )
        self._buffer[self.rows % self.window] = values[self._index]
        self.rows += 1
        events: list[DriftEvent] = []
        if error is not None:
            before = self.adwin.mean
            if self.adwin.update(error):
                after = self.adwin.mean
                events.append(
                    DriftEvent(
                        int(ts_ns), "performance", None, None, None,
                        "up" if after > before else "down",
                        f"error/PnL mean moved from {before:.6g} to {after:.6g} "
                        f"(ADWIN, window now {self.adwin.width} values)",
                    )
                )  # fmt: skip
        if self.rows % self.every == 0:
            events.extend(self._check(int(ts_ns)))
        return events

    def _check(self, ts_ns: int) -> list[DriftEvent]:
        n = min(self.rows, self.window)
        recent = self._buffer[:n]
        events = []
        for j, name in enumerate(self.features):
            current = recent[:, j]
            value = _psi_from(self._ref_shares[j], current, self._edges[j])
            finite = current[~np.isnan(current)]
            stat, p = math.nan, math.nan
            if finite.size and self._ref_sorted[j].size:
                result = stats.ks_2samp(self._ref_sorted[j], finite)
                stat, p = float(result.statistic), float(result.pvalue)
            band = psi_band(value)
            drifted = value >= self.psi_alert or p < self.ks_alpha
            self._latest[name] = (value, band, stat, p, drifted, ts_ns, n)
            if drifted:
                events.append(
                    DriftEvent(
                        ts_ns, "feature", name, value, p, band,
                        f"feature {name!r} drifted over the last {n} rows: PSI {value:.3f} "
                        f"({band}), KS {stat:.3f} (p={p:.2g})",
                    )
                )  # fmt: skip
        return events

    def report(self) -> pd.DataFrame:
        """The latest check per feature: psi, band, ks_stat, ks_p, drifted, ts_ns, n rows."""
        columns = ["psi", "band", "ks_stat", "ks_p", "drifted", "ts_ns", "n"]
        frame = pd.DataFrame.from_dict(self._latest, orient="index", columns=columns)
        return frame.rename_axis("feature")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    ks_alpha: float = 0.01,
    psi_alert: float = 0.2,
    bins: int = 10,
) -> pd.DataFrame:
    """Per feature of `reference`: psi, band, ks_stat, ks_p, drifted (psi >= psi_alert or
    ks_p < ks_alpha), comparing `current` with `reference`."""
    missing = [c for c in reference.columns if c not in current.columns]
    if missing:
        raise ValueError(f"current lacks the reference's columns {missing}")
    rows = []
    for name in reference.columns:
        value = psi(reference[name], current[name], bins)
        stat, p = ks_test(reference[name], current[name])
        drifted = value >= psi_alert or p < ks_alpha
        rows.append((str(name), value, psi_band(value), stat, p, drifted))
    columns = ["feature", "psi", "band", "ks_stat", "ks_p", "drifted"]
    return pd.DataFrame(rows, columns=columns).set_index("feature")


def window_null(reference: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per feature (rows): the mean and standard deviation over the whole reference, and the
    spread (standard deviation) of both statistics over `window`-row windows slid along it
    (step window / 4): the standard errors that persistence implies."""
    values = reference.to_numpy(dtype=np.float64)
    starts = range(0, len(values) - window + 1, max(1, window // 4))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN
        means = np.array([np.nanmean(values[lo : lo + window], axis=0) for lo in starts])
        stds = np.array([np.nanstd(values[lo : lo + window], axis=0) for lo in starts])
        out = pd.DataFrame({
            "mean": np.nanmean(values, axis=0), "se_mean": np.nanstd(means, axis=0, ddof=1),
            "std": np.nanstd(values, axis=0), "se_std": np.nanstd(stds, axis=0, ddof=1),
        }, index=reference.columns)  # fmt: skip
    return out


def window_z(
    null: pd.DataFrame, current: pd.DataFrame
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """How many calibrated standard errors the window's mean and standard deviation of each
    feature are from the reference's (0 where the reference has no spread)."""
    values = current.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z_mean = (np.nanmean(values, axis=0) - null["mean"].to_numpy()) / null["se_mean"].to_numpy()
        z_std = (np.nanstd(values, axis=0) - null["std"].to_numpy()) / null["se_std"].to_numpy()
    return np.nan_to_num(z_mean, posinf=0.0, neginf=0.0), np.nan_to_num(
        z_std, posinf=0.0, neginf=0.0
    )
