"""The vectorised Strategy API: typed parameters in, signal arrays out."""

from __future__ import annotations

import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
EntryType = Literal["market", "limit", "stop"]
ENTRY_TYPES: dict[str, int] = {"market": 0, "limit": 1, "stop": 2}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Param:
    """A typed strategy parameter with a default and a search range for the optimiser.

    The type comes from the default (int, float, bool, str) or from `choices`.
    `low`/`high` bound numbers (inclusive); `log=True` asks the optimiser to search
    on a log scale; `choices` makes the parameter categorical. `when` makes it
    conditional for the optimiser: e.g. `when={"short": True}` searches it only in
    trials where `short` is True (it keeps its default otherwise).
    """

    def __init__(
        self,
        default: Any,
        *,
        low: float | None = None,
        high: float | None = None,
        choices: Sequence[Any] | None = None,
        log: bool = False,
        step: float | None = None,
        when: dict[str, Any] | None = None,
        doc: str = "",
    ) -> None:
        self.default = default
        self.low = low
        self.high = high
        self.choices = tuple(choices) if choices is not None else None
        self.log = log
        self.step = step
        if when is not None and (
            not isinstance(when, dict) or not when or not all(isinstance(k, str) for k in when)
        ):
            raise ValueError(f"Param when= must be a non-empty dict of name -> value, got {when!r}")
        self.when = dict(when) if when is not None else None
        self.doc = doc
        self.name = ""
        self.owner = ""
        self.kind: type = bool if isinstance(default, bool) else type(default)
        if self.choices is None and self.kind not in (int, float, bool, str):
            raise TypeError(f"Param default must be int, float, bool or str, got {default!r}")
        if low is not None and high is not None and low > high:
            raise ValueError(f"Param range is empty: low {low} > high {high}")
        if log and (low is None or low <= 0):
            raise ValueError(f"Param with log=True needs low > 0, got low={low}")
        if step is not None and not step > 0:
            raise ValueError(f"Param step must be > 0, got step={step}")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner.__name__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance.__dict__.get("_params", {}).get(self.name, self.default)

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__.setdefault("_params", {})[self.name] = self.coerce(value)

    def coerce(self, value: Any) -> Any:
        """Return `value` converted to this parameter's type, or raise a ValueError."""
        where = f"{self.owner}.{self.name}"
        if self.choices is not None:
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and str(choice) == value):
                    return choice
            raise ValueError(f"{where}: {value!r} is not one of {list(self.choices)}")
        try:
            out: Any
            if self.kind is bool:
                if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                    out = value.lower() in _TRUE
                elif isinstance(value, bool | np.bool_) or value in (0, 1):
                    out = bool(value)
                else:
                    raise ValueError
            elif self.kind is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out = int(value)
            elif self.kind is float:
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
                if not np.isfinite(out):
                    raise ValueError
            else:
                out = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {value!r} is not a valid {self.kind.__name__}") from None
        if self.low is not None and out < self.low:
            raise ValueError(f"{where}: {out!r} is below the minimum {self.low}")
        if self.high is not None and out > self.high:
            raise ValueError(f"{where}: {out!r} is above the maximum {self.high}")
        return out

    def describe(self) -> dict[str, Any]:
        """Return the parameter as a plain dict (name, type, default, range)."""
        return {
            "name": self.name,
            "type": self.kind.__name__ if self.choices is None else "categorical",
            "default": self.default,
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices) if self.choices is not None else None,
            "log": self.log,
            "step": self.step,
            "when": dict(self.when) if self.when is not None else None,
            "doc": self.doc,
        }


_OPERATORS: dict[str, Any] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


