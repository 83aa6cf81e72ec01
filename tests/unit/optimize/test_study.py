"""Studies: reproducibility, resume, infeasible trials, Pareto fronts, grid, pruning."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest import BacktestResult
from sapphire.backtest.metrics import is_ruined
from sapphire.optimize.study import list_studies, load_study, optimize, resume
from sapphire.optimize.trial import evaluate_trial
from sapphire.strategy.base import Bars, Param, Signals, Strategy

COMMON: dict[str, Any] = {"progress": False, "size": 0.95, "size_mode": "equity", "fee": 0.0005}
SPACE = {"fast": (2, 40), "slow": (10, 160)}


@pytest.fixture(scope="module")
def frame(btc_df: pd.DataFrame) -> pd.DataFrame:
    return btc_df.iloc[:6000].reset_index(drop=True)


class Exploding(Strategy):
    """Raises for one parameter value: the trial fails, the study goes on."""

    window = Param(5, low=2, high=20)

    def signals(self, bars: Bars) -> Signals:
        if self.window % 2:
            raise RuntimeError(f"odd window {self.window}")
        up = np.zeros(len(bars), dtype=bool)
        up[:: self.window * 50] = True
        return Signals(enter_long=up, exit_long=np.roll(up, self.window))


class EvenOnly(Strategy):
    """Its check() refuses odd windows, a rule no declared constraint expresses."""

    window = Param(6, low=2, high=40)

    def check(self) -> None:
        if self.window % 2:
            raise ValueError(f"even_only: window ({self.window}) must be even")

    def signals(self, bars: Bars) -> Signals:
        up = np.zeros(len(bars), dtype=bool)
        up[:: self.window * 50] = True
        return Signals(enter_long=up, exit_long=np.roll(up, self.window))


_INTERRUPT = {"after": -1, "calls": 0}


def interrupting(result: BacktestResult) -> bool:
    """A constraint that presses Ctrl-C once, after a number of calls."""
    _INTERRUPT["calls"] += 1
    if _INTERRUPT["calls"] == _INTERRUPT["after"]:
        raise KeyboardInterrupt
    return True


def test_seeded_studies_are_reproducible(frame: pd.DataFrame) -> None:
    kw: dict[str, Any] = {"trials": 24, "sampler": "tpe", "seed": 7, "space": SPACE, **COMMON}
    a = optimize(frame, "sma_cross", study="a", **kw)
    b = optimize(frame, "sma_cross", study="b", **kw)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.best_value == b.best_value and a.best_params == b.best_params
    c = optimize(frame, "sma_cross", study="c", **{**kw, "seed": 8})
    assert [t.params for t in c.trials] != [t.params for t in a.trials]
    assert a.n_trials == 24 and [t.number for t in a.trials] == list(range(24))
    assert a.dsr is not None and 0.0 <= a.dsr <= 1.0
    assert a.pbo is not None and 0.0 <= a.pbo <= 1.0


def test_best_trial_is_the_best_complete_trial(frame: pd.DataFrame) -> None:
    r = optimize(frame, "sma_cross", trials=20, sampler="random", seed=1, space=SPACE, **COMMON)
    done = [t for t in r.trials if t.state == "complete"]
    assert r.best_value == max(t.values[0] for t in done if t.values)
    assert r.best_trial is not None and r.best_trial.params == r.best_params
    assert r.best_trial.metrics["sharpe"] == r.best_value
    assert r.best_trial.moments is not None and len(r.best_trial.moments["blocks"]) == 16
    frame_ = r.trials_frame()
    assert list(frame_["number"]) == list(range(20))
    assert {"state", "params_fast", "params_slow", "value", "sharpe"} <= set(frame_.columns)
    loaded = load_study(r.name)
    assert loaded.best_value == r.best_value and loaded.dsr == r.dsr and loaded.pbo == r.pbo
    assert [t.params for t in loaded.trials] == [t.params for t in r.trials]
    js = r.to_json()
    assert {"study", "n_trials", "best_params", "best_value", "dsr", "pbo", "elapsed_s"} <= set(js)


def test_resume_continues_numbering_and_reaches_the_total(frame: pd.DataFrame) -> None:
    first = optimize(frame, "sma_cross", trials=10, sampler="tpe", seed=3, study="r",
                     space=SPACE, **COMMON)  # fmt: skip
    assert first.n_trials == 10
    again = resume("r", trials=25, progress=False, data=frame)
    assert again.n_trials == 25
    assert [t.number for t in again.trials] == list(range(25))
    assert [t.params for t in again.trials[:10]] == [t.params for t in first.trials]
    # the re-seeded sampler does not replay the first trials
    assert [t.params for t in again.trials[10:20]] != [t.params for t in first.trials]
    assert load_study("r").n_trials == 25
    assert resume("r", progress=False, data=frame).n_trials == 25  # already at its target
    listed = {s["name"]: s for s in list_studies()}
    assert listed["r"]["n_trials"] == 25 and listed["r"]["target_trials"] == 25


def test_ctrl_c_keeps_finished_trials_and_resume_completes(
    frame: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    _INTERRUPT.update(after=13, calls=0)
    with pytest.raises(KeyboardInterrupt):
        optimize(frame, "sma_cross", trials=30, sampler="random", seed=2, study="cc",
                 constraints=[interrupting], space=SPACE, **COMMON)  # fmt: skip
    assert "sapphire optimize resume cc" in capsys.readouterr().err
    saved = load_study("cc")
    assert 0 < saved.n_trials < 30
    assert [t.number for t in saved.trials] == list(range(saved.n_trials))
    _INTERRUPT.update(after=-1)
    done = resume("cc", progress=False, data=frame)
    assert done.n_trials == 30 and [t.number for t in done.trials] == list(range(30))


def test_same_name_other_config_is_refused_same_config_continues(frame: pd.DataFrame) -> None:
    kw: dict[str, Any] = {"sampler": "random", "seed": 1, "space": SPACE, **COMMON}
    optimize(frame, "sma_cross", trials=5, study="dup", **kw)
    with pytest.raises(ValueError, match=r"already exists with a different configuration.*sampler"):
        optimize(frame, "sma_cross", trials=5, study="dup", **{**kw, "sampler": "tpe"})
    with pytest.raises(ValueError, match="sapphire optimize resume dup"):
        optimize(frame, "sma_cross", trials=5, study="dup", **{**kw, "fee": 0.001})
    assert optimize(frame, "sma_cross", trials=8, study="dup", **kw).n_trials == 8
    with pytest.raises(ValueError, match=r"no study named 'nope'.*known: dup"):
        load_study("nope")


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_a_default_sma_cross_study_samples_only_sets_its_constraints_allow(
    frame: pd.DataFrame, sampler: str
) -> None:
    # the declared fast < slow narrows slow's range to (fast, 1000]: no trial is refused
    r = optimize(frame, "sma_cross", trials=40, sampler=sampler, seed=5, **COMMON)
    assert r.counts["infeasible"] == 0, [t.error for t in r.trials if t.state == "infeasible"]
    assert all(t.params["fast"] < t.params["slow"] for t in r.trials)
    assert r.config["space_size"] == 2 * sum(1000 - f for f in range(2, 201))


def test_infeasible_trials_check_and_min_trades(frame: pd.DataFrame) -> None:
    r = optimize(frame, EvenOnly, trials=30, sampler="random", seed=5, min_trades=0, **COMMON)
    refused = [t for t in r.trials if t.state == "infeasible"]
    assert refused, "odd windows must occur and be infeasible"
    for t in refused:
        assert t.params["window"] % 2 and t.values is None
        assert "must be even" in (t.error or "")
    assert r.counts["infeasible"] == len(refused) == r.to_json()["states"]["infeasible"]
    none = optimize(frame, "sma_cross", trials=6, sampler="random", seed=5, min_trades=10**6,
                    space=SPACE, **COMMON)  # fmt: skip
    assert {t.state for t in none.trials} == {"infeasible"}
    assert none.best_value is None and none.best_params == {} and none.dsr is None


def test_ruined_trials_are_counted_apart_and_not_scored(frame: pd.DataFrame) -> None:
    # 5 BTC (~230,000 notional) on 10,000 cash and no margin limit: a 5% move ruins it
    kw = {**COMMON, "size": 5.0, "size_mode": "fixed", "leverage": None, "short": True}
    r = optimize(frame, "sma_cross", trials=8, sampler="random", seed=3, space=SPACE, **kw)
    ruined = [t for t in r.trials if (t.error or "").startswith("ruined")]
    assert ruined, [t.error for t in r.trials]
    assert all(t.state == "ruined" and t.values is None for t in ruined)
    assert all(is_ruined(t.metrics) for t in ruined)
    assert not any(is_ruined(t.metrics) for t in r.trials if t.state != "ruined")
    assert r.counts["ruined"] == len(ruined) == r.to_json()["states"]["ruined"]
    assert load_study(r.name).counts == r.counts


def test_failing_strategy_trials_are_failed_not_fatal(frame: pd.DataFrame) -> None:
    r = optimize(frame, Exploding, trials=16, sampler="random", seed=0, min_trades=0, **COMMON)
    failed = [t for t in r.trials if t.state == "failed"]
    assert failed and all("odd window" in (t.error or "") for t in failed)
    assert all(t.params["window"] % 2 for t in failed)
    assert any(t.state == "complete" for t in r.trials)


def test_user_objective_and_constraint_functions(frame: pd.DataFrame) -> None:
    def final(result: BacktestResult) -> float:
        return float(result.equity.iloc[-1])

    def long_only_few(result: BacktestResult) -> bool:
        return len(result.trades) < 60

    r = optimize(frame, "sma_cross", objectives=[final], constraints=[long_only_few], trials=15,
                 sampler="random", seed=4, space=SPACE, **COMMON)  # fmt: skip
    for t in r.trials:
        if t.state == "complete":
            assert t.values == [pytest.approx(t.metrics["final_equity"])]
            assert t.metrics["n_trades"] < 60
        elif t.state == "infeasible" and t.metrics:
            assert t.metrics["n_trades"] >= 60


def test_multi_objective_pareto_front(frame: pd.DataFrame) -> None:
    r = optimize(frame, "sma_cross", objectives=["sharpe", "max_drawdown"], trials=30,
                 sampler="nsga2", seed=1, space=SPACE, **COMMON)  # fmt: skip
    assert r.directions == ["maximize", "maximize"]
    done = [t for t in r.trials if t.state == "complete"]
    front = r.best_trials
    assert front and isinstance(r.best_value, list) and len(r.best_value) == 2

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and a != b

    for f in front:
        assert not any(dominates(t.values, f.values) for t in done)  # type: ignore[arg-type]
    for t in done:
        if t not in front:
            assert any(dominates(f.values, t.values) for f in front)  # type: ignore[arg-type]
    assert r.to_json()["pareto_front"] is not None
    nsga3 = optimize(frame, "sma_cross", objectives=["sharpe", "calmar"], trials=12,
                     sampler="nsga3", seed=1, space=SPACE, **COMMON)  # fmt: skip
    assert nsga3.n_trials == 12 and nsga3.best_trials


def test_grid_covers_the_grid_once(frame: pd.DataFrame) -> None:
    r = optimize(frame, "sma_cross", trials=100, sampler="grid", seed=0,
                 space={"fast": [5, 10, 20], "slow": (40, 80, 20), "short": False},
                 **COMMON)  # fmt: skip
    assert r.n_trials == 9
    combos = {(t.params["fast"], t.params["slow"]) for t in r.trials}
    assert combos == {(f, s) for f in (5, 10, 20) for s in (40, 60, 80)}
    with pytest.raises(
        ValueError, match="grid search needs a step or choices for parameter 'entry_z'"
    ):
        optimize(frame, "mean_reversion", trials=5, sampler="grid", space={"period": [10, 20]},
                 **COMMON)  # fmt: skip


def test_grid_resume_finishes_the_remaining_points(frame: pd.DataFrame) -> None:
    space = {"fast": [5, 10, 20], "slow": (40, 80, 20), "short": False}
    optimize(frame, "sma_cross", trials=4, sampler="grid", seed=0, study="g", space=space,
             **COMMON)  # fmt: skip
    r = resume("g", trials=9, progress=False, data=frame)
    combos = [(t.params["fast"], t.params["slow"]) for t in r.trials]
    assert len(combos) == 9 and len(set(combos)) == 9


def test_cmaes_and_random_samplers_run_and_bad_sampler_is_named(frame: pd.DataFrame) -> None:
    r = optimize(frame, "sma_cross", trials=12, sampler="cmaes", seed=1, space=SPACE, **COMMON)
    assert r.n_trials == 12 and r.best_value is not None
    with pytest.raises(ValueError, match="sampler 'cmaes' takes one objective"):
        optimize(frame, "sma_cross", objectives=["sharpe", "calmar"], sampler="cmaes", **COMMON)
    with pytest.raises(ValueError, match="unknown sampler 'anneal'"):
        optimize(frame, "sma_cross", sampler="anneal", **COMMON)
    with pytest.raises(ValueError, match="'bogus' is neither a backtest option nor a parameter"):
        optimize(frame, "sma_cross", bogus=1, **COMMON)
    with pytest.raises(ValueError, match="study name '' is invalid"):
        optimize(frame, "sma_cross", study="", **COMMON)
    with pytest.raises(ValueError, match="trials=0 is invalid"):
        optimize(frame, "sma_cross", trials=0, **COMMON)
    with pytest.raises(ValueError, match="size=-1"):
        optimize(frame, "sma_cross", **{**COMMON, "size": -1})


def test_pruning_stops_trials_on_a_prefix(frame: pd.DataFrame) -> None:
    r = optimize(frame, "sma_cross", trials=40, sampler="random", seed=3, prune=True,
                 space=SPACE, **COMMON)  # fmt: skip
    pruned = [t for t in r.trials if t.state == "pruned"]
    assert pruned, "with 40 random trials some fall below the median"
    for t in pruned:
        assert t.values is None and t.intermediate
        # pruned on a prefix: its metrics are those of fewer bars than the full run
    complete = [t for t in r.trials if t.state == "complete"]
    assert complete and all(len(t.intermediate) == 2 for t in complete if t.intermediate)
    with pytest.raises(ValueError, match="prune=True works with one objective"):
        optimize(frame, "sma_cross", objectives=["sharpe", "calmar"], prune=True, **COMMON)


def test_evaluate_trial_on_a_prefix_uses_fewer_bars(frame: pd.DataFrame) -> None:
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.optimize.objectives import resolve_objective
    from sapphire.optimize.trial import TrialContext

    ctx = TrialContext(bars_from_frame(frame), "sma_cross", {"fee": 0.0005},
                       [resolve_objective("total_return")], [], 1)  # fmt: skip
    item = {"params": {"fast": 5, "slow": 30, "short": False}}
    full = evaluate_trial(ctx, item)
    part = evaluate_trial(ctx, {**item, "fraction": 0.25})
    assert full["state"] == "complete" and full["moments"]["n"] == len(frame)
    assert part["metrics"]["n_trades"] < full["metrics"]["n_trades"]
    assert part["moments"] is None and math.isfinite(part["values"][0])


@pytest.mark.slow
def test_two_local_workers_give_the_same_trials_as_one(frame: pd.DataFrame) -> None:
    kw: dict[str, Any] = {"trials": 40, "sampler": "random", "seed": 11, "space": SPACE, **COMMON}
    one = optimize(frame, "sma_cross", jobs=1, **kw)
    two = optimize(frame, "sma_cross", jobs=2, **kw)
    assert [t.params for t in one.trials] == [t.params for t in two.trials]
    assert [t.values for t in one.trials] == [t.values for t in two.trials]
    assert one.best_value == two.best_value


def test_the_default_starts_workers_only_when_they_save_more_than_their_start_up() -> None:
    from sapphire.optimize.coordinator import POOL_START_S, _pool_pays, auto_jobs

    assert auto_jobs(0) and auto_jobs(None) and not auto_jobs(1) and not auto_jobs(2)
    # 200 trials of ~5 ms (the sample month): 0.5 s to save on 2 workers, less than the pool
    assert not _pool_pays([0.4, 0.005, 0.005, 0.006, 0.005], 192, 2)
    # 200 trials of 50 ms: 4.8 s to save
    assert _pool_pays([0.05] * 8, 192, 2)
    # the median: the first trial's kernel loading does not make the pool look worth it
    assert not _pool_pays([3.0, 0.001, 0.001], 1000, 16)
    assert not _pool_pays([], 1000, 2)
    edge = 2.0 * POOL_START_S / (1.0 - 1.0 / 4)
    assert _pool_pays([edge / 100], 100, 4) and not _pool_pays([edge / 100 * 0.99], 100, 4)
    # on CPUs that other work keeps busy, workers cannot run beside this process
    assert not _pool_pays([0.05] * 8, 10_000, 1.0)


def test_idle_cpus_leave_out_the_load_of_other_work() -> None:
    import os

    from sapphire.optimize.coordinator import idle_cpus

    load = os.getloadavg()[0]
    assert idle_cpus(64) == pytest.approx(max(1.0, 64 - max(0.0, load - 1.0)), abs=0.5)
    assert 1.0 <= idle_cpus(2) <= 2.0 and idle_cpus(1) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("pool_start_s", [1e9, 0.0])
def test_the_default_jobs_gives_the_same_trials_inline_or_on_workers(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, pool_start_s: float
) -> None:
    from sapphire.optimize import coordinator
    from sapphire.optimize.executor import default_jobs

    if default_jobs() < 2:
        pytest.skip("needs 2 CPUs for the default to consider workers")
    # a pool start-up of 1e9 s keeps every trial in this process; 0 s makes the workers
    # pay after the first batch (of the 2-worker batch size, as with jobs=2)
    monkeypatch.setattr(coordinator, "POOL_START_S", pool_start_s)
    kw: dict[str, Any] = {"trials": 32, "sampler": "tpe", "seed": 11, "space": SPACE, **COMMON}
    one = optimize(frame, "sma_cross", jobs=1, **kw)
    default = optimize(frame, "sma_cross", jobs=0, **kw)
    assert [t.params for t in default.trials] == [t.params for t in one.trials]
    assert [t.values for t in default.trials] == [t.values for t in one.trials]


def test_counts_keep_ruined_apart_and_top_lists_keep_the_best_of_each_set() -> None:
    from sapphire.optimize.storage import TrialRecord
    from sapphire.optimize.study_result import StudyResult, distinct, trial_counts

    def rec(n: int, fast: int, value: float | None, state: str = "complete",
            metrics: dict[str, float] | None = None) -> TrialRecord:  # fmt: skip
        values = None if value is None else [value]
        return TrialRecord(n, {"fast": fast, "slow": 50}, values, state, metrics or {}, None, 0.1)

    ruin = {"max_drawdown": -1.2, "final_equity": -300.0}
    records = [
        rec(0, 10, 1.0), rec(1, 10, 3.0), rec(2, 20, 2.0), rec(3, 10, 3.0), rec(4, 30, 0.5),
        rec(5, 40, None, "ruined", ruin),
        rec(6, 40, None, "infeasible", ruin),  # stored before "ruined" was a state
        rec(7, 45, None, "infeasible", {"max_drawdown": -0.3, "final_equity": 7000.0}),
        rec(8, 46, None, "failed"),
    ]  # fmt: skip
    assert trial_counts(records) == {"complete": 5, "infeasible": 1, "ruined": 2,
                                     "failed": 1, "pruned": 0}  # fmt: skip
    assert [r.number for r in distinct(records[:5])] == [0, 2, 4]
    result = StudyResult("s", "sma_cross", ["sharpe"], ["maximize"], records, {"fast": 10}, 3.0,
                         [records[1]], len(records), 1.0, None, None)  # fmt: skip
    assert [t.number for t in result.top_trials()] == [1, 2, 4]  # 1 beats 3 (same value, first)
    payload = result.to_json()
    assert [t["number"] for t in payload["top_trials"]] == [1, 2, 4]
    assert payload["states"]["ruined"] == 2 and payload["states"]["infeasible"] == 1
    minimise = StudyResult("m", "sma_cross", ["max_drawdown"], ["minimize"], records, {}, 0.5,
                           [records[4]], len(records), 1.0, None, None)  # fmt: skip
    assert [t.number for t in minimise.top_trials(2)] == [4, 0]
