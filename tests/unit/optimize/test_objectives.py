"""Objectives (names, directions, functions) and constraints."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sapphire.backtest import Backtest, BacktestResult
from sapphire.optimize.objectives import (
    OBJECTIVES,
    check_min_trades,
    resolve_constraint,
    resolve_objective,
)


def final_equity(result: BacktestResult) -> float:
    return float(result.equity.iloc[-1])


def few_trades(result: BacktestResult) -> bool:
    return len(result.trades) <= 50


@pytest.fixture(scope="module")
def result(btc_df: pd.DataFrame) -> BacktestResult:
    return Backtest(btc_df.iloc[:5000], "sma_cross", fast=10, slow=40, fee=0.0005).run()


def test_builtin_objectives_and_their_directions() -> None:
    assert set(OBJECTIVES) == {
        "sharpe", "sortino", "calmar", "total_return", "profit_factor", "max_drawdown",
        "expectancy",
    }  # fmt: skip
    assert all(o.direction == "maximize" for o in OBJECTIVES.values())
    # drawdown is a negative fraction: maximising it keeps it closest to 0
    assert resolve_objective("max_drawdown").direction == "maximize"
    assert resolve_objective("volatility").direction == "minimize"
    assert resolve_objective("win_rate").direction == "maximize"
    custom = resolve_objective("win_rate:min")
    assert (custom.name, custom.metric, custom.direction) == (
        "win_rate:min",
        "win_rate",
        "minimize",
    )


def test_objective_values_come_from_the_result(result: BacktestResult) -> None:
    for name in OBJECTIVES:
        value = resolve_objective(name).value(result)
        assert value == result.metrics[name] or (
            math.isnan(value) and math.isnan(result.metrics[name])
        )
    func = resolve_objective(final_equity, direction="minimize")
    assert func.name == "final_equity" and func.direction == "minimize"
    assert func.value(result) == pytest.approx(result.metrics["final_equity"])


def test_objective_specs_round_trip() -> None:
    for spec in ("sharpe", "win_rate:min", final_equity):
        obj = resolve_objective(spec)
        again = resolve_objective(obj.spec())
        assert (again.name, again.metric, again.direction) == (obj.name, obj.metric, obj.direction)
    assert resolve_objective(resolve_objective(final_equity).spec()).func is final_equity


def test_bad_objectives_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown objective 'sharp'"):
        resolve_objective("sharp")
    with pytest.raises(ValueError, match="direction 'up' is not one of"):
        resolve_objective("sharpe:up")
    lam = resolve_objective(lambda r: 1.0)
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_objective(lam.spec())


def test_constraints(result: BacktestResult) -> None:
    c = resolve_constraint(few_trades)
    assert c.name == "few_trades"
    assert c.ok(result) is (len(result.trades) <= 50)
    assert resolve_constraint(c.spec()).func is few_trades
    with pytest.raises(ValueError, match="expected True/False"):
        resolve_constraint(lambda r: "yes").ok(result)
    with pytest.raises(ValueError, match="must be a function"):
        resolve_constraint(3)  # type: ignore[arg-type]
    assert check_min_trades(0) == 0
    with pytest.raises(ValueError, match="min_trades=-1 is invalid"):
        check_min_trades(-1)
