"""The coordinator of a study: ask the sampler for a batch of trials, send them to the
executor's workers, tell Optuna the results, store the batch, repeat.

Without pruning the batches are pipelined (the next batch is on the workers while the
coordinator tells and stores the current one); with pruning each batch runs stage by
stage (`samplers.PRUNE_STAGES`, then all of the bars). With the default `jobs` (0 or
None) the first batch runs in this process and the rest goes to a pool of one worker
per core only when the first batch's trial times say the pool pays on the CPUs that
other work leaves idle (`_pool_pays`, `idle_cpus`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sapphire.gc_tuning import rare_gc_passes
from sapphire.optimize.samplers import PRUNE_STAGES, batch_size, grid_size, make_study
from sapphire.optimize.space import RandomTrials
from sapphire.optimize.storage import TrialRecord
from sapphire.optimize.study_result import StudyResult, better, build_result, pareto_front
from sapphire.optimize.study_setup import Plan
from sapphire.optimize.trial import TrialContext, evaluate_trial

if TYPE_CHECKING:
    import optuna

__all__ = ["run_study"]


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
        if self.best is None or better(value, self.best, self.directions[0]):
            self.best = value
            self.text = f"{value:.4g}"

    def refresh(self, records: Sequence[TrialRecord], force: bool = False) -> str:
        if len(self.directions) > 1 and (force or time.monotonic() - self.front_at > 5.0):
            # the Pareto front costs O(n^2): recomputed at most every 5 seconds
            self.front_at = time.monotonic()
            size = len(pareto_front(records, self.directions))
            self.text = f"{size} on the Pareto front" if size else "-"
        return self.text


def run_study(
    plan: Plan, *, target: int, jobs: int | None, ray_address: str | None, progress: bool
) -> StudyResult:
    """Run `plan` until it holds `target` trials (fewer for a smaller grid), storing them
    batch by batch; a Ctrl-C keeps every stored trial and says how to resume."""
    config = plan.stored.config
    sampler_name = str(config["sampler"])
    directions = list(plan.stored.directions)
    records = plan.records
    if sampler_name == "grid":
        target = min(target, grid_size(plan.space))
    prune = bool(config.get("prune"))
    ostudy: Any = make_study(
        sampler_name, config.get("seed"), plan.space, directions, prune, records
    )
    started = time.perf_counter()
    elapsed_before = float(config.get("elapsed_s") or 0.0)
    bar = _Progress(progress, plan.stored.name, target, len(records))
    best = _Best(records, directions)
    try:
        if len(records) < target:
            from sapphire.optimize.executor import resolve_jobs

            loop = _Loop(plan, ostudy, records, bar, best, sampler_name, prune, ray_address)
            workers = 1 if ray_address else resolve_jobs(jobs)
            if auto_jobs(jobs) and not ray_address and workers > 1:
                # the default: trials run in this process unless the first batch's
                # durations say that worker processes would save more than they cost;
                # the batches are those of `workers`, so a seeded study asks the same
                # trials whichever way they run
                batch = batch_size(sampler_name, workers, prune)
                loop.run(1, target, batch, stop_at=min(target, len(records) + batch))
                remaining = target - len(records)
                if remaining:
                    usable = min(float(workers), idle_cpus(workers))
                    pays = _pool_pays(loop.durations, remaining, usable)
                    loop.run(jobs if pays else 1, target, batch)
            else:
                loop.run(jobs, target)
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
    elapsed = elapsed_before + time.perf_counter() - started
    _save_elapsed(plan, elapsed)
    return build_result(plan.stored, records, elapsed)


# the local pool's start-up, about 0.7-1 s on the 2-core reference machine; the default
# starts it only when the workers should save at least twice that
POOL_START_S = 1.0


def auto_jobs(jobs: int | None) -> bool:
    """True for the default `jobs` (None or 0): the number of workers is chosen."""
    return jobs is None or (jobs == 0 and not isinstance(jobs, bool))


def idle_cpus(cpus: int) -> float:
    """The CPUs other work leaves free: `cpus` less the 1-minute load average (this
    process's own share excluded), at least 1."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows)
        return float(cpus)
    return max(1.0, cpus - max(0.0, load - 1.0))


def _pool_pays(durations: Sequence[float], remaining: int, workers: float) -> bool:
    """True when `remaining` trials, each as long as the median of `durations`, would
    finish on `workers` processes (the CPUs they can use) at least 2 x POOL_START_S
    sooner than in this one."""
    if not durations:
        return False
    per_trial = sorted(durations)[len(durations) // 2]  # the first trial loads the kernels
    saved = remaining * per_trial * (1.0 - 1.0 / max(1.0, workers))
    return saved >= 2.0 * POOL_START_S


class _Loop:
    """The batch loop of a study, run on one executor after another (the default tries
    this process first); keeps the records, the progress bar and the trial durations."""

    def __init__(
        self,
        plan: Plan,
        ostudy: Any,
        records: list[TrialRecord],
        bar: _Progress,
        best: _Best,
        sampler: str,
        prune: bool,
        ray_address: str | None,
    ) -> None:
        self.plan, self.ostudy, self.records = plan, ostudy, records
        self.bar, self.best, self.sampler, self.prune = bar, best, sampler, prune
        self.ray_address = ray_address
        self.durations: list[float] = []
        self.asked = len(records)  # trials asked so far (stored or pending)
        self.pending: _Batch | None = None  # asked, not yet told (left by a stop_at)

    def _add(self, record: TrialRecord) -> None:
        self.records.append(record)
        self.best.add(record)
        if record.duration_s > 0:  # backtested (a set the strategy refused was not)
            self.durations.append(record.duration_s)

    def run(
        self, jobs: int | None, target: int, batch: int | None = None, stop_at: int | None = None
    ) -> None:
        """Run batches on `make_executor(jobs, ...)` towards `target` trials, `batch`
        trials each (default: `batch_size` of the executor's workers), until the study
        holds `stop_at` (default `target`) trials. The batch asked ahead stays pending
        for the next run, so the sampler is asked and told in the same order as in one
        run (a seeded study gives the same trials)."""
        stop_at = target if stop_at is None else stop_at
        from sapphire.optimize.executor import make_executor

        plan, ostudy, records = self.plan, self.ostudy, self.records
        config = plan.stored.config
        shared: Any = None
        try:
            with make_executor(jobs, self.ray_address) as executor, rare_gc_passes():
                data: Any = plan.bars
                if getattr(executor, "workers", 1) > 1 or self.ray_address:
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
                if batch is None:
                    workers = int(getattr(executor, "workers", 1))
                    batch = batch_size(self.sampler, workers, self.prune)
                if self.prune:  # stage by stage: nothing is asked ahead
                    while len(records) < stop_at:
                        n = min(batch, stop_at - len(records))
                        for record in _run_batch(ostudy, plan, executor, context, n, True):
                            self._add(record)
                        self.bar.update(len(records), self.best.refresh(records))
                    return
                # pipelined: the next batch is asked and sent to the workers before the
                # current one is told and stored, so the workers never wait for the
                # coordinator's bookkeeping
                pending, self.pending = self.pending, None
                while len(records) < stop_at:
                    if pending is None:
                        n = min(batch, target - self.asked)
                        pending = _submit(ostudy, plan, executor, context, n)
                        self.asked += n
                    following = None
                    if self.asked < target:
                        n = min(batch, target - self.asked)
                        following = _submit(ostudy, plan, executor, context, n)
                        self.asked += n
                    for record in _finish(ostudy, plan, pending):
                        self._add(record)
                    self.bar.update(len(records), self.best.refresh(records))
                    pending = following
                self.pending = pending
        finally:
            if shared is not None:
                shared.cleanup()


def _save_elapsed(plan: Plan, elapsed: float) -> None:
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


def _ask(ostudy: Any, plan: Plan, n: int) -> list[tuple[Any, dict[str, Any], str | None]]:
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


def _ran(out: dict[str, Any]) -> dict[str, Any]:
    """A full trial's in-sample window, caveats and settings, for its `TrialRecord`."""
    return {
        "in_sample": out.get("in_sample"),
        "caveats": list(out.get("caveats") or []),
        "settings": dict(out.get("settings") or {}),
    }


def _submit(ostudy: Any, plan: Plan, executor: Any, context: TrialContext, n: int) -> _Batch:
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


def _finish(ostudy: Any, plan: Plan, batch: _Batch) -> Iterator[TrialRecord]:
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
                **_ran(out),
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
    plan: Plan,
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
                intermediate=intermediate.get(i, {}), **_ran(out),
            )  # fmt: skip
        alive = survivors
    done = [finished[i] for i in range(len(asked))]
    plan.storage.add_trials(plan.stored, done)
    yield from done
