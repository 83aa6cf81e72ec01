"""Deflated Sharpe ratio and PBO (CSCV): formulas, constructed cases, and the issue's
validation on 1,000 random-signal strategies over real data and on a planted edge."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest, Bars, Param, Signals, Strategy
from sapphire.backtest.runner import bars_from_frame
from sapphire.optimize.stats import (
    bar_returns,
    blocks_from_returns,
    deflated_sharpe,
    expected_max_sharpe,
    overfitting_report,
    pbo_cscv,
    probabilistic_sharpe,
    return_moments,
)

PHI = NormalDist().cdf


# ---------------------------------------------------------------- return_moments


def test_return_moments_match_direct_formulas() -> None:
    rng = np.random.default_rng(1)
    r = rng.standard_t(5, size=1003) * 0.01 + 0.001
    m = return_moments(r, partitions=16)
    d = r - r.mean()
    assert m["n"] == 1003
    assert m["sr"] == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-10)
    assert m["skew"] == pytest.approx(np.mean(d**3) / np.mean(d**2) ** 1.5, rel=1e-10)
    assert m["kurt"] == pytest.approx(np.mean(d**4) / np.mean(d**2) ** 2, rel=1e-10)
    blocks = np.array(m["blocks"])
    assert blocks.shape == (16, 3)
    assert blocks[:, 0].sum() == 1003
    assert blocks[:, 0].max() - blocks[:, 0].min() <= 1
    assert blocks[:, 1].sum() == pytest.approx(r.sum(), rel=1e-12)
    assert blocks[:, 2].sum() == pytest.approx((r * r).sum(), rel=1e-12)
    # contiguous: the first block is exactly the first n_0 returns
    n0 = int(blocks[0, 0])
    assert blocks[0, 1] == pytest.approx(r[:n0].sum(), rel=1e-12)


def test_return_moments_normal_kurtosis_is_pearson() -> None:
    r = np.random.default_rng(2).normal(size=200_000)
    m = return_moments(r)
    assert m["kurt"] == pytest.approx(3.0, abs=0.05)
    assert m["skew"] == pytest.approx(0.0, abs=0.02)


def test_return_moments_constant_and_short_series() -> None:
    m = return_moments(np.full(100, 0.001))
    assert m["sr"] == 0.0 and m["skew"] == 0.0 and m["kurt"] == 3.0
    short = return_moments(np.array([0.01, -0.01, 0.02]), partitions=16)
    assert short["blocks"] == []
    assert short["n"] == 3
    empty = return_moments(np.array([]))
    assert empty["n"] == 0 and empty["sr"] == 0.0


@pytest.mark.parametrize("bad", [3, 0, 1, -2, 2.0, True])
def test_return_moments_rejects_bad_partitions(bad: object) -> None:
    with pytest.raises(ValueError, match="partitions"):
        return_moments(np.zeros(100), partitions=bad)  # type: ignore[arg-type]


def test_return_moments_rejects_non_finite_returns() -> None:
    r = np.zeros(50)
    r[7] = np.inf
    with pytest.raises(ValueError, match=r"returns\[7\] is inf"):
        return_moments(r)
    with pytest.raises(ValueError, match="one-dimensional"):
        return_moments(np.zeros((5, 5)))


def test_bar_returns_follow_the_metrics_convention() -> None:
    eq = np.array([10_100.0, 10_000.0, 10_500.0])
    np.testing.assert_allclose(bar_returns(eq, 10_000.0), [0.01, -0.1 / 10.1, 0.05])
    with pytest.raises(ValueError, match="initial_cash"):
        bar_returns(eq, 0.0)


def test_blocks_from_returns_matches_return_moments() -> None:
    r = np.random.default_rng(3).normal(size=(999, 4))
    b = blocks_from_returns(r, 8)
    assert b.shape == (4, 8, 3)
    for j in range(4):
        np.testing.assert_allclose(b[j], np.array(return_moments(r[:, j], 8)["blocks"]))
    with pytest.raises(ValueError, match="at least partitions"):
        blocks_from_returns(r[:5], 8)
    with pytest.raises(ValueError, match=r"\(T, N\) matrix"):
        blocks_from_returns(r[:, 0], 8)


# ------------------------------------------------------------ DSR (the paper's numbers)


def test_expected_max_sharpe_paper_example() -> None:
    # Bailey & López de Prado (2014), numerical example: N = 100 trials, variance of the
    # annualised trial Sharpes 1/2 over 250 days a year -> SR0 ≈ 0.1132 per day.
    assert expected_max_sharpe(0.5 / 250, 100) == pytest.approx(0.1132, abs=5e-5)
    assert expected_max_sharpe(0.5 / 250, 1) == 0.0
    assert expected_max_sharpe(0.0, 100) == 0.0
    values = [expected_max_sharpe(1.0, n) for n in (2, 10, 100, 1000, 10_000)]
    assert values == sorted(values)


def test_deflated_sharpe_paper_example() -> None:
    # Same example: annualised SR 2.5 over T = 1250 daily returns, skew -3, kurtosis 10
    # -> DSR ≈ 0.9004 (the paper's figure).
    var = 0.5 / 250
    a = math.sqrt(var * 99 / 100)  # 50 trials at +a, 50 at -a: sample variance = var
    trials = [a] * 50 + [-a] * 50
    assert np.var(trials, ddof=1) == pytest.approx(var, rel=1e-12)
    dsr = deflated_sharpe(2.5 / math.sqrt(250), trials, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    # by hand from the closed form
    sr, sr0 = 2.5 / math.sqrt(250), 0.11317200186513214
    z = (sr - sr0) * math.sqrt(1249) / math.sqrt(1 + 3 * sr + 9 / 4 * sr * sr)
    assert dsr == pytest.approx(PHI(z), abs=1e-9)


def test_deflated_sharpe_penalises_more_trials_and_fat_tails() -> None:
    rng = np.random.default_rng(4)
    few, many = rng.normal(0, 0.02, 10), rng.normal(0, 0.02, 1000)
    few = few * 0.02 / few.std(ddof=1)
    many = many * 0.02 / many.std(ddof=1)
    assert deflated_sharpe(0.08, many, 2000, 0, 3) < deflated_sharpe(0.08, few, 2000, 0, 3)
    assert deflated_sharpe(0.08, few, 2000, -2, 12) < deflated_sharpe(0.08, few, 2000, 0, 3)
    # one trial: DSR is the PSR against zero (normal returns closed form)
    psr = deflated_sharpe(0.05, [0.05], 500, 0.0, 3.0)
    assert psr == pytest.approx(PHI(0.05 * math.sqrt(499) / math.sqrt(1 + 0.05**2 / 2)))


def test_probabilistic_sharpe_and_dsr_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ValueError, match="kurt"):
        probabilistic_sharpe(0.1, 0.0, 100, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"sr_trials\[1\] is nan"):
        deflated_sharpe(0.1, [0.1, math.nan], 100, 0.0, 3.0)
    with pytest.raises(ValueError, match="non-empty"):
        deflated_sharpe(0.1, [], 100, 0.0, 3.0)
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(1.0, 0)


# --------------------------------------------------------------- PBO, constructed cases


def test_pbo_is_zero_when_one_trial_dominates_every_block() -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.01, size=(3200, 40))
    r[:, 17] += 0.004  # far better everywhere
    res = pbo_cscv(blocks_from_returns(r, 16))
    assert res.n_combinations == 12_870
    assert res.logits.shape == (12_870,)
    assert res.pbo == 0.0
    # the dominating trial is the best OOS too: ω = N / (N + 1)
    assert np.allclose(res.logits, math.log(40))
    assert (res.oos_sr > 0).all() and res.prob_oos_loss == 0.0


def test_pbo_matches_a_plain_evaluation_of_every_combination() -> None:
    """The kernel pairs each combination with its complement; a direct loop over the
    combinations must give the same logits and selected Sharpe ratios."""
    from itertools import combinations

    rng = np.random.default_rng(9)
    r = rng.normal(0, 0.01, size=(1200, 25))
    r[:, 4] += 0.0008
    blocks = blocks_from_returns(r, 8)
    res = pbo_cscv(blocks)

    def sharpe(b: np.ndarray) -> np.ndarray:
        n, s1, s2 = b[:, 0], b[:, 1], b[:, 2]
        mean = s1 / n
        return mean / np.sqrt((s2 - s1 * mean) / (n - 1))

    expected = []
    for combo in combinations(range(8), 4):
        inside = np.zeros(8, dtype=bool)
        inside[list(combo)] = True
        sr_in = sharpe(blocks[:, inside].sum(axis=1))
        sr_out = sharpe(blocks[:, ~inside].sum(axis=1))
        best = int(np.argmax(sr_in))
        rank = (sr_out < sr_out[best]).sum() + ((sr_out == sr_out[best]).sum() + 1) / 2
        omega = rank / (len(sr_out) + 1)
        expected.append((math.log(omega / (1 - omega)), sr_in[best], sr_out[best]))
    logits, is_sr, oos_sr = map(np.array, zip(*expected, strict=True))
    np.testing.assert_allclose(res.logits, logits, rtol=1e-12)
    np.testing.assert_allclose(res.is_sr, is_sr, rtol=1e-9)
    np.testing.assert_allclose(res.oos_sr, oos_sr, rtol=1e-9)


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample() -> None:
    # two trials, two blocks: each is good exactly where the other is bad
    blocks = np.array(
        [
            [[100, 1.0, 0.2], [100, -1.0, 0.2]],
            [[100, -1.0, 0.2], [100, 1.0, 0.2]],
        ]
    )
    res = pbo_cscv(blocks)
    assert res.n_combinations == 2
    assert res.pbo == 1.0
    assert np.allclose(res.logits, math.log((1 / 3) / (2 / 3)))


def test_pbo_minimize_mirrors_maximize() -> None:
    r = np.random.default_rng(6).normal(0, 0.01, size=(800, 12))
    r[:, 3] += 0.002
    up = pbo_cscv(blocks_from_returns(r, 8), maximize=True)
    down = pbo_cscv(blocks_from_returns(-r, 8), maximize=False)
    assert up.pbo == down.pbo == 0.0
    np.testing.assert_allclose(up.logits, down.logits)
    np.testing.assert_allclose(up.is_sr, -down.is_sr)


def test_pbo_under_the_null_averages_one_half() -> None:
    # iid noise trials: the in-sample winner is an OOS coin flip. One study's PBO is
    # noisy (the combinations share data), so average over independent studies.
    values = []
    for seed in range(24):
        r = np.random.default_rng(100 + seed).normal(0, 0.01, size=(1600, 50))
        values.append(pbo_cscv(blocks_from_returns(r, 16)).pbo)
    assert 0.4 < float(np.mean(values)) < 0.6


def test_pbo_constant_trials_are_ties_not_errors() -> None:
    r = np.zeros((160, 5))  # trials that never trade
    res = pbo_cscv(blocks_from_returns(r, 16))
    assert res.pbo == 1.0  # every ω is the median: λ = 0 counts as overfit
    assert np.allclose(res.logits, 0.0)


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 16, 3), "at least 2 trials"),
        ((5, 15, 3), "even number of blocks"),
        ((5, 26, 3), "combinations"),
        ((5, 16), "shape"),
        ((5, 16, 2), "shape"),
    ],
)
def test_pbo_rejects_bad_blocks(shape: tuple[int, ...], match: str) -> None:
    blocks = np.ones(shape)
    with pytest.raises(ValueError, match=match):
        pbo_cscv(blocks)


def test_pbo_rejects_empty_blocks_and_nan() -> None:
    b = blocks_from_returns(np.random.default_rng(0).normal(size=(64, 3)), 4)
    b[1, 2, 0] = 0
    with pytest.raises(ValueError, match="at least one observation"):
        pbo_cscv(b)
    b[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pbo_cscv(b)


# --------------------------------------------------------------- overfitting_report


def test_overfitting_report_keys_and_values() -> None:
    rng = np.random.default_rng(7)
    r = rng.normal(0, 0.01, size=(1600, 20))
    moments = [return_moments(r[:, j]) for j in range(20)]
    srs = [m["sr"] for m in moments]
    best = int(np.argmax(srs))
    rep = overfitting_report(moments, best)
    assert set(rep) == {"n_trials", "dsr", "pbo", "var_sr", "expected_max_sr"}
    assert rep["n_trials"] == 20
    assert rep["var_sr"] == pytest.approx(np.var(srs, ddof=1))
    b = moments[best]
    assert rep["dsr"] == pytest.approx(
        deflated_sharpe(b["sr"], srs, b["n"], b["skew"], b["kurt"]), rel=1e-12
    )
    assert rep["pbo"] == pytest.approx(pbo_cscv(blocks_from_returns(r, 16)).pbo)


def test_overfitting_report_edge_cases() -> None:
    rng = np.random.default_rng(8)
    one = [return_moments(rng.normal(0.001, 0.01, 500))]
    rep = overfitting_report(one, 0)
    assert rep["n_trials"] == 1 and rep["pbo"] is None and rep["var_sr"] is None
    assert rep["expected_max_sr"] == 0.0 and rep["dsr"] is not None and 0 < rep["dsr"] < 1
    # trials without moments are left out; mismatched blocks -> no PBO
    mixed = [*one, None, return_moments(rng.normal(0, 0.01, 400))]
    rep = overfitting_report(mixed, 2)
    assert rep["n_trials"] == 2 and rep["pbo"] is None and rep["dsr"] is not None
    assert overfitting_report(mixed, 1)["dsr"] is None
    with pytest.raises(ValueError, match="out of range"):
        overfitting_report(mixed, 3)
    assert overfitting_report([None], 0)["n_trials"] == 0


# ------------------------------------------------- validation (the acceptance)


class RandomSignals(Strategy):
    """Skill-less: random long/short entries and exits, drawn from `seed`."""

    seed = Param(0, low=0)
    rate = Param(0.01, low=0.0, high=1.0)

    def signals(self, bars: Bars) -> Signals:
        draws = np.random.default_rng(self.seed).random((4, len(bars))) < self.rate
        return Signals(
            enter_long=draws[0], exit_long=draws[1], enter_short=draws[2], exit_short=draws[3]
        )


def _moments(bars: Bars, strategy: type[Strategy], **params: object) -> dict[str, object]:
    cash = 10_000.0
    result = Backtest(bars, strategy, cash=cash, size=1.0, size_mode="equity", **params).run()
    return return_moments(bar_returns(result.equity.to_numpy(), cash))


@pytest.mark.slow
def test_random_signals_on_real_data_are_not_significant(btc_df: pd.DataFrame) -> None:
    bars = bars_from_frame(btc_df)
    moments = [_moments(bars, RandomSignals, seed=k) for k in range(1000)]
    srs = np.array([m["sr"] for m in moments])
    best = int(np.argmax(srs))
    rep = overfitting_report(moments, best)
    assert rep["n_trials"] == 1000
    assert srs[best] > 0  # the selected trial looks good in-sample ...
    assert rep["dsr"] is not None and rep["dsr"] < 0.95  # ... but is not significant
    assert rep["pbo"] is not None and 0.3 < rep["pbo"] < 0.7


def planted_edge_bars(n: int = 40_000, seed: int = 0, edge: float = 8e-5) -> Bars:
    """Synthetic bars whose next return depends on a hidden AR(1) state `h`.

    `r[t+1] = edge * h[t] + 0.001 * noise`; the volume column carries `exp(h + noise)`,
    a noisy reading of the state that a strategy can use at bar t.
    """
    rng = np.random.default_rng(seed)
    phi = 0.5
    shocks = rng.normal(size=n) * math.sqrt(1 - phi * phi)
    h = np.empty(n)
    h[0] = 0.0
    for i in range(1, n):
        h[i] = phi * h[i - 1] + shocks[i]
    r = np.zeros(n)
    r[1:] = edge * h[:-1] + 0.001 * rng.normal(size=n - 1)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    time = 1_600_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 60_000_000_000
    return Bars(
        time=time,
        open=open_,
        high=np.maximum(open_, close) * 1.0005,
        low=np.minimum(open_, close) * 0.9995,
        close=close,
        volume=np.exp(h + rng.normal(size=n)),
        timeframe_ns=60_000_000_000,
    )


class StateReader(Strategy):
    """Long when the (lagged) log volume is above `threshold`, short below -`threshold`."""

    lag = Param(0, low=0, high=100)
    threshold = Param(0.0, low=0.0, high=5.0)

    def signals(self, bars: Bars) -> Signals:
        level = np.log(bars.volume)
        x = np.full_like(level, np.nan)
        x[self.lag :] = level[: len(level) - self.lag]
        with np.errstate(invalid="ignore"):
            up, down = x > self.threshold, x < -self.threshold
        return Signals(enter_long=up, exit_long=~up, enter_short=down, exit_short=~down)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_edge_is_significant_and_not_overfit(seed: int) -> None:
    # 50 parameter variations: the right lag reads the state, longer lags decay into noise.
    bars = planted_edge_bars(seed=seed)
    grid = [(lag, th) for lag in range(10) for th in (0.0, 0.5, 1.0, 1.5, 2.0)]
    moments = [_moments(bars, StateReader, lag=lag, threshold=th) for lag, th in grid]
    srs = np.array([m["sr"] for m in moments])
    best = int(np.argmax(srs))
    assert grid[best][0] == 0
    rep = overfitting_report(moments, best)
    assert rep["dsr"] is not None and rep["dsr"] > 0.95
    assert rep["pbo"] is not None and rep["pbo"] < 0.2
