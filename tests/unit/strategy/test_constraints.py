"""Declared constraints between parameters: checked on construction, validated when
declared, and the same rule the built-in strategies used to write by hand."""

from __future__ import annotations

from typing import Any

import pytest

from sapphire.strategy.base import Bars, Param, Relation, Signals, Strategy
from sapphire.strategy.registry import get_strategy


class Channel(Strategy):
    low_band = Param(-1.0, low=-5.0, high=0.0)
    high_band = Param(1.0, low=0.0, high=5.0)
    inner = Param(10, low=2, high=100)
    outer = Param(20, low=3, high=200)
    constraints = (("inner", "<=", "outer"), ("high_band", ">=", "-low_band"))

    def check(self) -> None:
        if self.inner == 7:
            raise ValueError("channel: inner (7) is unlucky")

    def signals(self, bars: Bars) -> Signals:
        return Signals()


class WiderChannel(Channel):
    """A subclass keeps its parent's constraints."""


def test_a_declared_constraint_refuses_values_naming_both() -> None:
    Channel(inner=20, outer=20, low_band=-1.0, high_band=1.0)  # <= and >= hold at equality
    with pytest.raises(ValueError, match=r"^channel: inner \(21\) must be <= outer \(20\)$"):
        Channel(inner=21)
    with pytest.raises(ValueError, match=r"high_band \(0\.5\) must be >= -low_band \(2\.0\)"):
        Channel(low_band=-2.0, high_band=0.5)
    with pytest.raises(ValueError, match="inner \\(7\\) is unlucky"):
        Channel(inner=7)  # check() still runs after the constraints
    with pytest.raises(ValueError, match="must be <= outer"):
        WiderChannel(inner=50, outer=40)
    assert WiderChannel.relations() == Channel.relations()
    assert [r.describe() for r in Channel.relations()] == [
        "inner <= outer",
        "high_band >= -low_band",
    ]


@pytest.mark.parametrize(
    ("builtin", "good", "bad", "message"),
    [
        ("sma_cross", {"fast": 5, "slow": 6}, {"fast": 6, "slow": 6},
         "sma_cross: fast (6) must be < slow (6)"),
        ("mean_reversion", {"entry_z": 2.0, "exit_z": -1.9}, {"entry_z": 2.0, "exit_z": -2.0},
         "mean_reversion: exit_z (-2.0) must be > -entry_z (-2.0)"),
    ],
)  # fmt: skip
def test_builtins_declare_the_relations_their_check_used_to_test(
    builtin: str, good: dict[str, Any], bad: dict[str, Any], message: str
) -> None:
    cls = get_strategy(builtin)
    cls(**good)
    with pytest.raises(ValueError) as err:
        cls(**bad)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ((("inner", "<", "nope"),), "names 'nope', which is not a parameter"),
        ((("inner", "!=", "outer"),), "operator '!=' is not one of <, <=, >, >="),
        ((("inner", "<", "inner"),), "relates 'inner' to itself"),
        ((("inner", "<", "mode"),), "'mode' is not a number parameter"),
        ((("inner", "<"),), "is not a (name, op, name) tuple of strings"),
        ("inner < outer", "must be a tuple of (name, op, name) tuples"),
    ],
)
def test_bad_declarations_are_named_when_the_class_is_defined(
    constraints: Any, message: str
) -> None:
    body = {
        "inner": Param(10, low=2, high=100),
        "outer": Param(20, low=3, high=200),
        "mode": Param("a", choices=["a", "b"]),
        "constraints": constraints,
        "signals": lambda self, bars: Signals(),
    }
    with pytest.raises(ValueError) as err:
        type(Strategy)("Bad", (Strategy,), body)
    assert message in str(err.value)


def test_relation_bound_solves_for_either_side() -> None:
    plain = Relation("fast", "<", "slow")
    assert plain.bound("slow", {"fast": 10}) == (">", 10.0)
    assert plain.bound("fast", {"slow": 30}) == ("<", 30.0)
    negated = Relation("exit_z", ">", "entry_z", sign=-1)
    assert negated.bound("exit_z", {"entry_z": 2.0}) == (">", -2.0)
    assert negated.bound("entry_z", {"exit_z": -1.5}) == (">", 1.5)  # exit > -entry
