"""Parameter sweeps in one compiled call: a grid of strategy parameters over one or many
instruments, every (combination, instrument) simulated by the single-instrument kernel
(`sapphire.sim.kernel.simulate`, the same rules as `Backtest`) inside one parallel
Numba loop, keeping only the figures a grid search or a parameter-stability map needs."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit, prange
from numpy.typing import NDArray

from sapphire.backtest.metrics import periods_per_year
from sapphire.backtest.portfolio import align_bars, load_instruments
from sapphire.backtest.runner import SIZE_MODES
from sapphire.engine.config import RUN_OPTIONS, RunConfig
from sapphire.sim import kernel as K
from sapphire.strategy.base import Strategy
from sapphire.strategy.registry import get_strategy
from sapphire.strategy.signals import normalize_signals

__all__ = ["SWEEP_METRICS", "SweepResult", "grid_combinations", "sweep"]

#: the figures of every (combination, instrument), in the compiled call's column order
SWEEP_METRICS = ("total_return", "max_drawdown", "sharpe", "trades", "win_rate", "fees")


def grid_combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values (the last parameter varies fastest)."""
    if not grid:
        raise ValueError("the grid is empty: give at least one parameter and its values")
    for name, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"grid parameter {name!r} has no values")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


@njit(cache=True, parallel=True)
def _sweep(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    job_inst: np.ndarray,
    brackets: np.ndarray,
    cash0: float,
    size: float,
    size_mode: int,
    leverage: float,
    maker_fee: float,
    taker_fee: float,
    slip_bps: float,
    slip_ticks: float,
    tick: float,
    lot: float,
    ppy: float,
    out: np.ndarray,
) -> None:
    """Simulate every job (a row of the signal arrays on instrument `job_inst[j]`)."""
    jobs, n = enter_long.shape
    etype = np.zeros(1)
    eprice = np.full(1, np.nan)
    funding = np.zeros(0)
    for j in prange(jobs):
        k = job_inst[j]
        entries = 0
        for i in range(n):
            if enter_long[j, i] or enter_short[j, i]:
                entries += 1
        equity = np.empty(n)
        orders = np.empty((2 * entries + 2, K.ORDER_FIELDS))
        trades = np.empty((entries + 1, K.TRADE_FIELDS))
        scalars = np.zeros(K.SCALAR_FIELDS)
        K.simulate(
            open_[k], high[k], low[k], close[k], enter_long[j], exit_long[j], enter_short[j],
            exit_short[j], etype, eprice, brackets[0:1], brackets[1:2], brackets[2:3], funding,
            cash0, size, size_mode, leverage, maker_fee, taker_fee, slip_bps, slip_ticks, tick,
            lot, False, False, equity, orders, trades, scalars,
        )  # fmt: skip
        peak = cash0
        mdd = 0.0
        prev = cash0
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            e = equity[i]
            if e > peak:
                peak = e
            dd = e / peak - 1.0
            if dd < mdd:
                mdd = dd
            r = e / prev - 1.0 if prev > 0.0 else 0.0
            s1 += r
            s2 += r * r
            prev = e
        mean = s1 / n
        var = (s2 - n * mean * mean) / (n - 1) if n > 1 else 0.0
        nt = int(scalars[K.S_N_TRADES])
        wins = 0
        for t in range(nt):
            row = trades[t]
            gross = row[K.T_SIDE] * row[K.T_QTY] * (row[K.T_EXIT_PRICE] - row[K.T_ENTRY_PRICE])
            if gross - row[K.T_ENTRY_FEE] - row[K.T_EXIT_FEE] + row[K.T_FUNDING] > 0.0:
                wins += 1
        out[j, 0] = equity[n - 1] / cash0 - 1.0
        out[j, 1] = mdd
        out[j, 2] = mean / np.sqrt(var) * np.sqrt(ppy) if var > 0.0 else np.nan
        out[j, 3] = nt
        out[j, 4] = wins / nt if nt > 0 else np.nan
        out[j, 5] = scalars[K.S_FEES]


