"""Optuna studies over a strategy's parameters: run, store, resume, load, list.

One coordinator process owns an in-memory Optuna study. It asks the sampler for a batch
of trials, sends their parameters to the executor's workers (each worker maps the bars
once and runs `Backtest(...).run()` per trial), tells Optuna the results and writes the
finished trials to the study storage in one transaction per batch. Everything needed
to continue the study later (data, strategy, options, objectives, sampler, seed, space)
is stored with it, so `resume(name)` rebuilds the same study from the stored trials.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sapphire.gc_tuning import rare_gc_passes
from sapphire.optimize.objectives import (
    Constraint,
    Objective,
    check_min_trades,
    resolve_constraint,
    resolve_objective,
)
from sapphire.optimize.space import RandomTrials, SearchSpace
from sapphire.optimize.storage import StoredStudy, StudyStorage, TrialRecord
from sapphire.strategy.base import Bars, Signals, Strategy
from sapphire.strategy.registry import get_strategy

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from sapphire.backtest.result import BacktestResult

__all__ = [
    "SAMPLERS",
    "StudyResult",
    "TrialContext",
    "TrialRecord",
    "evaluate_trial",
    "list_studies",
    "load_study",
    "optimize",
    "resume",
]

SAMPLERS = ("tpe", "cmaes", "random", "grid", "nsga2", "nsga3")
_ADAPTIVE = {"tpe", "cmaes", "nsga2", "nsga3"}
# pruning: a trial is first backtested on these leading fractions of the bars
PRUNE_STAGES = (0.25, 0.5)
# keys of `optimize(**kwargs)` that select/load the data rather than configure a backtest
_DATA_KEYS = ("symbol", "venue", "timeframe", "resample", "gaps")
_BACKTEST_KEYS = (
    "cash", "size", "size_mode", "leverage", "fee", "maker_fee", "taker_fee",
    "slippage_bps", "slippage_ticks", "tick_size", "lot_size", "fill_at", "intrabar",
    "stop_loss", "take_profit", "trailing_stop", "funding",
)  # fmt: skip


# --------------------------------------------------------------------------- results


@dataclass
class StudyResult:
    """A study's trials and its verdict.

    `best_params`/`best_value` are those of the best complete trial (with several
    objectives: the Pareto-optimal trial best on the first objective; `best_trials` is
    the whole Pareto front). `dsr` is the deflated Sharpe ratio of the best trial and
    `pbo` the probability of backtest overfitting of the search (None when not
    computable). `config` holds everything `resume` needs.
    """

    name: str
    strategy: str
    objectives: list[str]
    directions: list[str]
    trials: list[TrialRecord]
    best_params: dict[str, Any]
    best_value: float | list[float] | None
    best_trials: list[TrialRecord]
    n_trials: int
    elapsed_s: float
    dsr: float | None
    pbo: float | None
    config: dict[str, Any] = field(default_factory=dict)
    overfitting: dict[str, Any] = field(default_factory=dict)

    @property
    def best_trial(self) -> TrialRecord | None:
        """The best complete trial (None when no trial completed)."""
        return self.best_trials[0] if self.best_trials else None

    def to_json(self) -> dict[str, Any]:
        """study, n_trials, best_params, best_value, dsr, pbo, elapsed_s (+ objectives)."""
        states: dict[str, int] = {}
        for t in self.trials:
            states[t.state] = states.get(t.state, 0) + 1
        return _json_safe(
            {
                "study": self.name,
                "strategy": self.strategy,
                "objectives": list(self.objectives),
                "directions": list(self.directions),
                "n_trials": self.n_trials,
                "states": states,
                "best_params": dict(self.best_params),
                "best_value": self.best_value,
                "best_metrics": dict(self.best_trial.metrics) if self.best_trial else None,
                "pareto_front": (
                    [{"number": t.number, "values": t.values, "params": t.params}
                     for t in self.best_trials]
                    if len(self.objectives) > 1 else None
                ),
                "dsr": self.dsr,
                "pbo": self.pbo,
                "elapsed_s": round(self.elapsed_s, 3),
            }
        )  # fmt: skip

    def trials_frame(self) -> pd.DataFrame:
        """One row per trial: number, state, params_*, value(s), duration_s, metrics."""
        import pandas as pd

        rows = []
        for t in self.trials:
            row: dict[str, Any] = {"number": t.number, "state": t.state}
            row.update({f"params_{k}": v for k, v in t.params.items()})
            if len(self.objectives) == 1:
                row["value"] = t.values[0] if t.values else math.nan
            else:
                for i, name in enumerate(self.objectives):
                    row[f"values_{name}"] = t.values[i] if t.values else math.nan
            row["duration_s"] = t.duration_s
            row.update(t.metrics)
            rows.append(row)
        return pd.DataFrame(rows)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def pareto_front(records: Sequence[TrialRecord], directions: Sequence[str]) -> list[TrialRecord]:
    """The complete trials no other complete trial dominates, best first objective first."""
    done = [r for r in records if r.state == "complete" and r.values is not None]
    if not done:
        return []
    sign = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    vals = np.array([r.values for r in done], dtype=np.float64) * sign  # larger is better
    keep = np.ones(len(done), dtype=bool)
    for i in range(len(done)):
        if not keep[i]:
            continue
        dominated_by = np.all(vals >= vals[i], axis=1) & np.any(vals > vals[i], axis=1)
        if dominated_by.any():
            keep[i] = False
    front = [r for r, k in zip(done, keep, strict=True) if k]
    first = sign[0]
    front.sort(key=lambda r: (-first * r.values[0], r.number))  # type: ignore[index]
    return front


def _build_result(stored: StoredStudy, records: list[TrialRecord], elapsed_s: float) -> StudyResult:
    directions = list(stored.directions)
    done = [r for r in records if r.state == "complete" and r.values is not None]
    if len(directions) == 1:
        best_list: list[TrialRecord] = []
        for r in done:
            assert r.values is not None
            if not best_list or _better(r.values[0], best_list[0].values[0], directions[0]):  # type: ignore[index]
                best_list = [r]
        front = best_list
    else:
        front = pareto_front(records, directions)
    best = front[0] if front else None
    dsr = pbo = None
    report: dict[str, Any] = {}
    if best is not None:
        from sapphire.optimize.stats import overfitting_report

        moments = [r.moments for r in done]
        report = dict(overfitting_report(moments, done.index(best)))
        dsr, pbo = report.get("dsr"), report.get("pbo")
    best_value: float | list[float] | None = None
    if best is not None and best.values is not None:
        best_value = best.values[0] if len(directions) == 1 else list(best.values)
    return StudyResult(
        name=stored.name,
        strategy=stored.strategy,
        objectives=list(stored.objectives),
        directions=directions,
        trials=records,
        best_params=dict(best.params) if best is not None else {},
        best_value=best_value,
        best_trials=front,
        n_trials=len(records),
        elapsed_s=elapsed_s,
        dsr=None if dsr is None else float(dsr),
        pbo=None if pbo is None else float(pbo),
        config=dict(stored.config),
        overfitting=report,
    )


# --------------------------------------------------------------------------- worker side

_STRATEGIES: dict[str, type[Strategy]] = {}


def _strategy_class(spec: str | type[Strategy]) -> type[Strategy]:
    if not isinstance(spec, str):
        return spec
    cls = _STRATEGIES.get(spec)
    if cls is None:
        cls = _STRATEGIES[spec] = get_strategy(spec)
    return cls


@dataclass
class TrialContext:
    """What every trial of a study shares; sent to each worker once.

    `data` is a `Bars` (inline runs) or a `SharedBars` handle (memory-mapped by each
    worker once); `strategy` a Strategy class or a spec resolved once per process.
    """

    data: Any
    strategy: str | type[Strategy]
    options: dict[str, Any]
    objectives: list[Objective]
    constraints: list[Constraint]
    min_trades: int

    def bars(self) -> Bars:
        """The study's bars (memory-mapped read-only in a worker)."""
        data = self.data
        return data if isinstance(data, Bars) else data.load()


