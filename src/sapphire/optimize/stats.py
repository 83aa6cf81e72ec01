"""Overfitting statistics of a study: the deflated Sharpe ratio and the PBO by CSCV.

References:

- D. H. Bailey, M. López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio
  Management 40(5). DSR = PSR(SR0): the probability that the true Sharpe ratio of the
  selected trial exceeds SR0, the Sharpe ratio the best of N skill-less trials is
  expected to reach by luck alone.
- D. H. Bailey, J. Borwein, M. López de Prado, Q. J. Zhu (2015), "The Probability of
  Backtest Overfitting", Journal of Computational Finance 20(4). PBO by combinatorially
  symmetric cross-validation (CSCV).

Sharpe ratios here are per bar (mean / std of bar returns, ddof=1), never annualised;
kurtosis is Pearson's (3 for a normal distribution). A study keeps, per trial, only
the small dict of `return_moments` (a few moments and S block sums), never the return
series, so the coordinator's memory does not grow with the series length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "bar_returns",
    "blocks_from_returns",
    "deflated_sharpe",
    "expected_max_sharpe",
    "overfitting_report",
    "pbo_cscv",
    "probabilistic_sharpe",
    "return_moments",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
# Relative floor under which a variance computed from summed moments is round-off.
_VAR_EPS = 1e-12


def _check_partitions(partitions: int) -> None:
    if isinstance(partitions, bool) or not isinstance(partitions, int | np.integer):
        raise ValueError(f"partitions={partitions!r} is invalid: expected an even integer >= 2")
    if partitions < 2 or partitions % 2:
        raise ValueError(f"partitions={partitions!r} is invalid: expected an even integer >= 2")


def _block_bounds(n: int, partitions: int) -> NDArray[np.int64]:
    """Boundaries of `partitions` contiguous blocks whose sizes differ by at most one."""
    return np.asarray(np.linspace(0, n, partitions + 1).round(), dtype=np.int64)


@njit(cache=True, error_model="numpy")  # x / 0 gives inf / NaN, as NumPy does
def _returns_kernel(eq: NDArray[np.float64], cash: float) -> NDArray[np.float64]:
    out = np.empty_like(eq)
    prev = cash
    for i in range(eq.shape[0]):
        out[i] = eq[i] / prev - 1.0
        prev = eq[i]
    return out


def bar_returns(equity: np.ndarray, initial_cash: float) -> NDArray[np.float64]:
    """Bar returns of an equity curve as the metrics use them: `equity[i] / equity[i-1] - 1`,
    the first relative to `initial_cash`."""
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash={initial_cash!r} is invalid: expected a positive amount")
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1:
        raise ValueError(f"equity must be one-dimensional, got shape {eq.shape}")
    return np.asarray(_returns_kernel(np.ascontiguousarray(eq), float(initial_cash)))


@njit(cache=True)
def _moments_kernel(
    r: NDArray[np.float64], bounds: NDArray[np.int64]
) -> tuple[
    int, float, float, float, float, bool, NDArray[np.float64]
]:  # pragma: no cover - compiled
    """One pass for the sum, range and block sums, one for the centred moments.

    Returns (first non-finite index or -1, mean, m2, m3, m4 (biased central moments),
    constant?, blocks (S, 3)).
    """
    n = r.shape[0]
    s_blocks = bounds.shape[0] - 1
    blocks = np.zeros((max(s_blocks, 0), 3))
    total = 0.0
    lo = np.inf
    hi = -np.inf
    b = 0
    for i in range(n):
        x = r[i]
        if not np.isfinite(x):
            return i, 0.0, 0.0, 0.0, 0.0, True, blocks
        total += x
        lo = min(lo, x)
        hi = max(hi, x)
        if s_blocks > 0:
            while i >= bounds[b + 1]:
                b += 1
            blocks[b, 0] += 1.0
            blocks[b, 1] += x
            blocks[b, 2] += x * x
    if n == 0:
        return -1, 0.0, 0.0, 0.0, 0.0, True, blocks
    mean = total / n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for i in range(n):
        d = r[i] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    return -1, mean, m2 / n, m3 / n, m4 / n, not hi > lo, blocks


def return_moments(returns: np.ndarray, partitions: int = 16) -> dict[str, Any]:
    """Summarise a bar-return series for the overfitting statistics (JSON-ready).

    Returns a dict with the per-bar Sharpe ratio `sr` (mean / std with ddof=1, not
    annualised; 0.0 when the std is 0 or there are fewer than two returns), `skew`
    and Pearson `kurt` (biased sample moments; 0 and 3 when the std is 0), `n`,
    `mean`, `std`, and `blocks`: `partitions` rows `[n, sum, sumsq]`, one per
    contiguous block of the series (sizes differ by at most one bar). `blocks` is
    empty when the series has fewer bars than partitions. Every trial of a study
    uses the same bars, so its blocks line up across trials, as CSCV needs.
    Compiled (Numba): well under a millisecond for a month of minute bars.
    """
    _check_partitions(partitions)
    r = np.ascontiguousarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {r.shape}")
    n = int(r.shape[0])
    bounds = _block_bounds(n, partitions) if n >= partitions else np.zeros(0, dtype=np.int64)
    bad, mean, m2, m3, m4, constant, blocks = _moments_kernel(r, bounds)
    if bad >= 0:
        raise ValueError(f"returns[{bad}] is {r[bad]}: expected finite bar returns")
    # Exactly constant returns have no dispersion (round-off would give a tiny std).
    std = math.sqrt(m2 * n / (n - 1)) if n > 1 and not constant else 0.0
    skew, kurt, sr = 0.0, 3.0, 0.0
    if std > 0 and m2 > 0:
        skew = m3 / m2**1.5
        kurt = m4 / m2**2
        sr = mean / std
    return {
        "n": n,
        "mean": float(mean),
        "std": float(std),
        "sr": float(sr),
        "skew": float(skew),
        "kurt": float(kurt),
        "blocks": blocks.tolist(),
    }


def blocks_from_returns(returns: np.ndarray, partitions: int = 16) -> NDArray[np.float64]:
    """Block moments (N, S, 3) of a returns matrix (T bars, N trials), for `pbo_cscv`."""
    _check_partitions(partitions)
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be a (T, N) matrix, got shape {r.shape}")
    t = int(r.shape[0])
    if t < partitions:
        raise ValueError(f"need at least partitions={partitions} bars, got {t}")
    bad = ~np.isfinite(r)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"returns[{i}, {j}] is {r[i, j]}: expected finite bar returns")
    bounds = _block_bounds(t, partitions)
    sums = np.add.reduceat(r, bounds[:-1], axis=0)  # (S, N)
    sumsq = np.add.reduceat(r * r, bounds[:-1], axis=0)
    sizes = np.broadcast_to(np.diff(bounds)[:, None], sums.shape).astype(np.float64)
    return np.ascontiguousarray(np.stack([sizes, sums, sumsq], axis=-1).transpose(1, 0, 2))


def expected_max_sharpe(var_sr: float, n_trials: int) -> float:
    """E[max SR] of `n_trials` skill-less trials whose Sharpe ratios have variance `var_sr`.

    `sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))` (γ: Euler-Mascheroni);
    0.0 for a single trial (no selection).
    """
    if not (math.isfinite(var_sr) and var_sr >= 0):
        raise ValueError(f"var_sr={var_sr!r} is invalid: expected a variance >= 0")
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials={n_trials!r} is invalid: expected an integer >= 1")
    n = int(n_trials)
    if n == 1 or var_sr == 0:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(var_sr) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(
    sr: float, sr_benchmark: float, n_obs: int, skew: float, kurt: float
) -> float:
    """PSR: the probability that the true per-bar Sharpe exceeds `sr_benchmark`.

    `Φ((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR²))`, Pearson `kurt`.
    """
    for name, value in (("sr", sr), ("sr_benchmark", sr_benchmark), ("skew", skew)):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} is invalid: expected a finite number")
    if not (math.isfinite(kurt) and kurt >= 1):
        raise ValueError(f"kurt={kurt!r} is invalid: expected Pearson kurtosis >= 1")
    if isinstance(n_obs, bool) or int(n_obs) != n_obs or n_obs < 2:
        raise ValueError(f"n_obs={n_obs!r} is invalid: expected an integer >= 2")
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    diff = sr - sr_benchmark
    if denom <= 0:
        # Only for degenerate (two-point) distributions: the estimate has no spread.
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    return _NORMAL.cdf(diff * math.sqrt(int(n_obs) - 1) / math.sqrt(denom))


def deflated_sharpe(
    sr: float, sr_trials: Sequence[float], n_obs: int, skew: float, kurt: float
) -> float:
    """Deflated Sharpe ratio of the selected trial (a probability in [0, 1]).

    `sr` is the selected trial's per-bar Sharpe, `sr_trials` the Sharpe ratios of all
    N trials of the search (the selected one included), `n_obs` the number of bar
    returns behind `sr`, `skew` and Pearson `kurt` those of its returns. DSR is the
    PSR of `sr` against `expected_max_sharpe(var(sr_trials, ddof=1), N)`; with one
    trial it is the PSR against 0.
    """
    trials = np.asarray(sr_trials, dtype=np.float64)
    if trials.ndim != 1 or trials.size == 0:
        raise ValueError("sr_trials must be a non-empty sequence of Sharpe ratios")
    if not np.isfinite(trials).all():
        i = int(np.flatnonzero(~np.isfinite(trials))[0])
        raise ValueError(f"sr_trials[{i}] is {trials[i]}: expected a finite Sharpe ratio")
    var = float(trials.var(ddof=1)) if trials.size > 1 else 0.0
    sr0 = expected_max_sharpe(var, int(trials.size))
    return probabilistic_sharpe(sr, sr0, n_obs, skew, kurt)


@dataclass(frozen=True, eq=False)
class PBOResult:
    """The probability of backtest overfitting and what it was computed from.

    `logits` holds one λ = ln(ω / (1 - ω)) per combination, ω the relative OOS rank
    (rank / (N + 1)) of the trial that was best in-sample; `pbo` is the share of
    λ <= 0. `is_sr` / `oos_sr` are the selected trial's in-sample and out-of-sample
    per-bar Sharpe ratios per combination (for a degradation plot), and
    `prob_oos_loss` the share of combinations whose selected trial lost OOS.
    """

    pbo: float
    logits: NDArray[np.float64]
    n_combinations: int
    is_sr: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    oos_sr: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    prob_oos_loss: float = math.nan


@njit(cache=True)
def _sr_from_sums(n: float, s: float, q: float) -> float:  # pragma: no cover - compiled
    """Per-bar Sharpe (ddof=1) from summed n, sum, sumsq; 0 where the std is 0."""
    if n < 2.0:
        return 0.0
    mean = s / n
    ss = q - s * mean  # sum of squared deviations
    if ss <= _VAR_EPS * abs(q):
        return 0.0
    return mean / math.sqrt(ss / (n - 1.0))


@njit(cache=True)
def _select(
    sr_is: NDArray[np.float64], sr_oos: NDArray[np.float64]
) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """The logit of the in-sample winner's out-of-sample rank, and its IS and OOS Sharpe."""
    n_trials = sr_is.shape[0]
    best = 0
    best_sr = -np.inf
    for j in range(n_trials):
        if sr_is[j] > best_sr:  # the first of equal maxima, as numpy.argmax
            best_sr = sr_is[j]
            best = j
    chosen = sr_oos[best]
    below = 0
    ties = 0
    for j in range(n_trials):
        if sr_oos[j] < chosen:
            below += 1
        elif sr_oos[j] == chosen:
            ties += 1  # includes the chosen trial
    rank = below + (ties + 1) / 2.0  # 1 = worst OOS, N = best OOS
    omega = rank / (n_trials + 1.0)
    return math.log(omega / (1.0 - omega)), best_sr, chosen


