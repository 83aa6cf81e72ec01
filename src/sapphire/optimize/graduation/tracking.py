"""How closely a paper run tracks the backtest of the same bars, and how a challenger's
run compares with its champion's on the bars they share.

A run's equity is rebuilt from its fills and its bars (marked at each bar's close:
cash from the fills, fees paid, the position at the close), so that runs and backtests
are compared bar by bar whatever their snapshot schedule. Funding is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["FillArrays", "bar_of", "equity_from_fills", "sharpe", "tracking_error", "trade_match"]


@dataclass(frozen=True, slots=True)
class FillArrays:
    """A run's fills as arrays: bar index, side (+1 buy, -1 sell), quantity, price, fee."""

    bar: NDArray[np.int64]
    side: NDArray[np.float64]
    qty: NDArray[np.float64]
    price: NDArray[np.float64]
    fee: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.bar.shape[0])


def bar_of(times_ns: NDArray[np.int64], ts_ns: NDArray[np.int64]) -> NDArray[np.int64]:
    """The index of the bar (open times `times_ns`) whose interval holds each `ts_ns`."""
    idx = np.searchsorted(np.asarray(times_ns), np.asarray(ts_ns, dtype=np.int64), side="right")
    return np.asarray(np.clip(idx - 1, 0, max(len(times_ns) - 1, 0)), dtype=np.int64)


def equity_from_fills(
    close: NDArray[np.float64], fills: FillArrays, cash: float
) -> NDArray[np.float64]:
    """Equity at each bar's close: `cash` + the fills' cash flows - fees + position x close."""
    n = int(np.asarray(close).shape[0])
    flow = np.zeros(n)
    pos = np.zeros(n)
    signed = fills.side * fills.qty
    np.add.at(flow, fills.bar, -signed * fills.price - fills.fee)
    np.add.at(pos, fills.bar, signed)
    return cash + np.cumsum(flow) + np.cumsum(pos) * np.asarray(close, dtype=np.float64)


def trade_match(paper: FillArrays, backtest: FillArrays, tolerance_bars: int = 0) -> float:
    """The share of fills matched one to one (same side, within `tolerance_bars`) over the
    larger of the two counts; 1.0 when neither has a fill."""
    total = max(len(paper), len(backtest))
    if total == 0:
        return 1.0
    used = np.zeros(len(backtest), dtype=bool)
    matched = 0
    for bar, side in zip(paper.bar.tolist(), paper.side.tolist(), strict=True):
        near = np.flatnonzero(
            ~used & (backtest.side == side) & (np.abs(backtest.bar - bar) <= tolerance_bars)
        )
        if near.size:
            used[near[np.argmin(np.abs(backtest.bar[near] - bar))]] = True
            matched += 1
    return matched / total


def _returns(equity: NDArray[np.float64], cash: float) -> NDArray[np.float64]:
    prev = np.concatenate([[cash], equity[:-1]])
    return np.asarray(equity / prev - 1.0, dtype=np.float64)


def tracking_error(paper: NDArray[np.float64], backtest: NDArray[np.float64], cash: float) -> float:
    """The std (ddof=1) of the per-bar return differences of two equity curves (0.0 for
    fewer than two bars)."""
    a, b = np.asarray(paper, dtype=np.float64), np.asarray(backtest, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"equity curves differ in length: {a.shape[0]} and {b.shape[0]} bars")
    if a.shape[0] < 2:
        return 0.0
    return float(np.std(_returns(a, cash) - _returns(b, cash), ddof=1))


def sharpe(equity: NDArray[np.float64], cash: float) -> float:
    """The per-bar Sharpe ratio of an equity curve's returns (0.0 without dispersion)."""
    r = _returns(np.asarray(equity, dtype=np.float64), cash)
    if r.shape[0] < 2:
        return 0.0
    std = float(np.std(r, ddof=1))
    return 0.0 if std == 0 or not math.isfinite(std) else float(np.mean(r)) / std
