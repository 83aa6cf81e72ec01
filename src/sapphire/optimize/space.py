"""The search space of a study, built from a Strategy's declared `Param`s.

Each parameter with a range becomes a dimension: an int (with its `step`, default 1),
a float (optionally `log=True`, optionally a `step`), or a categorical (`choices`; a
bool is the categorical [False, True]). Parameters without a range (a number with no
`low`/`high`, a str without `choices`) stay at their default unless overridden.

Overrides (`space=`) are validated by name:
- `(low, high)` or `(low, high, step)`: a numeric range, the parameter's own type;
- a list `[a, b, c]`: a categorical of those values;
- any other single value: the parameter is fixed at that value (not searched).

A conditional parameter (`Param(..., when={"short": True})`) is only sampled in trials
where every named parameter has the given value; otherwise it keeps its default.
Parameters are suggested in declaration order so conditions see their values.

The strategy's declared `constraints` (e.g. `fast < slow`) shape the space: each range
is first narrowed to the values that some value of its partner allows (fast <= 999 for
slow <= 1000), and a parameter suggested after its partner is sampled from the range
the partner's value leaves (slow in [fast + 1, 1000]); the grid keeps only the points
that satisfy every constraint. So every sampled set passes the strategy's check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from sapphire.strategy.base import Param, Relation, Strategy

Kind = Literal["int", "float", "categorical"]


@dataclass(frozen=True)
class Dimension:
    """One searched parameter."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    when: dict[str, Any] | None = None

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of this dimension."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices or ()))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask the trial for a value of this dimension."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices or ()))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def grid_values(self) -> list[Any]:
        """Every value of the dimension for a grid search (needs a step or choices)."""
        if self.kind == "categorical":
            return list(self.choices or ())
        if self.step is None and self.kind == "float":
            raise ValueError(
                f"grid search needs a step or choices for parameter {self.name!r} "
                f"(a float range [{self.low}, {self.high}]); give space={{'{self.name}': "
                f"(low, high, step)}} or a list of values"
            )
        if self.log:
            raise ValueError(
                f"grid search cannot walk the log-scale range of parameter {self.name!r}; "
                "give it a list of values"
            )
        assert self.low is not None and self.high is not None
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + i * step for i in range(count)]
        if self.kind == "int":
            return [int(v) for v in values]
        return [round(float(v), 12) for v in values]

    def narrowed(self, op: str, bound: float) -> Dimension | None:
        """This dimension keeping only the values `v op bound` (on its step grid, anchored
        at its low); None when no value is left."""
        from sapphire.strategy.base import Relation

        if self.kind == "categorical":
            kept = tuple(c for c in self.choices or () if Relation.compare(c, op, bound))
            if not kept:
                return None
            return self if kept == self.choices else replace(self, choices=kept)
        assert self.low is not None and self.high is not None
        low, high = self.low, self.high
        lower = op in (">", ">=")
        strict = op in ("<", ">")
        if self.step is not None or self.kind == "int":
            step = float(self.step or 1)
            k = (bound - self.low) / step
            if lower:
                n = math.floor(k + 1e-9) + 1 if strict else math.ceil(k - 1e-9)
                low = max(low, self.low + max(n, 0) * step)
            else:
                n = math.ceil(k - 1e-9) - 1 if strict else math.floor(k + 1e-9)
                high = min(high, self.low + n * step)
        elif lower:
            low = max(low, math.nextafter(bound, math.inf) if strict else bound)
        else:
            high = min(high, math.nextafter(bound, -math.inf) if strict else bound)
        if self.kind == "int":
            low, high = round(low), round(high)
        elif self.step is not None:
            low, high = round(low, 12), round(high, 12)
        if low > high:
            return None
        if (low, high) == (self.low, self.high):
            return self
        return replace(self, low=low, high=high)

    def contains(self, value: Any) -> bool:
        """True when `value` lies in this dimension (its range or its choices)."""
        if self.kind == "categorical":
            return value in (self.choices or ())
        assert self.low is not None and self.high is not None
        return bool(self.low <= value <= self.high)

    def span(self) -> tuple[float, float]:
        """The smallest and largest value (of a number range or numeric choices)."""
        if self.kind == "categorical":
            numbers = [float(c) for c in self.choices or ()]
            return min(numbers), max(numbers)
        assert self.low is not None and self.high is not None
        return float(self.low), float(self.high)

    def size(self) -> int | None:
        """The number of values (None for a continuous range)."""
        if self.kind == "categorical":
            return len(self.choices or ())
        if self.kind == "float" and (self.step is None or self.log):
            return None
        assert self.low is not None and self.high is not None
        return math.floor((self.high - self.low) / float(self.step or 1) + 1e-9) + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "step": self.step,
            "log": self.log,
            "choices": list(self.choices) if self.choices is not None else None,
            "when": self.when,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension_from_param(param: Param) -> Dimension | None:
    when = param.when
    if param.choices is not None:
        return Dimension(param.name, "categorical", choices=param.choices, when=when)
    if param.kind is bool:
        return Dimension(param.name, "categorical", choices=(False, True), when=when)
    if param.kind in (int, float) and param.low is not None and param.high is not None:
        kind: Kind = "int" if param.kind is int else "float"
        return Dimension(param.name, kind, param.low, param.high, param.step, param.log, when=when)
    return None


