"""The coordinator of a study: ask the sampler for a batch of trials, send them to the
executor's workers, tell Optuna the results, store the batch, repeat.

Without pruning the batches are pipelined (the next batch is on the workers while the
coordinator tells and stores the current one); with pruning each batch runs stage by
stage (`samplers.PRUNE_STAGES`, then all of the bars).
"""

from __future__ import annotations

import math
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
                batch = batch_size(sampler_name, int(getattr(executor, "workers", 1)), prune)
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
    return build_result(plan.stored, records, elapsed)


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
                intermediate=intermediate.get(i, {}),
            )  # fmt: skip
        alive = survivors
    done = [finished[i] for i in range(len(asked))]
    plan.storage.add_trials(plan.stored, done)
    yield from done