def _prefix(bars: Bars, fraction: float) -> Bars:
    k = max(2, int(len(bars) * fraction))
    return Bars(
        time=bars.time[:k],
        open=bars.open[:k],
        high=bars.high[:k],
        low=bars.low[:k],
        close=bars.close[:k],
        volume=bars.volume[:k],
        timeframe_ns=bars.timeframe_ns,
    )


def _bar_returns(result: BacktestResult) -> np.ndarray:
    from sapphire.optimize.stats import bar_returns

    # a trial gets here only with equity > 0 at every bar (a ruined one is infeasible),
    # so every return is finite
    return bar_returns(result.equity.to_numpy(dtype=np.float64), float(result.config["cash"]))


def evaluate_trial(context: TrialContext, item: dict[str, Any]) -> dict[str, Any]:
    """Backtest one parameter set; runs in a worker (module-level, picklable).

    `item` = {"params": {...}, "fraction": 1.0}. With a fraction < 1 (a pruning stage)
    only the leading part of the bars is used and only the first objective is returned.
    Returns {"state", "values", "metrics", "moments", "error", "duration_s"}.
    """
    from sapphire.backtest.engine import Backtest

    started = time.perf_counter()
    fraction = float(item.get("fraction", 1.0))
    out: dict[str, Any] = {"state": "complete", "values": None, "metrics": {},
                           "moments": None, "error": None}  # fmt: skip
    try:
        bars = context.bars()
        if fraction < 1.0:
            bars = _prefix(bars, fraction)
        cls = _strategy_class(context.strategy)
        result = Backtest(bars, cls, **context.options, **item["params"]).run()
        out["metrics"] = {k: float(v) for k, v in result.metrics.items()}
        if fraction < 1.0:
            out["values"] = [context.objectives[0].value(result)]
        else:
            n_trades = int(result.metrics.get("n_trades", 0))
            lowest = float(result.equity.to_numpy().min())
            if lowest <= 0.0:
                out["state"] = "infeasible"
                out["error"] = f"ruined: equity fell to {lowest:,.2f}"
            elif n_trades < context.min_trades:
                out["state"] = "infeasible"
                out["error"] = f"{n_trades} trades < min_trades {context.min_trades}"
            else:
                failed = [c.name for c in context.constraints if not c.ok(result)]
                if failed:
                    out["state"] = "infeasible"
                    out["error"] = f"constraint {failed[0]} violated"
            if out["state"] == "complete":
                values = [o.value(result) for o in context.objectives]
                bad = [o.name for o, v in zip(context.objectives, values, strict=True)
                       if not math.isfinite(v)]  # fmt: skip
                if bad:
                    out["state"] = "failed"
                    out["error"] = f"objective {bad[0]} is not finite"
                else:
                    from sapphire.optimize.stats import return_moments

                    out["values"] = values
                    out["moments"] = return_moments(_bar_returns(result))
    except Exception as exc:  # a trial's error must not end the study
        out["state"] = "failed"
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["duration_s"] = time.perf_counter() - started
    return out


