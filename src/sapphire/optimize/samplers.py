"""Optuna's side of a study: the samplers, the median pruner and its stages, the batch
sizes, and the ask/tell study rebuilt from the stored trials."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sapphire.optimize.space import RandomTrials, SearchSpace
from sapphire.optimize.storage import TrialRecord

if TYPE_CHECKING:
    import optuna

__all__ = [
    "PRUNE_STAGES",
    "SAMPLERS",
    "batch_size",
    "grid_size",
    "make_sampler",
    "make_study",
]

SAMPLERS = ("tpe", "cmaes", "random", "grid", "nsga2", "nsga3")
_ADAPTIVE = {"tpe", "cmaes", "nsga2", "nsga3"}
# pruning: a trial is first backtested on these leading fractions of the bars
PRUNE_STAGES = (0.25, 0.5)


def make_sampler(
    name: str, seed: int | None, space: SearchSpace, n_objectives: int
) -> optuna.samplers.BaseSampler:
    """Optuna's sampler called `name` (one of SAMPLERS); a ValueError names a bad choice."""
    import optuna

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    single_only = {"cmaes"}
    if name in single_only and n_objectives > 1:
        raise ValueError(f"sampler {name!r} takes one objective; use nsga2, nsga3 or tpe")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )  # fmt: skip
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            return _grid_sampler(space, seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.NSGAIIISampler(seed=seed)


def _grid_sampler_class() -> type:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler over the points that satisfy the strategy's declared
        constraints (in the same seeded shuffled order), without its `study.stop()` (the
        coordinator caps the number of trials at the grid size itself; `stop` only works
        inside `optimize`)."""

        def __init__(self, space: SearchSpace, seed: int | None) -> None:
            super().__init__(space.grid(), seed=seed)
            if space.relations:
                base = {**space.defaults, **space.fixed}
                names = self._param_names
                self._all_grids = [
                    point for point in self._all_grids
                    if space.valid({**base, **dict(zip(names, point, strict=True))})
                ]  # fmt: skip
                self._n_min_trials = len(self._all_grids)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def _grid_sampler(space: SearchSpace, seed: int | None) -> Any:
    return _grid_sampler_class()(space, seed=seed)


def grid_size(space: SearchSpace) -> int:
    """The number of points of the space's grid that satisfy the declared constraints."""
    space.grid()  # a ValueError names a dimension without a step or choices
    size = space.size()
    assert size is not None
    return size


def make_study(
    sampler_name: str,
    seed: int | None,
    space: SearchSpace,
    directions: Sequence[str],
    prune: bool,
    records: Sequence[TrialRecord],
) -> optuna.Study | RandomTrials:
    """What the coordinator asks for trials and tells their results: an Optuna study with
    the sampler (and the median pruner if `prune`) that knows the stored `records`, or
    `RandomTrials` for plain random search."""
    import optuna

    # the grid keeps its shuffled order on resume; other samplers get a fresh seed so a
    # resumed study does not replay the points it already tried
    sampler_seed = seed if seed is None or sampler_name == "grid" else seed + len(records)
    sampler = make_sampler(sampler_name, sampler_seed, space, len(directions))
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
        if prune
        else optuna.pruners.NopPruner()
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name == "random" and not prune:
        # independent draws, no pruner: nothing needs Optuna's trial bookkeeping
        return RandomTrials(sampler_seed, len(records))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            directions=list(directions),  # type: ignore[arg-type]
            sampler=sampler,
            pruner=pruner,
        )
        if records:
            study.add_trials([_frozen(r, space, len(directions)) for r in records])
    return study


def _frozen(record: TrialRecord, space: SearchSpace, n_objectives: int) -> optuna.trial.FrozenTrial:
    import optuna
    from optuna.trial import TrialState

    dists = space.active_distributions(record.params)
    params = {k: record.params[k] for k in dists if k in record.params}
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
        record.state, TrialState.FAIL
    )
    values = record.values if state == TrialState.COMPLETE else None
    if values is not None and len(values) != n_objectives:
        state, values = TrialState.FAIL, None
    return optuna.trial.create_trial(
        state=state,
        params=params,
        distributions=dists,
        values=values,
        intermediate_values=dict(record.intermediate),
    )


def batch_size(sampler: str, workers: int, prune: bool) -> int:
    """Trials asked per batch (and stored per transaction)."""
    if sampler in _ADAPTIVE or prune:
        # small batches so the sampler (or the pruner) learns between them; the same
        # for 1 and 2 workers
        return max(8, 4 * workers)
    # independent samplers: big batches keep both workers busy while the coordinator
    # tells and stores the previous batch
    return 256 * max(1, workers)
