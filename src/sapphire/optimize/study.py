"""Optuna studies over a strategy's parameters: run, store, resume, load, list, delete.

One coordinator process owns an in-memory Optuna study. It asks the sampler for a batch
of trials, sends their parameters to the executor's workers (each worker maps the bars
once and runs `Backtest(...).run()` per trial), tells Optuna the results and writes the
finished trials to the study storage in one transaction per batch. Everything needed
to continue the study later (data, strategy, options, objectives, sampler, seed, space)
is stored with it, so `resume(name)` rebuilds the same study from the stored trials.

The pieces: `study_setup` (data, options, the stored config, the `Plan`), `samplers`
(Optuna's samplers and pruner), `coordinator` (the batch loop), `trial` (what a worker
runs) and `study_result` (the verdict: best trial, Pareto front, DSR and PBO).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sapphire.optimize.coordinator import auto_jobs, run_study
from sapphire.optimize.objectives import (
    Objective,
    check_min_trades,
    resolve_constraint,
    resolve_objective,
)
from sapphire.optimize.samplers import SAMPLERS, make_sampler
from sapphire.optimize.space import SearchSpace
from sapphire.optimize.storage import StudyStorage, TrialRecord
from sapphire.optimize.study_result import StudyResult, build_result
from sapphire.optimize.study_setup import (
    BACKTEST_KEYS,
    DATA_KEYS,
    OptionsProbe,
    Plan,
    config_key,
    data_spec,
    fingerprint,
    load_data,
    plan_from_config,
    slice_bars,
    stamp,
    strategy_spec,
)
from sapphire.optimize.trial import TrialContext, evaluate_trial
from sapphire.strategy.base import Strategy
from sapphire.strategy.registry import get_strategy

__all__ = [
    "SAMPLERS",
    "StudyResult",
    "TrialContext",
    "TrialRecord",
    "delete_study",
    "evaluate_trial",
    "list_studies",
    "load_study",
    "optimize",
    "resume",
]


def optimize(
    data: Any,
    strategy: str | type[Strategy],
    *,
    objectives: Sequence[str | Callable[..., float] | Objective] = ("sharpe",),
    trials: int = 100,
    sampler: str = "tpe",
    jobs: int | None = 1,
    ray_address: str | None = None,
    study: str | None = None,
    storage: str | None = None,
    seed: int | None = None,
    min_trades: int = 1,
    constraints: Sequence[Callable[..., bool]] | None = None,
    space: Mapping[str, Any] | None = None,
    prune: bool = False,
    progress: bool = True,
    start: Any = None,
    end: Any = None,
    **backtest_options: Any,
) -> StudyResult:
    """Search a strategy's parameters with Optuna and store the study.

    `data`: a DataFrame, `Bars`, a file path, a catalog symbol or "sample"; `start`/`end`
    cut it. `objectives`: metric names (see `sapphire.optimize.objectives`) or functions
    of the BacktestResult; several objectives give a Pareto front (use `nsga2`/`nsga3`
    or `tpe`). `space` overrides ranges (`{"fast": (5, 50)}`, `{"fast": [5, 10, 20]}`)
    or fixes a parameter (`{"short": True}`); keyword arguments that name a strategy
    parameter fix it too, the others are backtest options (fee, size, ...).
    `min_trades` and `constraints` (functions returning True when acceptable) mark a
    trial infeasible. `prune=True` backtests each trial on the first 25% then 50% of
    the bars and stops those below the median of earlier trials at that stage.
    `jobs`: local worker processes (1: in this process; None or 0: the first batch runs
    here, the rest on one worker per core only if its trial times say that saves 2 s
    on the cores other work leaves idle).
    `study` names the study (default `<strategy>-<UTC time>`); a name that exists with
    the same configuration continues it up to `trials`. `storage`: an SQLAlchemy URL
    (default `$SAPPHIRE_DATABASE_URL`, else `$SAPPHIRE_HOME/sapphire.db`).
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} is invalid: expected a whole number >= 1")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed={seed!r} is invalid: expected an integer")
    check_min_trades(min_trades)
    cls = get_strategy(strategy)
    spec = strategy_spec(strategy)
    declared = cls.params()
    fixed = {k: v for k, v in backtest_options.items() if k in declared}
    options = {k: v for k, v in backtest_options.items() if k not in declared}
    data_opts = {k: options.pop(k) for k in DATA_KEYS if k in options}
    unknown = sorted(set(options) - set(BACKTEST_KEYS))
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is neither a backtest option nor a parameter of strategy "
            f"{cls.name!r} (its parameters: {', '.join(declared) or '(none)'})"
        )
    search = SearchSpace(cls, space, fixed)
    objs = [resolve_objective(o) for o in objectives]
    if not objs:
        raise ValueError("give at least one objective")
    names = [o.name for o in objs]
    if len(set(names)) != len(names):
        raise ValueError(f"objectives {names} name one objective twice")
    cons = [resolve_constraint(c) for c in constraints or []]
    if prune and len(objs) > 1:
        raise ValueError("prune=True works with one objective; drop prune or an objective")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    make_sampler(sampler, seed, search, len(objs))  # validates (grid needs steps, ...)

    if not ray_address and not auto_jobs(jobs):  # the default may not need workers
        from sapphire.optimize.executor import prestart

        prestart(jobs, evaluate_trial)  # the workers' process starts while the data loads
    bars, meta = load_data(data, start, end, data_opts)
    funding_spec: Any = None
    funding = options.get("funding")
    if isinstance(funding, str | Path):
        from sapphire.data import read_funding

        funding_spec = str(Path(funding).expanduser().resolve())
        options["funding"] = read_funding(funding)
    elif funding is not None:
        funding_spec = "in-memory"
    from sapphire.backtest.runner import Backtest

    Backtest(slice_bars(bars, 0, 2), OptionsProbe, **options)  # validates the options once
    run_options = dict(options)
    for key in ("tick_size", "lot_size"):
        if run_options.get(key) is None and meta.get(key):
            run_options[key] = meta[key]

    source = data_spec(data)
    source["fingerprint"] = fingerprint(bars)
    stored_options = {k: v for k, v in options.items() if k != "funding"}
    if funding_spec not in (None, "in-memory"):
        stored_options["funding"] = funding_spec
    config: dict[str, Any] = {
        "strategy": spec,
        "data": source,
        "data_options": data_opts,
        "start": stamp(start),
        "end": stamp(end),
        "backtest_options": stored_options,
        "funding": "in-memory" if funding_spec == "in-memory" else None,
        "fixed": {k: v for k, v in search.fixed.items() if k in fixed},
        "space": search.overrides_json(),
        "objectives": [o.spec() for o in objs],
        "constraints": [c.spec() for c in cons],
        "min_trades": min_trades,
        "sampler": sampler,
        "seed": seed,
        "prune": bool(prune),
        "trials": trials,
        "space_size": search.size(limit=SPACE_COUNT_LIMIT),
    }
    store = StudyStorage(storage)
    name = _default_name(cls.name) if study is None else study
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or name != name.strip():
        raise ValueError(
            f"study name {name!r} is invalid: expected 1-200 characters without "
            "leading or trailing spaces"
        )
    existing = store.find(name)
    if existing is not None:
        old, new = config_key(existing.config), config_key(config)
        if old != new:
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"study {name!r} already exists with a different configuration (differs in: "
                f"{', '.join(differ)}); continue it with `sapphire optimize resume {name}` "
                "or choose another study name"
            )
        stored = existing
        stored.config["trials"] = trials
        store.update_config(stored, stored.config)
    else:
        stored = store.create(name, cls.name, names, [o.direction for o in objs], config)
    plan = Plan(stored, store, search, cls, objs, cons, run_options, bars,
                store.load_trials(stored))  # fmt: skip
    return run_study(plan, target=trials, jobs=jobs, ray_address=ray_address, progress=progress)


