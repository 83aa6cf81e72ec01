"""A study's outcome: its trials, the best of them (or the Pareto front) and the
overfitting statistics of the search (deflated Sharpe ratio, PBO)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sapphire.encoding import jsonable
from sapphire.optimize.storage import StoredStudy, TrialRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "StudyResult",
    "better",
    "build_result",
    "distinct",
    "pareto_front",
    "trial_counts",
]

TOP_N = 10


def trial_counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    """Trials per state: complete, infeasible (refused by the strategy's check, too few
    trades, a constraint), ruined (equity reached zero, `is_ruined`), failed, pruned.
    An older study's infeasible trial whose metrics show ruin counts as ruined."""
    from sapphire.backtest.metrics import is_ruined

    counts = dict.fromkeys(("complete", "infeasible", "ruined", "failed", "pruned"), 0)
    for r in records:
        state = r.state
        if state == "infeasible" and r.metrics and is_ruined(r.metrics):
            state = "ruined"
        counts[state] = counts.get(state, 0) + 1
    return counts


def distinct(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The records with a parameter set not seen earlier in the sequence (pass them best
    first to keep the best trial of each set)."""
    seen: set[tuple[tuple[str, Any], ...]] = set()
    out = []
    for r in records:
        key = tuple(sorted(r.params.items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


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

    @property
    def counts(self) -> dict[str, int]:
        """Trials per state, ruined apart from infeasible (see `trial_counts`)."""
        return trial_counts(self.trials)

    def _scored(self) -> TrialRecord | None:
        """The trial whose backtest the study's caveats and settings come from: the best
        one, else the first that ran a full backtest."""
        best = self.best_trial
        if best is not None and best.settings:
            return best
        return next((t for t in self.trials if t.settings), None)

    @property
    def in_sample(self) -> dict[str, Any] | None:
        """The bars a fitted model scored inside its own training window (`ml` strategy:
        model, bars, of, first, last, train_start, train_end), in the best trial's
        backtest; None when none did. The same for every trial unless the model is a
        searched parameter."""
        trial = self._scored()
        return None if trial is None else trial.in_sample

    @property
    def warnings(self) -> list[str]:
        """The caveats of the best trial's backtest (a model scored in-sample...)."""
        trial = self._scored()
        return [] if trial is None else list(trial.caveats)

    @property
    def settings(self) -> dict[str, Any]:
        """The trials' fees, size mode and size, leverage and intrabar model
        (`BacktestResult.settings`; empty for a study stored before they were kept)."""
        trial = self._scored()
        return {} if trial is None else dict(trial.settings)

    def caption(self) -> str | None:
        """`settings_caption` of the trials' settings (None when not stored)."""
        from sapphire.backtest.result import settings_caption

        settings = self.settings
        return settings_caption(settings) if settings else None

    def top_trials(self, n: int = TOP_N) -> list[TrialRecord]:
        """The best `n` distinct parameter sets (the best trial of each): by the objective,
        or the Pareto front with several objectives."""
        if len(self.objectives) > 1:
            return distinct(self.best_trials)[:n]
        done = [t for t in self.trials if t.state == "complete" and t.values]
        sign = -1.0 if self.directions[0] == "maximize" else 1.0
        ranked = sorted(done, key=lambda t: (sign * t.values[0], t.number))  # type: ignore[index]
        return distinct(ranked)[:n]

    def to_json(self) -> dict[str, Any]:
        """study, n_trials, states, space_size, best_params, best_value, top_trials, dsr,
        pbo, elapsed_s, warnings, in_sample, settings (+ objectives)."""
        return jsonable(
            {
                "study": self.name,
                "strategy": self.strategy,
                "objectives": list(self.objectives),
                "directions": list(self.directions),
                "n_trials": self.n_trials,
                "states": self.counts,
                "space_size": self.config.get("space_size"),
                "best_params": dict(self.best_params),
                "best_value": self.best_value,
                "best_metrics": dict(self.best_trial.metrics) if self.best_trial else None,
                "top_trials": [{"number": t.number, "values": t.values, "params": t.params}
                               for t in self.top_trials()],
                "pareto_front": (
                    [{"number": t.number, "values": t.values, "params": t.params}
                     for t in self.best_trials]
                    if len(self.objectives) > 1 else None
                ),
                "dsr": self.dsr,
                "pbo": self.pbo,
                "elapsed_s": round(self.elapsed_s, 3),
                "warnings": self.warnings,
                "in_sample": self.in_sample,
                "settings": self.settings,
            },
            "study result",
            str_keys=True,
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


def better(a: float, b: float, direction: str) -> bool:
    """True if objective value `a` beats `b` in `direction` ("maximize" or "minimize")."""
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


def build_result(stored: StoredStudy, records: list[TrialRecord], elapsed_s: float) -> StudyResult:
    """A stored study's verdict: its best trial (or Pareto front) and the overfitting
    statistics of the search."""
    directions = list(stored.directions)
    done = [r for r in records if r.state == "complete" and r.values is not None]
    if len(directions) == 1:
        best_list: list[TrialRecord] = []
        for r in done:
            assert r.values is not None
            if not best_list or better(r.values[0], best_list[0].values[0], directions[0]):  # type: ignore[index]
                best_list = [r]
        front = best_list
    else:
        front = distinct(pareto_front(records, directions))
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