# --------------------------------------------------------------------------- set-up


class _OptionsProbe(Strategy):
    """A parameter-less strategy used to validate backtest options once."""

    name = "_options_probe"

    def signals(self, bars: Bars) -> Signals:
        return Signals()


def _strategy_spec(strategy: str | type[Strategy]) -> str:
    if isinstance(strategy, str):
        return strategy
    module, qualname = strategy.__module__, strategy.__qualname__
    if "<" in qualname or module == "__main__":
        raise ValueError(
            f"strategy class {qualname} must be importable (module level) to be optimised; "
            "or give 'path/to/file.py:Class'"
        )
    return f"{module}:{qualname}"


def _fingerprint(bars: Bars) -> str:
    h = hashlib.sha256()
    for arr in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _data_spec(data: Any) -> dict[str, Any]:
    if isinstance(data, str | Path):
        if str(data) == "sample":
            return {"source": "sample"}
        from sapphire.data.load import is_file_source

        if is_file_source(data):
            return {"source": str(Path(data).expanduser().resolve())}
        return {"source": str(data)}
    return {"source": None, "kind": type(data).__name__}


def _load_data(
    data: Any, start: Any, end: Any, data_opts: dict[str, Any]
) -> tuple[Bars, dict[str, Any]]:
    """Load the bars once (start/end/resample applied); return them and catalog metadata."""
    from sapphire.backtest.engine import Backtest

    if isinstance(data, str) and data == "sample":
        from sapphire.data.samples import SAMPLE_PATH

        data = SAMPLE_PATH
    if isinstance(data, Bars) and (start is not None or end is not None):
        times = data.time
        lo = 0 if start is None else int(np.searchsorted(times, _ns(start), "left"))
        hi = len(data) if end is None else int(np.searchsorted(times, _ns(end), "left"))
        data = _slice(data, lo, hi)
        start = end = None
    bars, _name, meta = Backtest._load(
        data,
        data_opts.get("symbol"),
        start,
        end,
        data_opts.get("venue"),
        data_opts.get("timeframe"),
        data_opts.get("resample"),
        data_opts.get("gaps", "keep"),
    )
    if len(bars) < 2:
        raise ValueError(f"need at least 2 bars to optimise, got {len(bars)}")
    return bars, meta