# the valid points of a space are counted when its constrained dimensions have at most
# this many points together (a boolean array of this size: a few tens of milliseconds)
SPACE_COUNT_LIMIT = 10_000_000


def _default_name(strategy: str) -> str:
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{strategy}-{now}-{uuid.uuid4().hex[:4]}"


def resume(
    study: str,
    *,
    trials: int | None = None,
    storage: str | None = None,
    jobs: int | None = 1,
    ray_address: str | None = None,
    progress: bool = True,
    data: Any = None,
    funding: Any = None,
) -> StudyResult:
    """Continue a stored study with its stored configuration up to `trials` in total.

    `trials` defaults to the study's target. The sampler is re-seeded from the stored
    trials. `data`/`funding` are needed only for a study run on in-memory data.
    """
    store = StudyStorage(storage)
    stored = store.get(study)
    target = int(stored.config.get("trials") or 0) if trials is None else trials
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise ValueError(f"trials={trials!r} is invalid: expected a whole number >= 1")
    if target != stored.config.get("trials"):
        stored.config["trials"] = target
        store.update_config(stored, stored.config)
    if not ray_address and not auto_jobs(jobs):  # the default may not need workers
        from sapphire.optimize.executor import prestart

        prestart(jobs, evaluate_trial)  # the workers' process starts while the data loads
    plan = plan_from_config(stored, store, data=data, funding=funding)
    return run_study(plan, target=target, jobs=jobs, ray_address=ray_address, progress=progress)


def load_study(study: str, storage: str | None = None) -> StudyResult:
    """Read a stored study (trials, best, DSR/PBO) without running anything."""
    store = StudyStorage(storage)
    stored = store.get(study)
    records = store.load_trials(stored)
    return build_result(stored, records, float(stored.config.get("elapsed_s") or 0.0))


def list_studies(storage: str | None = None) -> list[dict[str, Any]]:
    """One dict per stored study: name, strategy, objectives, n_trials, target, dates."""
    return StudyStorage(storage).list()


def delete_study(study: str, storage: str | None = None) -> None:
    """Delete a stored study and its trials."""
    StudyStorage(storage).delete(study)