def _dimension_from_override(param: Param, value: Any) -> Dimension | Any:
    """Return a Dimension for a range/list override, or the coerced fixed value."""
    where = f"space[{param.name!r}]"
    if isinstance(value, Mapping):  # the stored form of an override
        if value.get("choices") is not None:
            value = list(value["choices"])
        elif "value" in value:
            value = value["value"]
        else:
            value = (value["low"], value["high"], value.get("step"), bool(value.get("log")))
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where}: the list of choices is empty")
        choices = tuple(param.coerce(v) for v in value)
        return Dimension(param.name, "categorical", choices=choices, when=param.when)
    if isinstance(value, tuple):
        if len(value) not in (2, 3, 4) or not all(_is_number(v) for v in value[:2]):
            raise ValueError(f"{where}: {value!r} is not (low, high) or (low, high, step)")
        if param.kind not in (int, float) or param.choices is not None:
            raise ValueError(
                f"{where}: {param.owner}.{param.name} is a {param.kind.__name__}, "
                "not a number; give a list of values instead of a range"
            )
        low, high = param.coerce(value[0]), param.coerce(value[1])
        step = value[2] if len(value) > 2 else None
        log = bool(value[3]) if len(value) > 3 else (param.log and step is None)
        if low > high:
            raise ValueError(f"{where}: the range is empty (low {low} > high {high})")
        if step is not None and not (_is_number(step) and step > 0):
            raise ValueError(f"{where}: step {step!r} must be a number > 0")
        if param.kind is int and step is not None and float(step) != int(step):
            raise ValueError(f"{where}: step {step!r} of an int parameter must be whole")
        if log and low <= 0:
            raise ValueError(f"{where}: a log-scale range needs low > 0, got {low}")
        kind: Kind = "int" if param.kind is int else "float"
        return Dimension(param.name, kind, low, high, step, log, when=param.when)
    return param.coerce(value)


def _override_to_json(value: Any) -> Any:
    if isinstance(value, list):
        return {"choices": list(value)}
    if isinstance(value, tuple):
        out: dict[str, Any] = {"low": value[0], "high": value[1]}
        if len(value) > 2:
            out["step"] = value[2]
        if len(value) > 3:
            out["log"] = bool(value[3])
        return out
    if isinstance(value, Mapping):
        return dict(value)
    return {"value": value}