def _ns(value: Any) -> int:
    import pandas as pd

    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def _slice(bars: Bars, lo: int, hi: int) -> Bars:
    return Bars(bars.time[lo:hi], bars.open[lo:hi], bars.high[lo:hi], bars.low[lo:hi],
                bars.close[lo:hi], bars.volume[lo:hi], bars.timeframe_ns)  # fmt: skip


def _stamp(value: Any) -> str | None:
    if value is None:
        return None
    import pandas as pd

    return str(pd.Timestamp(value).isoformat())


def _make_sampler(
    name: str, seed: int | None, space: SearchSpace, n_objectives: int
) -> optuna.samplers.BaseSampler:
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
            return _grid_sampler(space.grid(), seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.NSGAIIISampler(seed=seed)


def _grid_sampler_class() -> type:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its `study.stop()` (the coordinator caps the
        number of trials at the grid size itself; `stop` only works inside `optimize`)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def _grid_sampler(grid: dict[str, list[Any]], seed: int | None) -> Any:
    return _grid_sampler_class()(grid, seed=seed)


def _grid_size(space: SearchSpace) -> int:
    size = 1
    for values in space.grid().values():
        size *= len(values)
    return size


@dataclass
class _Plan:
    """A study ready to run: its stored row, rebuilt pieces and stored trials."""

    stored: StoredStudy
    storage: StudyStorage
    space: SearchSpace
    strategy: type[Strategy]
    objectives: list[Objective]
    constraints: list[Constraint]
    context_options: dict[str, Any]
    bars: Bars
    records: list[TrialRecord]


def _config_key(config: Mapping[str, Any]) -> dict[str, Any]:
    from sapphire.optimize.storage import _clean

    skip = {"trials", "elapsed_s", "created_with"}
    return {k: v for k, v in _clean(dict(config)).items() if k not in skip}


def _plan_from_config(
    stored: StoredStudy,
    storage: StudyStorage,
    data: Any = None,
    funding: Any = None,
) -> _Plan:
    config = stored.config
    strategy = get_strategy(config["strategy"])
    space = SearchSpace(strategy, config.get("space") or {}, config.get("fixed") or {})
    objectives = [resolve_objective(o) for o in config["objectives"]]
    constraints = [resolve_constraint(c) for c in config.get("constraints") or []]
    spec = config.get("data") or {}
    if data is None:
        if not spec.get("source"):
            raise ValueError(
                f"study {stored.name!r} was run on in-memory data ({spec.get('kind')}); "
                "pass the same data to resume it (resume(name, data=...))"
            )
        data = spec["source"]
    bars, meta = _load_data(data, config.get("start"), config.get("end"),
                            config.get("data_options") or {})  # fmt: skip
    if spec.get("fingerprint") and _fingerprint(bars) != spec["fingerprint"]:
        raise ValueError(
            f"the data of study {stored.name!r} has changed since it was created "
            "(fingerprint mismatch); start a new study"
        )
    options = dict(config.get("backtest_options") or {})
    if config.get("funding") == "in-memory":
        if funding is None:
            raise ValueError(
                f"study {stored.name!r} used an in-memory funding series; pass funding= to resume"
            )
        options["funding"] = funding
    elif isinstance(options.get("funding"), str):
        from sapphire.data import read_funding

        options["funding"] = read_funding(options["funding"])
    for key in ("tick_size", "lot_size"):
        if options.get(key) is None and meta.get(key):
            options[key] = meta[key]
    records = storage.load_trials(stored)
    return _Plan(stored, storage, space, strategy, objectives, constraints, options, bars,
                 records)  # fmt: skip


# --------------------------------------------------------------------------- public API


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
    strategy_spec = _strategy_spec(strategy)
    declared = cls.params()
    fixed = {k: v for k, v in backtest_options.items() if k in declared}
    options = {k: v for k, v in backtest_options.items() if k not in declared}
    data_opts = {k: options.pop(k) for k in _DATA_KEYS if k in options}
    unknown = sorted(set(options) - set(_BACKTEST_KEYS))
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
    _make_sampler(sampler, seed, search, len(objs))  # validates (grid needs steps, ...)

    if not ray_address:
        from sapphire.optimize.executor import prestart

        prestart(jobs, evaluate_trial)  # the workers' process starts while the data loads
    bars, meta = _load_data(data, start, end, data_opts)
    funding_spec: Any = None
    funding = options.get("funding")
    if isinstance(funding, str | Path):
        from sapphire.data import read_funding

        funding_spec = str(Path(funding).expanduser().resolve())
        options["funding"] = read_funding(funding)
    elif funding is not None:
        funding_spec = "in-memory"
    from sapphire.backtest.engine import Backtest

    Backtest(_slice(bars, 0, 2), _OptionsProbe, **options)  # validates the options once
    run_options = dict(options)
    for key in ("tick_size", "lot_size"):
        if run_options.get(key) is None and meta.get(key):
            run_options[key] = meta[key]

    data_spec = _data_spec(data)
    data_spec["fingerprint"] = _fingerprint(bars)
    stored_options = {k: v for k, v in options.items() if k != "funding"}
    if funding_spec not in (None, "in-memory"):
        stored_options["funding"] = funding_spec
    config: dict[str, Any] = {
        "strategy": strategy_spec,
        "data": data_spec,
        "data_options": data_opts,
        "start": _stamp(start),
        "end": _stamp(end),
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
        old, new = _config_key(existing.config), _config_key(config)
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
    plan = _Plan(stored, store, search, cls, objs, cons, run_options, bars,
                 store.load_trials(stored))  # fmt: skip
    return _run(plan, target=trials, jobs=jobs, ray_address=ray_address, progress=progress)


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
    if not ray_address:
        from sapphire.optimize.executor import prestart

        prestart(jobs, evaluate_trial)  # the workers' process starts while the data loads
    plan = _plan_from_config(stored, store, data=data, funding=funding)
    return _run(plan, target=target, jobs=jobs, ray_address=ray_address, progress=progress)


def load_study(study: str, storage: str | None = None) -> StudyResult:
    """Read a stored study (trials, best, DSR/PBO) without running anything."""
    store = StudyStorage(storage)
    stored = store.get(study)
    records = store.load_trials(stored)
    return _build_result(stored, records, float(stored.config.get("elapsed_s") or 0.0))


def list_studies(storage: str | None = None) -> list[dict[str, Any]]:
    """One dict per stored study: name, strategy, objectives, n_trials, target, dates."""
    return StudyStorage(storage).list()


def delete_study(study: str, storage: str | None = None) -> None:
    """Delete a stored study and its trials."""
    StudyStorage(storage).delete(study)


# --------------------------------------------------------------------------- coordinator


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


class _Progress:
    """A Rich progress bar (stderr) with ETA and best-so-far, or nothing."""

    def __init__(self, enabled: bool, name: str, total: int, done: int) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("best {task.fields[best]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, completed=done, best="-")

    def update(self, done: int, best: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, best=best)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _Best:
    """Best-so-far text for the progress bar, kept up to date cheaply."""

    def __init__(self, records: Sequence[TrialRecord], directions: Sequence[str]) -> None:
        self.directions = list(directions)
        self.best: float | None = None
        self.front_at = 0.0
        self.text = "-"
        for r in records:
            self.add(r)
        self.refresh(records, force=True)

    def add(self, record: TrialRecord) -> None:
        if record.state != "complete" or not record.values or len(self.directions) > 1:
            return
        value = record.values[0]
        if self.best is None or _better(value, self.best, self.directions[0]):
            self.best = value
            self.text = f"{value:.4g}"

    def refresh(self, records: Sequence[TrialRecord], force: bool = False) -> str:
        if len(self.directions) > 1 and (force or time.monotonic() - self.front_at > 5.0):
            # the Pareto front costs O(n^2): recomputed at most every 5 seconds
            self.front_at = time.monotonic()
            size = len(pareto_front(records, self.directions))
            self.text = f"{size} on the Pareto front" if size else "-"
        return self.text


def _batch_size(sampler: str, workers: int, prune: bool) -> int:
    if sampler in _ADAPTIVE or prune:
        # small batches so the sampler (or the pruner) learns between them; the same
        # for 1 and 2 workers
        return max(8, 4 * workers)
    # independent samplers: big batches keep both workers busy while the coordinator
    # tells and stores the previous batch
    return 256 * max(1, workers)


def _run(
    plan: _Plan, *, target: int, jobs: int | None, ray_address: str | None, progress: bool
) -> StudyResult:
    import optuna

    config = plan.stored.config
    sampler_name = str(config["sampler"])
    seed = config.get("seed")
    directions = list(plan.stored.directions)
    records = plan.records
    if sampler_name == "grid":
        size = _grid_size(plan.space)
        if target > size:
            target = size
    # the grid keeps its shuffled order on resume; other samplers get a fresh seed so a
    # resumed study does not replay the points it already tried
    sampler_seed = seed if seed is None or sampler_name == "grid" else seed + len(records)
    sampler = _make_sampler(sampler_name, sampler_seed, plan.space, len(directions))
    prune = bool(config.get("prune"))
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
        if prune
        else optuna.pruners.NopPruner()
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy: Any
    if sampler_name == "random" and not prune:
        # independent draws, no pruner: nothing needs Optuna's trial bookkeeping
        ostudy = RandomTrials(sampler_seed, len(records))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ostudy = optuna.create_study(
                directions=directions,  # type: ignore[arg-type]
                sampler=sampler,
                pruner=pruner,
            )
            if records:
                ostudy.add_trials([_frozen(r, plan.space, len(directions)) for r in records])
    started = time.perf_counter()
    elapsed_before = float(config.get("elapsed_s") or 0.0)
    bar = _Progress(progress, plan.stored.name, target, len(records))
    best = _Best(records, directions)
    shared: Any = None
    try:
        if len(records) < target:
            from sapphire.optimize.executor import make_executor

            with make_executor(jobs, ray_address) as executor, rare_gc_passes():
                data: Any = plan.bars
                if getattr(executor, "workers", 1) > 1 or ray_address:
                    from sapphire.optimize.shared import SharedBars

                    shared = SharedBars.create(plan.bars)
                    data = shared
                inline = data is plan.bars
                context = TrialContext(
                    data=data,
                    strategy=plan.strategy if inline else str(config["strategy"]),
                    options=plan.context_options,
                    objectives=plan.objectives,
                    constraints=plan.constraints,
                    min_trades=int(config.get("min_trades", 1)),
                )
                batch = _batch_size(sampler_name, int(getattr(executor, "workers", 1)), prune)
                if prune:
                    while len(records) < target:
                        n = min(batch, target - len(records))
                        for record in _run_batch(ostudy, plan, executor, context, n, prune):
                            records.append(record)
                            best.add(record)
                        bar.update(len(records), best.refresh(records))
                else:
                    # pipelined: the next batch is asked and sent to the workers before
                    # the current one is told and stored, so the workers never wait for
                    # the coordinator's bookkeeping
                    asked_total = len(records)
                    pending: _Batch | None = None
                    while len(records) < target:
                        if pending is None:
                            n = min(batch, target - asked_total)
                            pending = _submit(ostudy, plan, executor, context, n)
                            asked_total += n
                        following = None
                        if asked_total < target:
                            n = min(batch, target - asked_total)
                            following = _submit(ostudy, plan, executor, context, n)
                            asked_total += n
                        for record in _finish(ostudy, plan, pending):
                            records.append(record)
                            best.add(record)
                        bar.update(len(records), best.refresh(records))
                        pending = following
    except KeyboardInterrupt:
        bar.close()
        _save_elapsed(plan, elapsed_before + time.perf_counter() - started)
        print(
            f"\ninterrupted: {len(records)} trials of study {plan.stored.name!r} are saved; "
            f"continue with: sapphire optimize resume {plan.stored.name}",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
        if shared is not None:
            shared.cleanup()
    elapsed = elapsed_before + time.perf_counter() - started
    _save_elapsed(plan, elapsed)
    return _build_result(plan.stored, records, elapsed)


def _save_elapsed(plan: _Plan, elapsed: float) -> None:
    plan.stored.config["elapsed_s"] = round(elapsed, 3)
    plan.storage.update_config(plan.stored, plan.stored.config)


@dataclass
class _Batch:
    """Trials asked and sent to the workers, not yet told."""

    asked: list[tuple[Any, dict[str, Any], str | None]]
    alive: list[int]
    results: Iterator[dict[str, Any]]


def _tell(
    study: optuna.Study | RandomTrials, trial: Any, values: Any = None, state: Any = None
) -> None:
    """`study.tell` without the deep copy of the finished trial it returns (a tenth of
    a millisecond per trial, which the coordinator cannot afford at hundreds of trials/s).
    Falls back to the public call if Optuna's internal function moves. Plain random
    search (`RandomTrials`) has nothing to tell."""
    if isinstance(study, RandomTrials):
        return
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # pragma: no cover - a future Optuna
        study.tell(trial, values, state=state)
        return
    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)


def _ask(ostudy: Any, plan: _Plan, n: int) -> list[tuple[Any, dict[str, Any], str | None]]:
    """Ask `n` trials and sample their parameters; note the sets Strategy.check() refuses."""
    asked: list[tuple[Any, dict[str, Any], str | None]] = []
    for _ in range(n):
        trial = ostudy.ask()
        params = plan.space.suggest(trial)
        problem = None
        try:
            plan.strategy(**params)  # Strategy.check(): an inconsistent set is infeasible
        except ValueError as exc:
            problem = str(exc)
        asked.append((trial, params, problem))
    return asked


def _submit(ostudy: Any, plan: _Plan, executor: Any, context: TrialContext, n: int) -> _Batch:
    """Ask a batch and start evaluating its feasible trials (infeasible ones are told now)."""
    from optuna.trial import TrialState

    asked = _ask(ostudy, plan, n)
    for trial, _params, problem in asked:
        if problem is not None:
            _tell(ostudy, trial, state=TrialState.FAIL)
    alive = [i for i, (_, _, problem) in enumerate(asked) if problem is None]
    items = [{"params": asked[i][1]} for i in alive]
    results: Iterator[dict[str, Any]] = (
        iter(executor.map(evaluate_trial, context, items)) if items else iter(())
    )
    return _Batch(asked, alive, results)


def _finish(ostudy: Any, plan: _Plan, batch: _Batch) -> Iterator[TrialRecord]:
    """Collect a batch's results in order, tell Optuna, store the batch, yield its records.

    On Ctrl-C the trials finished so far (a contiguous run of trial numbers) are stored
    before the interrupt propagates.
    """
    from optuna.trial import TrialState

    finished: dict[int, TrialRecord] = {}
    for i, (trial, params, problem) in enumerate(batch.asked):
        if problem is not None:
            finished[i] = TrialRecord(trial.number, params, None, "infeasible", {}, None, 0.0,
                                      error=problem)  # fmt: skip
    try:
        for i, out in zip(batch.alive, batch.results, strict=True):
            trial, params, _ = batch.asked[i]
            if out["state"] == "complete":
                _tell(ostudy, trial, values=out["values"])
            else:
                _tell(ostudy, trial, state=TrialState.FAIL)
            finished[i] = TrialRecord(
                trial.number, params, out["values"], out["state"], out["metrics"],
                out["moments"], float(out["duration_s"]), error=out.get("error"),
            )  # fmt: skip
    except KeyboardInterrupt:
        upto = 0
        while upto in finished:
            upto += 1
        done = [finished[i] for i in range(upto)]
        plan.storage.add_trials(plan.stored, done)
        yield from done
        raise
    done = [finished[i] for i in range(len(batch.asked))]
    plan.storage.add_trials(plan.stored, done)
    yield from done


def _run_batch(
    ostudy: optuna.Study,
    plan: _Plan,
    executor: Any,
    context: TrialContext,
    n: int,
    prune: bool,
) -> Iterator[TrialRecord]:
    """Ask `n` trials and evaluate them in pruning stages (25%, 50%, all of the bars);
    tell Optuna, store the batch, yield the records in order. A Ctrl-C drops the batch.
    """
    from optuna.trial import TrialState

    asked = _ask(ostudy, plan, n)

    finished: dict[int, TrialRecord] = {}
    intermediate: dict[int, dict[int, float]] = {}
    durations: dict[int, float] = {}
    alive = [i for i, (_, _, problem) in enumerate(asked) if problem is None]
    for i, (trial, params, problem) in enumerate(asked):
        if problem is not None:
            _tell(ostudy, trial, state=TrialState.FAIL)
            finished[i] = TrialRecord(trial.number, params, None, "infeasible", {}, None, 0.0,
                                      error=problem)  # fmt: skip
    stages = (*PRUNE_STAGES, 1.0) if prune else (1.0,)
    for step, fraction in enumerate(stages):
        if not alive:
            break
        items = [{"params": asked[i][1], "fraction": fraction} for i in alive]
        survivors = []
        results = executor.map(evaluate_trial, context, items)
        for i, out in zip(alive, results, strict=True):
            trial, params, _ = asked[i]
            durations[i] = durations.get(i, 0.0) + float(out["duration_s"])
            if fraction < 1.0:
                value = (out.get("values") or [math.nan])[0]
                if out["state"] == "complete" and math.isfinite(value):
                    trial.report(value, step)
                    intermediate.setdefault(i, {})[step] = value
                    if trial.should_prune():
                        _tell(ostudy, trial, state=TrialState.PRUNED)
                        finished[i] = TrialRecord(
                            trial.number, params, None, "pruned", out["metrics"], None,
                            durations[i], intermediate=intermediate[i],
                        )  # fmt: skip
                        continue
                elif out["state"] == "failed":
                    _tell(ostudy, trial, state=TrialState.FAIL)
                    finished[i] = TrialRecord(trial.number, params, None, "failed",
                                              out["metrics"], None, durations[i],
                                              error=out.get("error"))  # fmt: skip
                    continue
                survivors.append(i)
                continue
            if out["state"] == "complete":
                _tell(ostudy, trial, values=out["values"])
            else:
                _tell(ostudy, trial, state=TrialState.FAIL)
            finished[i] = TrialRecord(
                trial.number, params, out["values"], out["state"], out["metrics"],
                out["moments"], durations[i], error=out.get("error"),
                intermediate=intermediate.get(i, {}),
            )  # fmt: skip
        alive = survivors
    done = [finished[i] for i in range(len(asked))]
    plan.storage.add_trials(plan.stored, done)
    yield from done