@njit(cache=True, parallel=True)
def _cscv_kernel(
    cnt: NDArray[np.float64],
    sm: NDArray[np.float64],
    sq: NDArray[np.float64],
    combos: NDArray[np.int64],
    sign: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Logits and selected IS/OOS Sharpe per combination; cnt/sm/sq are (S, N).

    `combos` are in lexicographic order, so combination c and combination n - 1 - c are
    complements: one pass over the first half computes both halves' Sharpe ratios once and
    serves both combinations (each one's IS set is the other's OOS set).
    """
    n_blocks, n_trials = cnt.shape
    n_comb, half = combos.shape
    tot_n = np.zeros(n_trials)
    tot_s = np.zeros(n_trials)
    tot_q = np.zeros(n_trials)
    for k in range(n_blocks):
        for j in range(n_trials):
            tot_n[j] += cnt[k, j]
            tot_s[j] += sm[k, j]
            tot_q[j] += sq[k, j]
    logits = np.empty(n_comb)
    is_best = np.empty(n_comb)
    oos_best = np.empty(n_comb)
    for c in prange(n_comb // 2):
        n_in = np.zeros(n_trials)
        s_in = np.zeros(n_trials)
        q_in = np.zeros(n_trials)
        for h in range(half):
            k = combos[c, h]
            for j in range(n_trials):
                n_in[j] += cnt[k, j]
                s_in[j] += sm[k, j]
                q_in[j] += sq[k, j]
        sr_a = np.empty(n_trials)  # on the blocks of combination c
        sr_b = np.empty(n_trials)  # on the others: those of combination n - 1 - c
        for j in range(n_trials):
            sr_a[j] = sign * _sr_from_sums(n_in[j], s_in[j], q_in[j])
            sr_b[j] = sign * _sr_from_sums(tot_n[j] - n_in[j], tot_s[j] - s_in[j],
                                           tot_q[j] - q_in[j])  # fmt: skip
        lam, best, chosen = _select(sr_a, sr_b)
        logits[c], is_best[c], oos_best[c] = lam, sign * best, sign * chosen
        other = n_comb - 1 - c
        lam, best, chosen = _select(sr_b, sr_a)
        logits[other], is_best[other], oos_best[other] = lam, sign * best, sign * chosen
    return logits, is_best, oos_best


def pbo_cscv(blocks: np.ndarray, maximize: bool = True) -> PBOResult:
    """Probability of backtest overfitting by CSCV from per-trial block moments.

    `blocks` is (N trials, S blocks, 3) of `[n, sum, sumsq]` (see `return_moments`,
    `blocks_from_returns`). For each of the C(S, S/2) ways to pick S/2 blocks as the
    in-sample set (the rest is out-of-sample) the trial with the best in-sample
    per-bar Sharpe is taken, its OOS Sharpe is ranked among all trials (ties count
    half), ω = rank / (N + 1), λ = ln(ω / (1 - ω)). PBO = share of λ <= 0.
    `maximize=False` selects the lowest Sharpe instead (ranks are mirrored).
    """
    b = np.asarray(blocks, dtype=np.float64)
    if b.ndim != 3 or b.shape[2] != 3:
        raise ValueError(f"blocks must have shape (N trials, S blocks, 3), got {b.shape}")
    n_trials, s = int(b.shape[0]), int(b.shape[1])
    if n_trials < 2:
        raise ValueError(f"PBO needs at least 2 trials, got {n_trials}")
    if s < 2 or s % 2:
        raise ValueError(f"PBO needs an even number of blocks >= 2, got S={s}")
    if s > 24:
        raise ValueError(
            f"S={s} blocks give C(S, S/2) = {math.comb(s, s // 2)} combinations; use <= 24"
        )
    if not np.isfinite(b).all():
        raise ValueError("blocks contain NaN or infinite values")
    if (b[:, :, 0] < 1).any():
        raise ValueError("every block needs at least one observation (n >= 1)")
    sign = 1.0 if maximize else -1.0
    combos = np.array(list(combinations(range(s), s // 2)), dtype=np.int64)
    n_comb = int(combos.shape[0])
    logits, is_best, oos_best = _cscv_kernel(
        np.ascontiguousarray(b[:, :, 0].T),
        np.ascontiguousarray(b[:, :, 1].T),
        np.ascontiguousarray(b[:, :, 2].T),
        combos,
        sign,
    )
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_combinations=n_comb,
        is_sr=is_best,
        oos_sr=oos_best,
        prob_oos_loss=float(np.mean(sign * oos_best < 0.0)),
    )


def overfitting_report(
    trial_moments: Sequence[dict[str, Any] | None], best_index: int
) -> dict[str, float | None]:
    """DSR of the selected trial and PBO of the whole search, from `return_moments` dicts.

    `trial_moments` holds one dict per finished trial (None for a trial without
    returns, which is left out), `best_index` indexes the selected trial in it.
    Returns `n_trials` (trials with moments), `dsr` (None without the selected
    trial's moments or with fewer than 2 returns), `pbo` (None with fewer than 2
    trials or without matching blocks on every trial), `var_sr` (None with fewer
    than 2 trials) and `expected_max_sr` (per-bar SR0 the best trial had to beat).
    """
    if isinstance(best_index, bool) or not isinstance(best_index, int | np.integer):
        raise ValueError(f"best_index={best_index!r} is invalid: expected an integer")
    if not 0 <= best_index < len(trial_moments):
        raise ValueError(f"best_index={best_index} is out of range for {len(trial_moments)} trials")
    kept = [(i, m) for i, m in enumerate(trial_moments) if m is not None]
    out: dict[str, float | None] = {
        "n_trials": len(kept),
        "dsr": None,
        "pbo": None,
        "var_sr": None,
        "expected_max_sr": None,
    }
    if not kept:
        return out
    srs = np.array([float(m["sr"]) for _, m in kept])
    finite = np.isfinite(srs)
    if not finite.all():
        raise ValueError(f"trial {kept[int(np.flatnonzero(~finite)[0])][0]} has a non-finite sr")
    var = float(srs.var(ddof=1)) if srs.size > 1 else None
    out["var_sr"] = var
    sr0 = expected_max_sharpe(var or 0.0, int(srs.size))
    out["expected_max_sr"] = sr0
    best = trial_moments[best_index]
    if best is not None and int(best["n"]) >= 2:
        out["dsr"] = probabilistic_sharpe(
            float(best["sr"]),
            sr0,
            int(best["n"]),
            float(best["skew"]),
            max(float(best["kurt"]), 1.0),
        )
    blocks = [m.get("blocks") or [] for _, m in kept]
    s = len(blocks[0])
    if len(kept) >= 2 and s >= 2 and s % 2 == 0 and all(len(x) == s for x in blocks):
        arr = np.asarray(blocks, dtype=np.float64)
        if np.array_equal(arr[:, :, 0], np.broadcast_to(arr[:1, :, 0], arr[:, :, 0].shape)):
            out["pbo"] = pbo_cscv(arr).pbo
    return out