class SearchSpace:
    """The dimensions searched and the parameters held fixed, for one strategy."""

    def __init__(
        self,
        strategy: type[Strategy],
        overrides: Mapping[str, Any] | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        self.strategy = strategy
        declared = strategy.params()
        self.overrides = dict(overrides or {})
        fixed = dict(fixed or {})
        for source, names in (("space", self.overrides), ("fixed parameter", fixed)):
            unknown = sorted(set(names) - set(declared))
            if unknown:
                raise ValueError(
                    f"{source} {unknown[0]!r} is not a parameter of strategy "
                    f"{strategy.name!r}; its parameters are: {', '.join(declared) or '(none)'}"
                )
        both = sorted(set(self.overrides) & set(fixed))
        if both:
            raise ValueError(f"parameter {both[0]!r} is both fixed and given a search space")
        self.dimensions: list[Dimension] = []
        self.fixed: dict[str, Any] = {k: declared[k].coerce(v) for k, v in fixed.items()}
        self.defaults: dict[str, Any] = {k: p.default for k, p in declared.items()}
        for name, param in declared.items():
            if name in self.fixed:
                continue
            if name in self.overrides:
                dim = _dimension_from_override(param, self.overrides[name])
            else:
                dim = _dimension_from_param(param)
            if isinstance(dim, Dimension):
                self.dimensions.append(dim)
            elif name in self.overrides:
                self.fixed[name] = dim
        searched = {d.name for d in self.dimensions}
        for dim in self.dimensions:
            for key, want in (dim.when or {}).items():
                if key not in declared:
                    raise ValueError(
                        f"{strategy.name}.{dim.name}: when= names {key!r}, which is not a "
                        f"parameter; its parameters are: {', '.join(declared)}"
                    )
                if key == dim.name:
                    raise ValueError(f"{strategy.name}.{dim.name}: when= names itself")
                if key in searched and list(declared).index(key) > list(declared).index(dim.name):
                    raise ValueError(
                        f"{strategy.name}.{dim.name}: when= names {key!r}, declared after it; "
                        "declare the condition's parameters first"
                    )
                declared[key].coerce(want)
        if not self.dimensions:
            raise ValueError(
                f"strategy {strategy.name!r} has nothing to search: every parameter is fixed "
                "or has no range; give space={name: (low, high)} or a list of values"
            )
        self.relations: tuple[Relation, ...] = strategy.relations()
        self._narrow_to_constraints()

    def _narrow_to_constraints(self) -> None:
        """Narrow each searched range to the values that some value of each constraint
        partner allows (repeated until nothing changes, so chains propagate); a
        ValueError names a constraint that no value can satisfy."""
        where = f"strategy {self.strategy.name!r}"
        for relation in self.relations:
            if not (self._searched(relation.left) or self._searched(relation.right)):
                values = {**self.defaults, **self.fixed}
                if not relation.holds(values):
                    raise ValueError(
                        f"{relation.message(self.strategy.name, values)}; neither is "
                        "searched, so no trial could run"
                    )
        for _ in range(len(self.dimensions) + len(self.relations) + 1):
            changed = False
            for relation in self.relations:
                for name, other in ((relation.left, relation.right),
                                    (relation.right, relation.left)):  # fmt: skip
                    if not self._searched(name):
                        continue
                    index = self.names.index(name)
                    dim = self.dimensions[index]
                    low, high = self._span(other)
                    ops_bounds = [relation.bound(name, {other: v}) for v in (low, high)]
                    op = ops_bounds[0][0]
                    loosest = (min if op in (">", ">=") else max)(b for _, b in ops_bounds)
                    narrowed = dim.narrowed(op, loosest)
                    if narrowed is None:
                        raise ValueError(
                            f"the search space of {where} has no value of {name!r} that "
                            f"satisfies its constraint {relation.describe()} ({other} in "
                            f"[{low:g}, {high:g}]); widen or move the ranges"
                        )
                    if narrowed is not dim:
                        self.dimensions[index] = narrowed
                        changed = True
            if not changed:
                return

    def _searched(self, name: str) -> bool:
        return any(d.name == name for d in self.dimensions)

    def _span(self, name: str) -> tuple[float, float]:
        """The values parameter `name` can take in a trial: its range (with its default
        when it is conditional), or its fixed or default value."""
        for dim in self.dimensions:
            if dim.name == name:
                low, high = dim.span()
                if dim.when:
                    default = float(self.defaults[name])
                    low, high = min(low, default), max(high, default)
                return low, high
        value = float(self.fixed.get(name, self.defaults[name]))
        return value, value

    def _given(self, dim: Dimension, values: Mapping[str, Any]) -> Dimension:
        """`dim` narrowed by the constraints whose other parameter is already in `values`
        (unchanged where that leaves nothing: the strategy's check then refuses the set)."""
        out: Dimension | None = dim
        for relation in self.relations:
            if dim.name not in (relation.left, relation.right):
                continue
            other = relation.right if relation.left == dim.name else relation.left
            if other in values and out is not None:
                out = out.narrowed(*relation.bound(dim.name, dict(values)))
        return dim if out is None else out

    def valid(self, params: Mapping[str, Any]) -> bool:
        """True when a full parameter set satisfies every declared constraint."""
        return all(r.holds(dict(params)) for r in self.relations)

    def size(self, limit: int | None = None) -> int | None:
        """The number of valid points of the space (those that satisfy every declared
        constraint); None when a dimension is continuous, or when the constrained
        dimensions have more than `limit` points together (too many to count)."""
        maybe = [d.size() for d in self.dimensions]
        sizes = [n for n in maybe if n is not None]
        if len(sizes) < len(maybe):
            return None
        linked = [r for r in self.relations if self._searched(r.left) and self._searched(r.right)]
        names = [n for n in self.names if any(n in (r.left, r.right) for r in linked)]
        free = math.prod(n for d, n in zip(self.dimensions, sizes, strict=True)
                         if d.name not in names)  # fmt: skip
        if not names:
            return int(free)
        dims = {d.name: d for d in self.dimensions if d.name in names}
        together = math.prod(len(dims[n].grid_values()) for n in names)
        if limit is not None and together > limit:
            return None
        axes = {}
        for i, name in enumerate(names):
            shape = [1] * len(names)
            shape[i] = -1
            axes[name] = np.asarray(dims[name].grid_values(), dtype=np.float64).reshape(shape)
        mask = np.ones([1] * len(names), dtype=bool)
        for r in linked:
            mask = mask & r.compare(axes[r.left], r.op, r.sign * axes[r.right])
        shape = [len(dims[n].grid_values()) for n in names]
        return int(np.broadcast_to(mask, shape).sum()) * int(free)

    @property
    def names(self) -> list[str]:
        """Names of the searched dimensions, in declaration order."""
        return [d.name for d in self.dimensions]

    def _active(self, dim: Dimension, values: Mapping[str, Any]) -> bool:
        return all(values.get(k) == v for k, v in (dim.when or {}).items())

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one full parameter set (searched, fixed and inactive-default values);
        each parameter's range is narrowed by the constraints with the values before it."""
        values: dict[str, Any] = {}
        active = {d.name: d for d in self.dimensions}
        for name, default in self.defaults.items():
            if name in self.fixed:
                values[name] = self.fixed[name]
            elif name in active and self._active(active[name], values):
                values[name] = self._given(active[name], values).suggest(trial)
            else:
                values[name] = default
        return values

    def active_distributions(self, params: Mapping[str, Any]) -> dict[str, BaseDistribution]:
        """The distributions a trial with these full parameters was sampled from (the
        unnarrowed range for a stored value outside the narrowed one: an older study)."""
        order = list(self.defaults)
        out: dict[str, BaseDistribution] = {}
        for dim in self.dimensions:
            if not self._active(dim, params):
                continue
            before = {k: params[k] for k in order[: order.index(dim.name)] if k in params}
            given = self._given(dim, before)
            if dim.name in params and not given.contains(params[dim.name]):
                given = dim
            out[dim.name] = given.distribution()
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The grid of every searched dimension (a ValueError names one that has none)."""
        return {d.name: d.grid_values() for d in self.dimensions}

    def overrides_json(self) -> dict[str, Any]:
        """The overrides in a JSON form that rebuilds the same space."""
        return {k: _override_to_json(v) for k, v in self.overrides.items()}

    def describe(self) -> list[dict[str, Any]]:
        """The dimensions as JSON-ready dicts."""
        return [d.to_dict() for d in self.dimensions]


class RandomDraw:
    """One trial of plain random search: the `suggest_*` calls of an Optuna trial, each an
    independent uniform draw (log-uniform with `log=True`, on the `step` grid with one)."""

    def __init__(self, number: int, rng: np.random.Generator) -> None:
        self.number = number
        self._rng = rng

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """A whole number in [low, high] on the step grid (log-uniform with `log`)."""
        if log:
            value = math.exp(self._rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return int(min(max(round(value), low), high))
        return int(low + step * int(self._rng.integers(0, (high - low) // step + 1)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """A number in [low, high] (log-uniform with `log`, on the step grid with `step`)."""
        if log:
            return float(min(max(math.exp(self._rng.uniform(math.log(low), math.log(high))),
                                 low), high))  # fmt: skip
        if step is not None:
            count = math.floor((high - low) / step + 1e-9) + 1
            return float(round(low + step * int(self._rng.integers(0, count)), 12))
        return float(self._rng.uniform(low, high))

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        """One of the choices, each equally likely."""
        return choices[int(self._rng.integers(0, len(choices)))]


class RandomTrials:
    """Plain random search without Optuna's bookkeeping: `ask()` numbers the draws from
    `first_number` with one seeded generator. Nothing learns from the results, so a study
    with the random sampler and no pruning needs no tell; this saves the coordinator a few
    tenths of a millisecond per trial, which is what lets two workers scale."""

    def __init__(self, seed: int | None, first_number: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._next = first_number

    def ask(self) -> RandomDraw:
        """The next trial."""
        draw = RandomDraw(self._next, self._rng)
        self._next += 1
        return draw
