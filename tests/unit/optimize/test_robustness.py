"""Monte Carlo on the trade sequence, the parameter-stability grid and their figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from sapphire.optimize.robustness import (
    BATCH_RUNS,
    monte_carlo,
    monte_carlo_figure,
    stability_figure,
    stability_grid,
    stability_score,
)


def _pnl(n: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(5.0, 100.0, n)


def test_original_order_matches_a_hand_computed_drawdown() -> None:
    mc = monte_carlo(np.array([100.0, -300.0, 50.0]), 1_000.0, runs=10, seed=0)
    # equity 1100, 800, 850: peak 1100 -> 800 is -27.27 %; total -150 / 1000
    assert mc.original["max_drawdown"] == pytest.approx(800 / 1100 - 1)
    assert mc.original["total_return"] == pytest.approx(-0.15)


def test_initial_cash_is_the_first_peak() -> None:
    mc = monte_carlo(np.array([-100.0, 50.0]), 1_000.0, runs=4, seed=0)
    assert mc.original["max_drawdown"] == pytest.approx(-0.1)


def test_shuffle_keeps_the_final_return_and_varies_the_drawdown() -> None:
    pnl = _pnl()
    mc = monte_carlo(pnl, 10_000.0, runs=1000, method="shuffle", seed=3)
    assert mc.max_drawdown.shape == mc.total_return.shape == (1000,)
    np.testing.assert_allclose(mc.total_return, pnl.sum() / 10_000.0, rtol=1e-9)
    assert mc.max_drawdown.std() > 0
    assert (mc.max_drawdown <= 0).all()
    s = mc.summary["max_drawdown"]
    assert s["p5"] <= s["p50"] <= s["p95"] <= 0
    assert s["p50"] == pytest.approx(np.median(mc.max_drawdown))
    assert mc.summary["total_return"]["prob_loss"] == float(pnl.sum() < 0)


def test_bootstrap_varies_the_return_around_the_original() -> None:
    pnl = _pnl(400, seed=1)
    mc = monte_carlo(pnl, 10_000.0, runs=2000, method="bootstrap", seed=4)
    assert mc.total_return.std() > 0
    # each run's total is a sum of n draws: mean = original, sd = sqrt(n) * sd(pnl) / cash
    se = np.sqrt(len(pnl)) * pnl.std() / 10_000.0 / np.sqrt(2000)
    assert abs(mc.total_return.mean() - pnl.sum() / 10_000.0) < 5 * se
    assert mc.total_return.std() == pytest.approx(np.sqrt(len(pnl)) * pnl.std() / 10_000.0, rel=0.1)


def test_only_winning_trades_never_draw_down() -> None:
    mc = monte_carlo(np.array([10.0, 20.0, 5.0]), 100.0, runs=50, method="shuffle", seed=0)
    assert (mc.max_drawdown == 0).all()


def test_seeded_runs_are_reproducible_and_batch_independent() -> None:
    pnl = _pnl()
    runs = BATCH_RUNS * 2 + 17
    a = monte_carlo(pnl, 10_000.0, runs=runs, method="bootstrap", seed=11)
    b = monte_carlo(pnl, 10_000.0, runs=runs, method="bootstrap", seed=11)
    c = monte_carlo(pnl, 10_000.0, runs=runs, method="bootstrap", seed=12)
    assert a.max_drawdown.shape == (runs,)
    np.testing.assert_array_equal(a.total_return, b.total_return)
    assert not np.array_equal(a.total_return, c.total_return)
    assert a.to_json()["summary"] == b.to_json()["summary"]


class _ReversingExecutor:
    """Runs the items in reverse order, yields them in input order (as the contract says)."""

    workers = 2

    def __init__(self) -> None:
        self.calls = 0

    def map(self, fn, context, items):  # type: ignore[no-untyped-def]
        self.calls += 1
        out = [fn(context, item) for item in reversed(list(items))]
        return iter(out[::-1])


def test_executor_gives_the_same_result_as_inline() -> None:
    pnl = _pnl()
    ex = _ReversingExecutor()
    inline = monte_carlo(pnl, 10_000.0, runs=600, method="shuffle", seed=5)
    mapped = monte_carlo(pnl, 10_000.0, runs=600, method="shuffle", seed=5, executor=ex)
    assert ex.calls == 1
    np.testing.assert_array_equal(inline.max_drawdown, mapped.max_drawdown)


def test_local_process_pool_gives_the_same_result_as_inline() -> None:
    from sapphire.optimize.executor import LocalExecutor

    pnl = _pnl()
    inline = monte_carlo(pnl, 10_000.0, runs=1000, method="bootstrap", seed=6)
    with LocalExecutor(jobs=2) as ex:
        pooled = monte_carlo(pnl, 10_000.0, runs=1000, method="bootstrap", seed=6, executor=ex)
    np.testing.assert_array_equal(inline.max_drawdown, pooled.max_drawdown)
    np.testing.assert_array_equal(inline.total_return, pooled.total_return)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "jackknife"}, "method='jackknife'"),
        ({"runs": 0}, "runs=0"),
        ({"runs": 2.5}, "runs=2.5"),
        ({"cash": 0.0}, "cash=0.0"),
        ({"cash": float("nan")}, "cash=nan"),
    ],
)
def test_monte_carlo_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"cash": 1_000.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        monte_carlo(_pnl(10), **args)  # type: ignore[arg-type]


def test_monte_carlo_rejects_bad_pnl() -> None:
    with pytest.raises(ValueError, match="at least one trade"):
        monte_carlo(np.array([]), 1_000.0)
    with pytest.raises(ValueError, match=r"pnl\[1\] is nan"):
        monte_carlo(np.array([1.0, np.nan]), 1_000.0)


# ---------------------------------------------------------------------- stability


def _trials() -> pd.DataFrame:
    rows = []
    for fast in (5, 10, 15):
        for slow in (20, 40):
            for rep in range(2):
                rows.append(
                    {"number": len(rows), "state": "complete", "params_fast": fast,
                     "params_slow": slow, "value": fast + slow / 10 + rep}
                )  # fmt: skip
    rows.append({"number": 99, "state": "failed", "params_fast": 5, "params_slow": 20,
                 "value": 1e9})  # fmt: skip
    rows.append({"number": 98, "state": "complete", "params_fast": 5, "params_slow": 20,
                 "value": np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_stability_grid_is_the_pivot_of_mean_values() -> None:
    grid = stability_grid(_trials(), "fast", "slow")
    assert list(grid.columns) == [5, 10, 15]
    assert list(grid.index) == [20, 40]
    assert grid.columns.name == "fast" and grid.index.name == "slow"
    # mean of rep 0 and rep 1; failed and NaN trials left out
    assert grid.loc[20, 5] == pytest.approx(5 + 2 + 0.5)
    assert grid.loc[40, 15] == pytest.approx(15 + 4 + 0.5)


def test_stability_grid_bins_many_float_values() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.uniform(0, 1, 500),
            "b": rng.choice(["x", "y"], 500),
            "value": rng.normal(size=500),
        }
    )
    grid = stability_grid(frame, "a", "b", bins=5)
    assert grid.shape == (2, 5)
    assert list(grid.index) == ["x", "y"]
    np.testing.assert_allclose(list(grid.columns), [0.1, 0.3, 0.5, 0.7, 0.9], atol=0.01)
    lo = frame[(frame["b"] == "x") & (frame["a"] < grid.columns[0] + 0.1)]["value"].mean()
    assert grid.iloc[0, 0] == pytest.approx(lo)


def test_stability_grid_errors_and_empty() -> None:
    with pytest.raises(ValueError, match="no column 'nope'"):
        stability_grid(_trials(), "nope", "slow")
    with pytest.raises(ValueError, match="same parameter"):
        stability_grid(_trials(), "fast", "fast")
    with pytest.raises(ValueError, match="bins=0"):
        stability_grid(_trials(), "fast", "slow", bins=0)
    empty = stability_grid(_trials().assign(value=np.nan), "fast", "slow")
    assert empty.empty
    assert stability_score(empty) is None


def test_stability_score_plateau_spike_and_direction() -> None:
    plateau = pd.DataFrame(np.full((3, 3), 2.0))
    plateau.iloc[1, 1] = 2.2
    assert stability_score(plateau) == pytest.approx(1 - 0.2 / 2.2)
    spike = pd.DataFrame(np.zeros((3, 3)))
    spike.iloc[0, 2] = 5.0
    assert stability_score(spike) == 0.0
    # minimising: the best is the smallest cell
    low = pd.DataFrame([[1.0, 1.5], [4.0, 9.0]])
    assert stability_score(low, maximize=False) == 0.0  # neighbours 4.83 vs best 1: > 100 %
    assert stability_score(pd.DataFrame([[3.0]])) is None


def test_figures_are_plotly_figures() -> None:
    a = monte_carlo(_pnl(), 10_000.0, runs=300, method="shuffle", seed=0)
    b = monte_carlo(_pnl(), 10_000.0, runs=300, method="bootstrap", seed=0)
    fig = monte_carlo_figure(a, b)
    assert isinstance(fig, go.Figure)
    hists = [t for t in fig.data if t.type == "histogram"]
    assert len(hists) == 4
    np.testing.assert_array_equal(hists[0].x, a.max_drawdown)
    with pytest.raises(ValueError, match="at least one"):
        monte_carlo_figure()
    grid = stability_grid(_trials(), "fast", "slow")
    heat = stability_figure(grid)
    assert heat.data[0].type == "heatmap"
    np.testing.assert_allclose(np.asarray(heat.data[0].z, dtype=float), grid.to_numpy())
    best = heat.data[1]
    assert (best.x[0], best.y[0]) == ("15", "40")
    assert "fast" in heat.to_html(include_plotlyjs=False)
