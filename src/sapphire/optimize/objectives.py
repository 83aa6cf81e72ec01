"""What a study optimises (objectives) and what a trial must satisfy (constraints).

Every objective is read from a `BacktestResult`: a metric key (see docs/backtest.md)
or a user function `f(result) -> float`. Directions of the built-ins:

- maximised: sharpe, sortino, calmar, total_return, profit_factor, expectancy, and
  **max_drawdown** — Sapphire reports drawdown as a negative fraction (-0.12 is a 12%
  drop), so maximising it means "closest to 0", i.e. the smallest drawdown;
- minimised: volatility, max_drawdown_duration_days, fees;
- any other metric key is maximised unless written `metric:min` (or `:max`).

Constraints: `min_trades` (the trial needs at least that many closed trades) and user
functions `f(result) -> bool` (True = acceptable). A trial that violates one is
"infeasible": it gets no objective value and the sampler sees it as failed.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sapphire.backtest.result import BacktestResult

Direction = Literal["maximize", "minimize"]
_DIRECTIONS: dict[str, Direction] = {
    "max": "maximize",
    "maximize": "maximize",
    "maximise": "maximize",
    "min": "minimize",
    "minimize": "minimize",
    "minimise": "minimize",
}
_MINIMIZED = {"volatility", "max_drawdown_duration_days", "fees"}


@dataclass(frozen=True)
class Objective:
    """One objective: a metric key or a function of the backtest result, and a direction."""

    name: str
    metric: str | None
    direction: Direction
    func: Callable[[BacktestResult], float] | None = None

    def value(self, result: BacktestResult) -> float:
        """Return the objective's value for one backtest (NaN when undefined)."""
        if self.func is not None:
            raw = self.func(result)
        else:
            raw = result.metrics.get(str(self.metric), math.nan)
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ValueError(
                f"objective {self.name!r} returned {raw!r}, expected a number"
            ) from None

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description from which `resolve_objective` rebuilds it."""
        return {"name": self.name, "metric": self.metric, "direction": self.direction,
                "ref": callable_ref(self.func) if self.func is not None else None}  # fmt: skip


def _builtin(name: str, direction: Direction = "maximize") -> Objective:
    return Objective(name, name, direction)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        _builtin("sharpe"),
        _builtin("sortino"),
        _builtin("calmar"),
        _builtin("total_return"),
        _builtin("profit_factor"),
        _builtin("max_drawdown"),  # negative fraction: maximise = closest to 0
        _builtin("expectancy"),
    )
}


def callable_ref(func: Callable[..., Any]) -> str | None:
    """Return `module:qualname` for an importable function, else None (lambda, local)."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"


def import_ref(ref: str) -> Any:
    """Import `module:qualname` (the inverse of `callable_ref`)."""
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {ref!r}: {exc}") from None
    return obj


def _direction(value: str) -> Direction:
    try:
        return _DIRECTIONS[value.strip().lower()]
    except KeyError:
        raise ValueError(
            f"direction {value!r} is not one of maximize, minimize (or max, min)"
        ) from None


def resolve_objective(
    spec: str | Objective | Callable[[BacktestResult], float] | dict[str, Any],
    direction: str | None = None,
) -> Objective:
    """Return the Objective for a name (`sharpe`, `win_rate:min`), a function or a spec dict.

    A function is maximised unless `direction="minimize"`; its name is its `__name__`.
    """
    from sapphire.backtest.metrics import METRIC_KEYS

    if isinstance(spec, Objective):
        return (
            spec
            if direction is None
            else Objective(spec.name, spec.metric, _direction(direction), spec.func)
        )
    if isinstance(spec, dict):
        if spec.get("ref"):
            func = import_ref(str(spec["ref"]))
            return Objective(str(spec["name"]), None, _direction(spec["direction"]), func)
        if spec.get("metric") is None:
            raise ValueError(
                f"objective {spec.get('name')!r} was a function that cannot be imported "
                "(a lambda or a local function); define it at module level"
            )
        return Objective(str(spec["name"]), str(spec["metric"]), _direction(spec["direction"]))
    if callable(spec):
        name = getattr(spec, "__name__", None) or type(spec).__name__
        return Objective(name, None, _direction(direction or "maximize"), spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"objective must be a metric name or a function, got {spec!r}")
    name, _, suffix = spec.strip().partition(":")
    if name not in OBJECTIVES and name not in METRIC_KEYS:
        raise ValueError(
            f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)} "
            f"or a metric key ({', '.join(METRIC_KEYS)}) or a function of the result"
        )
    if suffix or direction:
        chosen = _direction(direction or suffix)
    elif name in OBJECTIVES:
        chosen = OBJECTIVES[name].direction
    else:
        chosen = "minimize" if name in _MINIMIZED else "maximize"
    label = spec.strip() if suffix else name
    return Objective(label, name, chosen)


@dataclass(frozen=True)
class Constraint:
    """A feasibility test of a backtest result: `func(result)` must return True."""

    name: str
    func: Callable[[BacktestResult], bool]

    def ok(self, result: BacktestResult) -> bool:
        """True when the result satisfies the constraint."""
        out = self.func(result)
        if not isinstance(out, bool | int):
            raise ValueError(f"constraint {self.name!r} returned {out!r}, expected True/False")
        return bool(out)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description (`ref` is None for a lambda or local function)."""
        return {"name": self.name, "ref": callable_ref(self.func)}


def resolve_constraint(
    spec: Callable[[BacktestResult], bool] | Constraint | dict[str, Any],
) -> Constraint:
    """Return the Constraint for a function `f(result) -> bool` or a stored spec dict."""
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, dict):
        if not spec.get("ref"):
            raise ValueError(
                f"constraint {spec.get('name')!r} was a function that cannot be imported "
                "(a lambda or a local function); define it at module level"
            )
        return Constraint(str(spec["name"]), import_ref(str(spec["ref"])))
    if not callable(spec):
        raise ValueError(f"a constraint must be a function of the result, got {spec!r}")
    return Constraint(getattr(spec, "__name__", None) or type(spec).__name__, spec)


def check_min_trades(min_trades: int) -> int:
    """Validate the minimum number of trades (an int >= 0)."""
    if isinstance(min_trades, bool) or not isinstance(min_trades, int) or min_trades < 0:
        raise ValueError(f"min_trades={min_trades!r} is invalid: expected a whole number >= 0")
    return min_trades
