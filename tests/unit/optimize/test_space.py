"""The search space built from a strategy's Params: types, overrides, conditions, errors."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sapphire.optimize.space import SearchSpace
from sapphire.strategy.base import Bars, Param, Signals, Strategy
from sapphire.strategy.builtins.sma_cross import SmaCross


class Everything(Strategy):
    """One parameter of each kind, plus a conditional one."""

    period = Param(20, low=5, high=50, step=5)
    width = Param(0.5, low=0.1, high=2.0)
    rate = Param(0.01, low=0.001, high=0.1, log=True)
    mode = Param("close", choices=["close", "high", "low"])
    short = Param(False)
    short_width = Param(2.0, low=1.0, high=4.0, when={"short": True})
    label = Param("x")  # no range: stays at its default
    free = Param(3)  # int without a range: stays at its default

    def signals(self, bars: Bars) -> Signals:
        return Signals()


def _sample(space: SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return out


def test_each_param_kind_becomes_the_right_distribution() -> None:
    space = SearchSpace(Everything)
    dists = {d.name: d.distribution() for d in space.dimensions}
    assert space.names == ["period", "width", "rate", "mode", "short", "short_width"]
    assert dists["period"] == IntDistribution(5, 50, step=5)
    assert dists["width"] == FloatDistribution(0.1, 2.0)
    assert dists["rate"] == FloatDistribution(0.001, 0.1, log=True)
    assert dists["mode"] == CategoricalDistribution(["close", "high", "low"])
    assert dists["short"] == CategoricalDistribution([False, True])


def test_samples_respect_types_ranges_and_defaults() -> None:
    samples = _sample(SearchSpace(Everything), 60)
    for s in samples:
        assert s["period"] in range(5, 51, 5)
        assert 0.1 <= s["width"] <= 2.0
        assert 0.001 <= s["rate"] <= 0.1
        assert s["mode"] in ("close", "high", "low")
        assert isinstance(s["short"], bool)
        assert s["label"] == "x" and s["free"] == 3
        Everything(**s)  # every sample is a valid parameter set
    assert len({s["mode"] for s in samples}) == 3


def test_conditional_param_is_sampled_only_when_its_condition_holds() -> None:
    space = SearchSpace(Everything)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_on, seen_off = set(), set()
    for _ in range(60):
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
        if params["short"]:
            assert "short_width" in trial.params
            seen_on.add(params["short_width"])
        else:
            assert "short_width" not in trial.params
            seen_off.add(params["short_width"])
        assert set(space.active_distributions(params)) == set(trial.params)
    assert seen_off == {2.0}
    assert len(seen_on) > 5


def test_overrides_range_step_choices_and_fixed_values() -> None:
    space = SearchSpace(
        SmaCross,
        {"fast": (5, 50), "slow": [60, 90, 120], "short": True},
    )
    dims = {d.name: d for d in space.dimensions}
    assert dims["fast"].distribution() == IntDistribution(5, 50)
    assert dims["slow"].distribution() == CategoricalDistribution([60, 90, 120])
    assert "short" not in dims and space.fixed == {"short": True}
    for s in _sample(space, 30):
        assert 5 <= s["fast"] <= 50 and s["slow"] in (60, 90, 120) and s["short"] is True
    stepped = SearchSpace(SmaCross, {"fast": (5, 50, 5)})
    assert stepped.grid()["fast"] == list(range(5, 51, 5))


def test_stored_override_form_rebuilds_the_same_space() -> None:
    space = SearchSpace(SmaCross, {"fast": (5, 50, 5), "slow": [60, 90], "short": True})
    again = SearchSpace(SmaCross, space.overrides_json())
    assert space.describe() == again.describe()
    assert space.fixed == again.fixed


@pytest.mark.parametrize(
    ("overrides", "fixed", "message"),
    [
        ({"nope": (1, 2)}, None, "space 'nope' is not a parameter of strategy 'sma_cross'"),
        (None, {"nope": 1}, "fixed parameter 'nope' is not a parameter"),
        ({"fast": (50, 5)}, None, r"range is empty \(low 50 > high 5\)"),
        ({"fast": (1, 5)}, None, "below the minimum 2"),
        ({"fast": (5, 50, 0)}, None, "step 0 must be a number > 0"),
        ({"fast": (5, 50, 2.5)}, None, "must be whole"),
        ({"fast": []}, None, "list of choices is empty"),
        ({"fast": ["a"]}, None, "'a' is not a valid int"),
        ({"short": (0, 1)}, None, "not a number; give a list"),
        ({"fast": (5, 50)}, {"fast": 10}, "both fixed and given a search space"),
    ],
)
def test_bad_overrides_name_the_bad_value(
    overrides: dict[str, Any] | None, fixed: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(SmaCross, overrides, fixed)


def test_grid_needs_a_step_or_choices_and_names_the_param() -> None:
    with pytest.raises(
        ValueError, match="grid search needs a step or choices for parameter 'width'"
    ):
        SearchSpace(Everything).grid()
    grid = SearchSpace(
        Everything, {"width": [0.5, 1.0], "rate": [0.01], "short_width": (1.0, 4.0, 1.5)}
    ).grid()
    assert grid["period"] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert grid["short"] == [False, True]
    assert grid["short_width"] == [1.0, 2.5, 4.0]


def test_nothing_to_search_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to search"):
        SearchSpace(SmaCross, None, {"fast": 5, "slow": 20, "short": False})


def test_param_when_is_validated() -> None:
    with pytest.raises(ValueError, match="when= must be a non-empty dict"):
        Param(1.0, low=0, high=2, when={})
    with pytest.raises(ValueError, match="step must be > 0"):
        Param(1, low=0, high=2, step=0)

    class Bad(Strategy):
        x = Param(1.0, low=0.0, high=2.0, when={"missing": True})

        def signals(self, bars: Bars) -> Signals:
            return Signals()

    with pytest.raises(ValueError, match="when= names 'missing', which is not a parameter"):
        SearchSpace(Bad)
    assert Everything.params()["short_width"].describe()["when"] == {"short": True}


def test_random_trials_draw_in_range_on_the_grid_and_reproducibly() -> None:
    """Plain random search without Optuna: every draw is a valid, seeded parameter set."""
    import numpy as np

    from sapphire.optimize.space import RandomTrials

    space = SearchSpace(Everything, {"free": (1, 1000)})
    source = RandomTrials(seed=3, first_number=7)
    draws = [source.ask() for _ in range(2000)]
    assert [d.number for d in draws[:3]] == [7, 8, 9]
    sets = [space.suggest(d) for d in draws]
    second = RandomTrials(seed=3, first_number=7)
    again = [space.suggest(second.ask()) for _ in range(2000)]
    assert sets == again
    periods = {s["period"] for s in sets}
    assert periods == {5, 10, 15, 20, 25, 30, 35, 40, 45, 50}  # every grid point, only those
    widths = np.array([s["width"] for s in sets])
    assert widths.min() >= 0.1 and widths.max() <= 2.0 and 0.9 < np.median(widths) < 1.2
    rates = np.array([s["rate"] for s in sets])  # log-uniform: the median is the geometric mid
    assert rates.min() >= 0.001 and rates.max() <= 0.1 and 0.007 < np.median(rates) < 0.014
    frees = np.array([s["free"] for s in sets])
    assert frees.min() >= 1 and frees.max() <= 1000 and frees.dtype.kind == "i"
    assert {s["mode"] for s in sets} == {"close", "high", "low"}
    shorts = [s for s in sets if s["short"]]
    assert 800 < len(shorts) < 1200
    assert all(s["short_width"] == 2.0 for s in sets if not s["short"])  # inactive: default
    assert len({s["short_width"] for s in shorts}) > 100
    for s in sets[:50]:
        Everything(**s)  # every set is valid for the strategy


class Bands(Strategy):
    """Three related parameters on step grids and a negated relation on floats."""

    inner = Param(10, low=5, high=50, step=5)
    outer = Param(30, low=10, high=60, step=10)
    entry = Param(1.0, low=0.5, high=3.0)
    exit = Param(0.0, low=-2.0, high=2.0, step=0.25)
    constraints = (("inner", "<", "outer"), ("exit", ">", "-entry"))

    def signals(self, bars: Bars) -> Signals:
        return Signals()


def _brute_force_count(space: SearchSpace) -> int:
    import itertools

    grid = space.grid()
    base = {**space.defaults, **space.fixed}
    return sum(
        space.valid({**base, **dict(zip(grid, point, strict=True))})
        for point in itertools.product(*grid.values())
    )


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_sampled_sets_always_satisfy_the_declared_constraints(sampler: str) -> None:
    from sapphire.optimize.samplers import make_sampler

    space = SearchSpace(Bands)
    study = optuna.create_study(sampler=make_sampler(sampler, 1, space, 1))
    for _ in range(150):
        trial = study.ask()
        params = space.suggest(trial)
        Bands(**params)  # the constructor checks the constraints
        assert params["inner"] % 5 == 0 and params["outer"] % 10 == 0
        assert (params["exit"] * 4).is_integer()
        study.tell(trial, float(params["outer"] - params["inner"]))


def test_ranges_are_narrowed_to_what_a_partner_allows_and_empty_ones_are_named() -> None:
    space = SearchSpace(SmaCross, {"fast": (10, 200), "slow": (3, 150)})
    dims = {d.name: d for d in space.dimensions}
    assert (dims["fast"].low, dims["fast"].high) == (10, 149)  # fast < slow <= 150
    assert (dims["slow"].low, dims["slow"].high) == (11, 150)  # slow > fast >= 10
    fixed = SearchSpace(SmaCross, {"fast": (2, 200)}, {"slow": 50})
    assert fixed.dimensions[0].high == 49
    with pytest.raises(ValueError, match=r"no value of 'fast' that satisfies its constraint"):
        SearchSpace(SmaCross, {"fast": (60, 80), "slow": (10, 50)})
    with pytest.raises(ValueError, match=r"fast \(60\) must be < slow \(50\); neither is searched"):
        SearchSpace(SmaCross, {"fast": 60}, {"slow": 50})


def test_the_space_size_and_the_grid_count_valid_sets_only() -> None:
    from sapphire.optimize.samplers import grid_size, make_sampler

    space = SearchSpace(Bands, {"entry": [0.5, 1.0, 2.5]})
    expected = _brute_force_count(space)
    assert space.size() == grid_size(space) == expected
    assert expected < math.prod(len(v) for v in space.grid().values())
    sampler = make_sampler("grid", 0, space, 1)
    assert len(sampler._all_grids) == expected
    study = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(expected):
        trial = study.ask()
        params = space.suggest(trial)
        Bands(**params)
        seen.add(tuple(params.values()))
        study.tell(trial, 0.0)
    assert len(seen) == expected  # every valid point once
    assert SearchSpace(Bands).size() is None  # a continuous range: not counted
    assert SearchSpace(SmaCross).size() == 2 * sum(1000 - f for f in range(2, 201))
    assert SearchSpace(SmaCross).size(limit=1000) is None


def test_stored_trials_get_back_the_narrowed_distribution_they_were_sampled_from() -> None:
    space = SearchSpace(SmaCross)
    dists = space.active_distributions({"fast": 20, "slow": 50, "short": True})
    assert dists["slow"] == IntDistribution(21, 1000)
    assert dists["fast"] == IntDistribution(2, 200)
    # a set stored before the constraint was declared keeps the whole range
    old = space.active_distributions({"fast": 20, "slow": 10, "short": True})
    assert old["slow"] == IntDistribution(3, 1000)
