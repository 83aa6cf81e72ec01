"""One trial, as a worker runs it: backtest a parameter set on the study's bars and
return its objective values, metrics and return moments (or why it is infeasible).

Module-level and light to import: the executor's workers import this module (and the
backtest engine), not the coordinator's storage or Optuna.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.registry import get_strategy

if TYPE_CHECKING:
    from sapphire.backtest.result import BacktestResult
    from sapphire.optimize.objectives import Constraint, Objective

__all__ = ["TrialContext", "evaluate_trial"]

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

    # a trial gets here only with equity > 0 at every bar (a ruined one is not scored),
    # so every return is finite
    return bar_returns(result.equity.to_numpy(dtype=np.float64), float(result.config["cash"]))


def evaluate_trial(context: TrialContext, item: dict[str, Any]) -> dict[str, Any]:
    """Backtest one parameter set; runs in a worker (module-level, picklable).

    `item` = {"params": {...}, "fraction": 1.0}. With a fraction < 1 (a pruning stage)
    only the leading part of the bars is used and only the first objective is returned.
    Returns {"state", "values", "metrics", "moments", "error", "duration_s", "in_sample",
    "caveats", "settings"} (the last three, of a full run: the bars a fitted model scored
    inside its training window and the strategy's caveats about them, as the strategy
    says; the run's costs and sizing, `BacktestResult.settings`); the state is
    "complete", "ruined" (equity reached zero: `is_ruined`), "infeasible" (too few
    trades, a constraint violated) or "failed".
    """
    from sapphire.backtest.metrics import is_ruined
    from sapphire.backtest.runner import Backtest

    started = time.perf_counter()
    fraction = float(item.get("fraction", 1.0))
    out: dict[str, Any] = {"state": "complete", "values": None, "metrics": {},
                           "moments": None, "error": None}  # fmt: skip
    try:
        bars = context.bars()
        if fraction < 1.0:
            bars = _prefix(bars, fraction)
        cls = _strategy_class(context.strategy)
        bt = Backtest(bars, cls, **context.options, **item["params"])
        result = bt.run()
        out["metrics"] = {k: float(v) for k, v in result.metrics.items()}
        if fraction >= 1.0:
            out["in_sample"] = result.in_sample
            out["caveats"] = list(getattr(bt.strategy, "caveats", ()))
            out["settings"] = {
                **result.settings(),
                "risk_profile": result.config.get("risk_profile"),
            }
        if fraction < 1.0:
            out["values"] = [context.objectives[0].value(result)]
        else:
            n_trades = int(result.metrics.get("n_trades", 0))
            if is_ruined(result.metrics):
                lowest = float(result.equity.to_numpy().min())
                out["state"] = "ruined"
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
