"""Allocation across instruments or strategies (skfolio): equal weight, inverse
volatility, risk parity, hierarchical risk parity, mean-variance with weight limits and
minimum CVaR; walk-forward rebalancing scored out of sample after costs; and the
orders that move positions to target weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["METHODS", "WalkForwardAllocation", "allocate", "target_orders", "walk_forward"]

METHODS = ("equal", "inverse_vol", "risk_parity", "hrp", "mean_variance", "min_cvar")


def _model(method: str, max_weight: float | None) -> Any:
    from skfolio import RiskMeasure
    from skfolio.optimization import (
        EqualWeighted,
        HierarchicalRiskParity,
        InverseVolatility,
        MeanRisk,
        ObjectiveFunction,
        RiskBudgeting,
    )

    upper = 1.0 if max_weight is None else max_weight
    if method == "equal":
        return EqualWeighted()
    if method == "inverse_vol":
        return InverseVolatility()
    if method == "risk_parity":
        return RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, max_weights=upper)
    if method == "hrp":
        return HierarchicalRiskParity(max_weights=upper)
    if method == "mean_variance":
        return MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_RATIO, max_weights=upper,
            risk_measure=RiskMeasure.VARIANCE,
        )  # fmt: skip
    if method == "min_cvar":
        return MeanRisk(
            objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.CVAR,
            max_weights=upper,
        )  # fmt: skip
    raise ValueError(f"method={method!r} is invalid: expected one of {', '.join(METHODS)}")


def allocate(
    returns: pd.DataFrame, method: str = "hrp", *, max_weight: float | None = None
) -> pd.Series:
    """Long-only weights summing to 1, one per column of `returns` (periodic returns of
    instruments or strategies), by `method`; `max_weight` caps each weight."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is invalid: expected one of {', '.join(METHODS)}")
    if returns.shape[1] < 2 or len(returns) < 3:
        raise ValueError(
            f"returns of shape {returns.shape}: expected at least 2 columns and 3 rows"
        )
    if max_weight is not None and not (0 < max_weight <= 1 and max_weight * returns.shape[1] >= 1):
        raise ValueError(
            f"max_weight={max_weight!r} is invalid: expected (0, 1] and at least "
            f"1/{returns.shape[1]} so that the weights can sum to 1"
        )
    clean = returns.replace([np.inf, -np.inf], np.nan).dropna()
    model = _model(method, max_weight)
    model.fit(clean.to_numpy(dtype=np.float64))
    w = np.clip(np.asarray(model.weights_, dtype=np.float64), 0.0, None)
    return pd.Series(w / w.sum(), index=returns.columns, name=method)


@dataclass
class WalkForwardAllocation:
    """Out-of-sample equity of `method` and of equal weight (columns), the weights set
    at each rebalance and both runs' metrics (the HTML report:
    `sapphire.backtest.portfolio_report.write_allocation_report`)."""

    method: str
    equity: pd.DataFrame
    weights: pd.DataFrame
    metrics: dict[str, dict[str, float]]


def _run(returns: pd.DataFrame, targets: pd.DataFrame, cost: float) -> pd.Series:
    """Equity of 1.0 rebalanced to `targets` (rows at rebalance times), weights
    drifting with the returns between rebalances, `cost` per unit of turnover."""
    equity = 1.0
    w = np.zeros(returns.shape[1])
    out = np.empty(len(returns))
    at = returns.index.get_indexer(targets.index)
    reb = dict(zip(at.tolist(), targets.to_numpy(dtype=np.float64), strict=True))
    r = returns.to_numpy(dtype=np.float64)
    for i in range(len(r)):
        if i in reb:
            target = reb[i]
            equity *= 1.0 - cost * float(np.abs(target - w).sum())
            w = target.copy()
        gross = float(w @ (1.0 + r[i]))
        equity *= gross + (1.0 - w.sum())
        w = w * (1.0 + r[i]) / max(gross + (1.0 - w.sum()), 1e-300)
        out[i] = equity
    return pd.Series(out, index=returns.index)


def _metrics(equity: pd.Series, periods_per_year: float) -> dict[str, float]:
    ret = equity.pct_change().fillna(equity.iloc[0] - 1.0)
    std = float(ret.std())
    return {
        "total_return": float(equity.iloc[-1] - 1.0),
        "max_drawdown": float((equity / equity.cummax().clip(lower=1.0) - 1.0).min()),
        "sharpe": float(ret.mean() / std * np.sqrt(periods_per_year)) if std > 0 else np.nan,
    }


def walk_forward(
    returns: pd.DataFrame,
    method: str = "hrp",
    *,
    train: int = 500,
    step: int = 100,
    cost: float = 0.001,
    max_weight: float | None = None,
    periods_per_year: float = 365.0,
) -> WalkForwardAllocation:
    """Refit the weights every `step` rows on the `train` rows before, hold them (out of
    sample) until the next refit, pay `cost` per unit of turnover; equal weight runs
    the same schedule and costs beside it."""
    if train < 3 or step < 1 or len(returns) <= train:
        raise ValueError(
            f"train={train}, step={step} on {len(returns)} rows: expected train >= 3, "
            "step >= 1 and more rows than train"
        )
    if cost < 0:
        raise ValueError(f"cost={cost!r} is invalid: expected >= 0")
    fitted = {}
    for i in range(train, len(returns), step):
        window = returns.iloc[i - train : i]
        fitted[returns.index[i]] = allocate(window, method, max_weight=max_weight)
    weights = pd.DataFrame(fitted).T
    equal = pd.DataFrame(1.0 / returns.shape[1], index=weights.index, columns=returns.columns)
    oos = returns.iloc[train:]
    equity = pd.DataFrame({method: _run(oos, weights, cost), "equal": _run(oos, equal, cost)})
    if method == "equal":
        equity = equity[["equal"]]
    metrics = {c: _metrics(equity[c], periods_per_year) for c in equity.columns}
    return WalkForwardAllocation(method, equity, weights, metrics)


def target_orders(
    weights: Mapping[str, float],
    positions: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    equity: Decimal,
    lot_sizes: Mapping[str, Decimal] | None = None,
) -> dict[str, Decimal]:
    """Signed quantities to trade so each position holds its target weight of `equity`
    at `prices` (rounded towards zero to the lot size; zero trades left out)."""
    out: dict[str, Decimal] = {}
    for sym in sorted(set(weights) | set(positions)):
        if sym not in prices:
            raise ValueError(f"{sym}: no price to size the rebalance with")
        price = prices[sym]
        if not price > 0:
            raise ValueError(f"{sym}: price {price} is invalid: expected > 0")
        target = Decimal(str(weights.get(sym, 0.0))) * equity / price
        delta = target - positions.get(sym, Decimal(0))
        lot = (lot_sizes or {}).get(sym)
        if lot:
            delta = (delta / lot).to_integral_value(rounding=ROUND_DOWN) * lot
        if delta != 0:
            out[sym] = delta
    return out
