"""The out-of-sample side of a walk-forward: each fold's test-window backtest, the test
windows chained into one equity curve, and the walk-forward efficiency.

Warm-up rule (docs/optimize.md, "Walk-forward"): the out-of-sample backtest of fold k
runs on the bars of its train window followed by its test window, so indicators are
warmed up on data the optimiser already saw, but entry signals on bars before the test
window are dropped. The position is therefore flat when the test window opens, every
trade is entered on a signal inside the test window, a position still open at the end
of the test window is closed at its last close (exit reason `end`), and only the test
window's bars count for equity and metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.runner import Backtest
from sapphire.optimize.folds import Fold
from sapphire.strategy.base import Signals, Strategy

__all__ = [
    "OutOfSample",
    "annualised_return",
    "efficiency",
    "oos_metrics",
    "out_of_sample_backtest",
    "stitch_equity",
]


def _mask_entries(value: Any, before: NDArray[np.bool_]) -> Any:
    """Return an entry signal with every bar flagged in `before` set to False."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != before.shape or arr.dtype.kind not in "biuf":
        return value  # the engine rejects it with its own message
    if arr.dtype == np.bool_:
        out = arr.copy()
    else:
        with np.errstate(invalid="ignore"):
            out = np.nan_to_num(arr.astype(np.float64)) != 0.0
    out[before] = False
    return out


class _TestWindowBacktest(Backtest):
    """A backtest whose entry signals before `first_entry_ns` are dropped (warm-up bars)."""

    first_entry_ns: int = 0

    def signals(self) -> Signals:
        sig = super().signals()
        if not isinstance(sig, Signals):
            return sig  # run() raises the usual TypeError
        before = self.bars.time < self.first_entry_ns
        return replace(
            sig,
            enter_long=_mask_entries(sig.enter_long, before),
            enter_short=_mask_entries(sig.enter_short, before),
        )


@dataclass
class OutOfSample:
    """A fold's out-of-sample run: test-window equity, trades and metrics; `in_sample` is
    the run's `BacktestResult.in_sample` (a fitted model's training window overlapping the
    train + test bars it scored; None: none), `settings` its costs and sizing."""

    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    bars_in_market: int
    in_sample: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def out_of_sample_backtest(
    frame: pd.DataFrame,
    strategy: str | type[Strategy],
    params: dict[str, Any] | None,
    fold: Fold,
    backtest_options: dict[str, Any],
) -> OutOfSample:
    """Backtest `params` on the fold's train + test bars, trading the test window only.

    With `params=None` (no feasible trial in the train window) the fold stays flat.
    Trade `entry_bar`/`exit_bar` are positions in `frame`.
    """
    window = frame.iloc[fold.train_start : fold.test_end]
    offset = fold.test_start - fold.train_start
    bt = _TestWindowBacktest(window, strategy, **{**backtest_options, **(params or {})})
    bt.first_entry_ns = (
        int(bt.bars.time[offset]) if params is not None else int(bt.bars.time[-1]) + 1
    )
    result = bt.run()
    cash = float(bt.config.cash)
    warmup = result.equity.to_numpy()[:offset]
    if warmup.size and not np.all(warmup == cash):  # pragma: no cover - engine invariant
        raise RuntimeError(f"fold {fold.number}: equity moved during the warm-up bars")
    equity = result.equity.iloc[offset:]
    trades = result.trades.copy()
    trades["entry_bar"] += fold.train_start
    trades["exit_bar"] += fold.train_start
    bars_in_market = round(float(result.metrics["exposure"]) * len(result.equity))
    metrics = oos_metrics(
        equity.to_numpy(),
        cash,
        bt.bars.timeframe_ns,
        trades["pnl"].to_numpy(),
        trades["return"].to_numpy(),
        float(result.metrics["fees"]),
        float(result.metrics["funding"]),
        bars_in_market,
    )
    settings = {**result.settings(), "risk_profile": result.config.get("risk_profile")}
    return OutOfSample(equity, trades, metrics, bars_in_market, result.in_sample, settings)


def oos_metrics(
    equity: NDArray[np.float64],
    cash: float,
    timeframe_ns: int,
    pnl: NDArray[np.float64],
    returns: NDArray[np.float64],
    fees: float,
    funding: float,
    bars_in_market: int,
) -> dict[str, float]:
    """The backtest metrics of an equity curve and its trades (a fold's or the stitched)."""
    return compute_metrics(
        equity,
        initial_cash=cash,
        periods_per_year=periods_per_year(timeframe_ns),
        timeframe_ns=timeframe_ns,
        trade_pnl=pnl,
        trade_returns=returns,
        fees=fees,
        funding=funding,
        bars_in_market=bars_in_market,
    )


def stitch_equity(curves: Sequence[pd.Series], cash: float) -> tuple[pd.Series, list[float]]:
    """Chain test-window equity curves that each start from `cash` into one curve.

    Fold k's curve is scaled by `scale_k` = (stitched equity before fold k) / cash, so
    the stitched final equity is `cash * prod(1 + fold return)`. Returns the curve and
    the scales.
    """
    level, scales, parts = float(cash), [], []
    for curve in curves:
        scale = level / cash
        scales.append(scale)
        parts.append(curve * scale)
        if len(curve):
            level = float(curve.iloc[-1]) * scale
    if not parts:
        return pd.Series(dtype=np.float64, name="equity"), scales
    return pd.concat(parts).rename("equity"), scales


def annualised_return(total_return: float, n_bars: int, timeframe_ns: int) -> float:
    """Simple (not compounded) annualisation: total return x bars per year / bars."""
    if n_bars <= 0 or not math.isfinite(total_return):
        return math.nan
    return total_return * periods_per_year(timeframe_ns) / n_bars


def efficiency(oos_annual: float, is_annual: float) -> float | None:
    """Walk-forward efficiency OOS / IS annualised return; None unless IS return > 0."""
    if not (math.isfinite(oos_annual) and math.isfinite(is_annual)) or is_annual <= 0:
        return None
    return oos_annual / is_annual