@dataclass(frozen=True)
class Relation:
    """A declared constraint `left op sign * right` between two numeric parameters.

    Declared on a strategy as `constraints = (("fast", "<", "slow"),)`; a leading "-"
    negates the right-hand parameter: `("exit_z", ">", "-entry_z")`.
    """

    left: str
    op: str
    right: str
    sign: int = 1

    @classmethod
    def parse(cls, spec: Any, owner: str, params: dict[str, Param]) -> Relation:
        """The relation of a `(left, op, right)` declaration; a ValueError names a bad one."""
        where = f"{owner}.constraints"
        if (
            not isinstance(spec, tuple)
            or len(spec) != 3
            or not all(isinstance(x, str) for x in spec)
        ):
            raise ValueError(f"{where}: {spec!r} is not a (name, op, name) tuple of strings")
        left, op, right = spec
        sign = -1 if right.startswith("-") else 1
        right = right.lstrip("-")
        if op not in _OPERATORS:
            raise ValueError(f"{where}: {spec!r}: operator {op!r} is not one of <, <=, >, >=")
        for name in (left, right):
            param = params.get(name)
            if param is None:
                raise ValueError(
                    f"{where}: {spec!r} names {name!r}, which is not a parameter; "
                    f"its parameters are: {', '.join(params) or '(none)'}"
                )
            if param.choices is not None or param.kind not in (int, float):
                raise ValueError(f"{where}: {spec!r}: {name!r} is not a number parameter")
        if left == right:
            raise ValueError(f"{where}: {spec!r} relates {left!r} to itself")
        return cls(left, op, right, sign)

    @staticmethod
    def compare(value: Any, op: str, bound: Any) -> Any:
        """`value op bound` for one of <, <=, >, >= (elementwise on arrays)."""
        return _OPERATORS[op](value, bound)

    def holds(self, values: dict[str, Any]) -> bool:
        """True when the values satisfy the relation."""
        return bool(self.compare(values[self.left], self.op, self.sign * values[self.right]))

    def bound(self, name: str, values: dict[str, Any]) -> tuple[str, float]:
        """The relation solved for `name` given the other side's value: `(op, c)` meaning
        `name op c` (e.g. slow > 10 for fast < slow with fast = 10)."""
        if name == self.left:
            return self.op, float(self.sign * values[self.right])
        other = float(values[self.left])
        if self.sign == 1:
            return _FLIPPED[self.op], other
        return self.op, -other  # a op -b  <=>  b op -a

    def describe(self) -> str:
        """The relation as written: `fast < slow`, `exit_z > -entry_z`."""
        return f"{self.left} {self.op} {'-' if self.sign < 0 else ''}{self.right}"

    def message(self, strategy: str, values: dict[str, Any]) -> str:
        """Why `values` break the relation, naming both values."""
        right = f"{'-' if self.sign < 0 else ''}{self.right}"
        shown = self.sign * values[self.right]
        return f"{strategy}: {self.left} ({values[self.left]}) must be {self.op} {right} ({shown})"


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars as NumPy arrays; `time` holds bar open times in int64 UTC nanoseconds."""

    time: NDArray[np.int64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    timeframe_ns: int

    def __len__(self) -> int:
        return int(self.close.shape[0])


@dataclass(eq=False)
class Signals:
    """What a strategy wants: boolean entry/exit arrays plus optional per-entry orders.

    `stop_loss`, `take_profit` and `trailing_stop` are distances as fractions of the
    entry fill price, as a scalar or a per-bar array (read at the signal bar; NaN or
    <= 0 means none). `entry_type` is "market", "limit" or "stop" (scalar or per-bar
    array of those names); limit and stop entries need `entry_price` (per bar).
    """

    enter_long: ArrayLike | None = None
    exit_long: ArrayLike | None = None
    enter_short: ArrayLike | None = None
    exit_short: ArrayLike | None = None
    stop_loss: ArrayLike | float | None = None
    take_profit: ArrayLike | float | None = None
    trailing_stop: ArrayLike | float | None = None
    entry_type: ArrayLike | EntryType = "market"
    entry_price: ArrayLike | float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def snake_case(name: str) -> str:
    """A class name in snake_case (`SmaCross` -> `sma_cross`): a strategy's default name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Strategy(ABC):
    """Base class of vectorised strategies: declare `Param`s, implement `signals`.

    Subclasses get a registry `name` (snake_case of the class name unless set) and a
    constructor taking parameter values as keyword arguments, validated and coerced.
    Declare relations between number parameters in `constraints`, e.g.
    `constraints = (("fast", "<", "slow"),)` (a leading "-" negates the right side): the
    constructor refuses values that break one and the optimiser samples only sets that
    keep them. Override `check()` for any other rule (it runs after the constraints).
    """

    name: ClassVar[str] = ""
    constraints: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    _relations: ClassVar[tuple[Relation, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = snake_case(cls.__name__)
        if not isinstance(cls.constraints, tuple):
            raise ValueError(
                f"{cls.__name__}.constraints must be a tuple of (name, op, name) tuples, "
                f"got {cls.constraints!r}"
            )
        params = cls.params()
        cls._relations = tuple(Relation.parse(c, cls.__name__, params) for c in cls.constraints)

    def __init__(self, **params: Any) -> None:
        declared = self.params()
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValueError(
                f"strategy {self.name!r} has no parameter {unknown[0]!r}; "
                f"its parameters are: {', '.join(declared) or '(none)'}"
            )
        for key, value in params.items():
            setattr(self, key, value)
        values = self.values
        for relation in self._relations:
            if not relation.holds(values):
                raise ValueError(relation.message(self.name, values))
        self.check()

    @classmethod
    def params(cls) -> dict[str, Param]:
        """Return the declared parameters, in declaration order (base classes first)."""
        out: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                if isinstance(value, Param):
                    out[key] = value
        return out

    @classmethod
    def relations(cls) -> tuple[Relation, ...]:
        """The declared `constraints` between parameters, parsed and validated."""
        return cls._relations

    @property
    def values(self) -> dict[str, Any]:
        """Return the current parameter values."""
        return {key: getattr(self, key) for key in self.params()}

    def check(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Raise ValueError if the parameter values do not make sense together (beyond the
        declared `constraints`, which the constructor checks first)."""

    @abstractmethod
    def signals(self, bars: Bars) -> Signals:
        """Compute the signal arrays from the bars (no look-ahead: bar t sees bars <= t)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"