@dataclass(eq=False)
class SweepResult:
    """One row per (combination, instrument): the parameters, `symbol` and the
    `SWEEP_METRICS`; `by_params()` averages the instruments."""

    strategy: str
    grid: dict[str, list[Any]]
    table: pd.DataFrame

    def by_params(self) -> pd.DataFrame:
        """Each combination's figures averaged over the instruments."""
        names = list(self.grid)
        return self.table.groupby(names, sort=False)[list(SWEEP_METRICS)].mean().reset_index()

    def best(self, metric: str = "sharpe") -> dict[str, Any]:
        """The combination with the highest mean `metric` (max_drawdown: the shallowest)."""
        frame = self.by_params().dropna(subset=[metric])
        if frame.empty:
            raise ValueError(f"no combination has a {metric}")
        row = frame.iloc[int(np.argmax(frame[metric].to_numpy(dtype=np.float64)))]
        return {name: row[name] for name in self.grid}

    def heatmap(self, x: str, y: str, metric: str = "sharpe") -> pd.DataFrame:
        """The parameter-stability map: mean `metric` by `y` (rows) and `x` (columns)."""
        for name in (x, y):
            if name not in self.grid:
                raise ValueError(
                    f"{name!r} is not a grid parameter: expected one of {list(self.grid)}"
                )
        return self.by_params().pivot_table(index=y, columns=x, values=metric, aggfunc="mean")

    def plot(self, x: str, y: str, path: str | Path | None = None, metric: str = "sharpe") -> Path:
        """Write the HTML heatmap of `metric` over parameters `x` and `y`."""
        from sapphire.backtest.portfolio_report import write_sweep_report

        return write_sweep_report(self, x, y, metric, path)


def sweep(
    data: Mapping[str, Any] | Sequence[Any],
    strategy: str | type[Strategy],
    grid: Mapping[str, Sequence[Any]],
    **options: Any,
) -> SweepResult:
    """Backtest every combination of `grid` on every instrument of `data` (aligned to the
    shared bar times) in one compiled call. `options` are `RunConfig` fields (market
    entries at the next open; stop-loss/take-profit/trailing stop as fixed fractions)
    or fixed strategy parameters."""
    bad = set(options) - RUN_OPTIONS
    fixed = {k: options.pop(k) for k in bad}
    cfg = RunConfig.from_options(**options)
    if cfg.fill_at != "open" or cfg.size_mode == "risk" or cfg.intrabar == "worst":
        raise ValueError(
            "sweeps run fill_at='open', intrabar='path' and fixed/notional/equity sizing"
        )
    cls = get_strategy(strategy, kinds=(Strategy,))
    combos = grid_combinations(grid)
    bars = align_bars(load_instruments(data))
    symbols = list(bars)
    n = len(bars[symbols[0]])
    jobs = len(combos) * len(symbols)
    el, xl, es, xs = (np.zeros((jobs, n), dtype=np.bool_) for _ in range(4))
    job_inst = np.zeros(jobs, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    for c, params in enumerate(combos):
        try:
            strat = cls(**{**fixed, **params})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameters {params}: {exc}") from None
        for k, sym in enumerate(symbols):
            j = c * len(symbols) + k
            sig = normalize_signals(strat.signals(bars[sym]), n, strategy=strat.name)
            if np.any(sig.entry_type != K.MARKET):
                raise ValueError(f"{strat.name}: sweeps take market entries only")
            el[j], xl[j], es[j], xs[j] = (
                sig.enter_long,
                sig.exit_long,
                sig.enter_short,
                sig.exit_short,
            )
            job_inst[j] = k
            rows.append({**params, "symbol": sym})

    def stack(name: str) -> NDArray[np.float64]:
        return np.ascontiguousarray(np.stack([getattr(bars[s], name) for s in symbols]))

    brackets = np.array([cfg.stop_loss or 0.0, cfg.take_profit or 0.0, cfg.trailing_stop or 0.0])
    out = np.empty((jobs, len(SWEEP_METRICS)))
    _sweep(
        stack("open"), stack("high"), stack("low"), stack("close"), el, xl, es, xs, job_inst,
        brackets, cfg.cash, cfg.size, SIZE_MODES[cfg.size_mode], cfg.leverage or 0.0,
        cfg.maker_fee, cfg.taker_fee, cfg.slippage_bps, float(cfg.slippage_ticks),
        cfg.tick_size, cfg.lot_size, periods_per_year(bars[symbols[0]].timeframe_ns), out,
    )  # fmt: skip
    table = pd.DataFrame(rows)
    for col, name in enumerate(SWEEP_METRICS):
        table[name] = out[:, col]
    table["trades"] = table["trades"].astype(np.int64)
    name = str(getattr(cls, "name", "") or cls.__name__)
    return SweepResult(name, {k: list(v) for k, v in grid.items()}, table)
