"""Performance metrics of a backtest: returns, risk, drawdown and trade statistics.

The definitions are those of docs/backtest.md ("Metrics"); volatility, Sharpe, Sortino,
CAGR, Calmar and max drawdown agree with `empyrical` on the same bar returns. The
equity curve is scanned by one compiled kernel so a million bars cost a few ms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

NS_PER_DAY = 86_400 * 10**9
DAYS_PER_YEAR = 365

METRIC_KEYS = (
    "start_equity",
    "final_equity",
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_days",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_trade",
    "best_trade",
    "worst_trade",
    "exposure",
    "fees",
    "funding",
)

_PERCENT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure"}
_PERCENT |= {"avg_trade", "best_trade", "worst_trade"}
_RATIO = {"sharpe", "sortino", "calmar", "profit_factor"}
_MONEY = {"start_equity", "final_equity", "expectancy", "fees", "funding"}

NAN = float("nan")


def periods_per_year(timeframe_ns: int) -> float:
    """Return how many bars of `timeframe_ns` nanoseconds fit in a 365-day year."""
    if timeframe_ns <= 0:
        raise ValueError(f"timeframe must be a positive number of nanoseconds, got {timeframe_ns}")
    return DAYS_PER_YEAR * NS_PER_DAY / timeframe_ns


# error_model="numpy": a division by zero (equity at 0) gives inf/NaN, never an exception.
@njit(cache=True, error_model="numpy")
def _scan_equity(
    equity: NDArray[np.float64], initial_cash: float
) -> tuple[float, float, float, float, float, int]:
    """Return (mean, std ddof=1, downside mean square, constant?, max drawdown, duration)."""
    n = equity.shape[0]
    total = 0.0
    down = 0.0
    rmin = math.inf
    rmax = -math.inf
    prev = initial_cash
    peak = initial_cash
    peak_at = -1  # the initial cash is the first peak, one bar before bar 0's close
    in_drawdown = False
    max_dd = 0.0
    longest = 0
    for i in range(n):
        e = equity[i]
        r = e / prev - 1.0
        prev = e
        total += r
        if r < 0.0:
            down += r * r
        rmin = min(rmin, r)
        rmax = max(rmax, r)
        if e >= peak:
            if in_drawdown:
                longest = max(longest, i - peak_at)
                in_drawdown = False
            peak = e
            peak_at = i
        else:
            in_drawdown = True
            dd = (e - peak) / peak
            max_dd = min(max_dd, dd)
    if in_drawdown:
        longest = max(longest, n - 1 - peak_at)
    mean = total / n if n > 0 else math.nan
    # Second pass for the deviations: the two-pass sum is what empyrical's
    # bottleneck.nanstd computes, and it stays accurate on long series.
    ssd = 0.0
    prev = initial_cash
    for i in range(n):
        d = equity[i] / prev - 1.0 - mean
        prev = equity[i]
        ssd += d * d
    std = math.sqrt(ssd / (n - 1)) if n > 1 else math.nan
    downside = down / n if n > 0 else math.nan
    constant = 1.0 if n > 0 and rmin == rmax else 0.0
    return mean, std, downside, constant, max_dd, longest


def drawdown_stats(equity: NDArray[np.float64], initial_cash: float) -> tuple[float, int]:
    """Return (max drawdown as a negative fraction, longest peak-to-recovery span in bars)."""
    eq = np.ascontiguousarray(equity, dtype=np.float64)
    if eq.shape[0] == 0:
        return NAN, 0
    _, _, _, _, max_dd, longest = _scan_equity(eq, float(initial_cash))
    return float(max_dd), int(longest)


def _cagr(final: float, initial: float, n_bars: int, ppy: float) -> float:
    if n_bars == 0:
        return NAN
    if final <= 0.0:
        return -1.0
    years = n_bars / ppy
    try:
        return float((final / initial) ** (1.0 / years) - 1.0)
    except OverflowError:
        return math.inf


def _ratio(num: float, den: float) -> float:
    """`num / den` with IEEE semantics (x/0 = ±inf, 0/0 = NaN) and no warning."""
    if den == 0.0:
        return NAN if num == 0.0 or math.isnan(num) else math.copysign(math.inf, num)
    return num / den


def _trade_stats(pnl: NDArray[np.float64], ret: NDArray[np.float64]) -> dict[str, float]:
    n = int(pnl.shape[0])
    if n == 0:
        return {
            "n_trades": 0,
            "win_rate": NAN,
            "profit_factor": NAN,
            "expectancy": NAN,
            "avg_trade": NAN,
            "best_trade": NAN,
            "worst_trade": NAN,
        }
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    return {
        "n_trades": n,
        "win_rate": float(np.count_nonzero(pnl > 0) / n),
        "profit_factor": _ratio(gross_profit, gross_loss),
        "expectancy": float(pnl.mean()),
        "avg_trade": float(ret.mean()),
        "best_trade": float(ret.max()),
        "worst_trade": float(ret.min()),
    }


def is_ruined(metrics: Mapping[str, float]) -> bool:
    """True when a run's equity reached zero or below at some bar (max drawdown -100% or
    worse, or final equity <= 0): the account is ruined and its return metrics undefined."""
    drawdown = float(metrics.get("max_drawdown", NAN))
    final = float(metrics.get("final_equity", NAN))
    return drawdown <= -1.0 or final <= 0.0


def compute_metrics(
    equity: NDArray[np.float64],
    *,
    initial_cash: float,
    periods_per_year: float,
    timeframe_ns: int,
    trade_pnl: NDArray[np.float64],
    trade_returns: NDArray[np.float64],
    fees: float,
    funding: float,
    bars_in_market: int,
) -> dict[str, float]:
    """Return the metrics of docs/backtest.md as plain, JSON-ready floats (keys: METRIC_KEYS).

    Bar returns are `equity[i] / equity[i-1] - 1` with `equity[-1] = initial_cash`.
    Undefined values are NaN: every metric with zero bars except start/final equity
    (= initial cash) and total return (0); volatility, Sharpe and Sortino with fewer
    than two bars; trade statistics with zero trades; Calmar without a drawdown.
    As in empyrical, Sharpe with constant returns and Sortino without a losing bar
    are ±inf when the mean return is non-zero (NaN when it is zero, e.g. flat
    equity). `profit_factor` is inf with profits and no losing trade, NaN when every
    trade broke even. CAGR is -1 when the final equity is <= 0 (empyrical: NaN).
    An account whose equity reaches <= 0 at any bar is ruined: bar returns across it
    have no meaning, so volatility, Sharpe and Sortino are NaN.
    """
    if not initial_cash > 0:
        raise ValueError(f"initial cash must be positive, got {initial_cash}")
    eq = np.ascontiguousarray(equity, dtype=np.float64)
    pnl = np.asarray(trade_pnl, dtype=np.float64)
    ret = np.asarray(trade_returns, dtype=np.float64)
    if pnl.shape != ret.shape:
        raise ValueError(
            f"trade_pnl and trade_returns differ in length: {pnl.shape[0]} != {ret.shape[0]}"
        )
    n = int(eq.shape[0])
    initial = float(initial_cash)
    ppy = float(periods_per_year)
    final = float(eq[-1]) if n else initial

    out: dict[str, float] = {
        "start_equity": initial,
        "final_equity": final,
        "total_return": final / initial - 1.0,
    }
    if n == 0:
        out.update(
            dict.fromkeys(
                ("cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown"), NAN
            )
        )
        out["max_drawdown_duration_days"] = NAN
    else:
        mean, std, downside, constant, max_dd, longest = _scan_equity(eq, initial)
        cagr = _cagr(final, initial, n, ppy)
        if n > 1:
            # empyrical treats exactly constant returns as zero dispersion.
            std = 0.0 if constant else std
            sharpe = _ratio(mean, std) * math.sqrt(ppy)
            sortino = _ratio(mean * ppy, math.sqrt(downside) * math.sqrt(ppy))
            volatility = std * ppy**0.5
        else:
            sharpe = sortino = volatility = NAN
        calmar = cagr / abs(max_dd) if max_dd < 0 else NAN
        if float(eq.min()) <= 0.0:  # ruined: returns across a sign change are meaningless
            sharpe = sortino = volatility = NAN
        out.update(
            {
                "cagr": cagr,
                "volatility": float(volatility),
                "sharpe": float(sharpe),
                "sortino": float(sortino),
                "calmar": NAN if math.isinf(calmar) else float(calmar),
                "max_drawdown": float(max_dd),
                "max_drawdown_duration_days": int(longest) * timeframe_ns / NS_PER_DAY,
            }
        )
    out.update(_trade_stats(pnl, ret))
    out["exposure"] = int(bars_in_market) / n if n else NAN
    out["fees"] = float(fees)
    out["funding"] = float(funding)
    return {key: out[key] for key in METRIC_KEYS}


def format_metric(key: str, value: Any) -> str:
    """Return a metric value as shown in the report (%, ratio, money, days, count)."""
    if value is None:
        return "—"
    v = float(value)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if key in _PERCENT:
        return f"{v:.2%}"
    if key in _RATIO:
        return f"{v:.2f}"
    if key in _MONEY:
        return f"{v:,.2f}"
    if key == "max_drawdown_duration_days":
        return f"{v:.2f} days"
    if key == "n_trades":
        return f"{int(v):,}"
    return f"{v:.6g}"
