"""Bars per second of a backtest of sma_cross on 1,000,000 synthetic 1-minute bars.

Prints one JSON object; each figure's key says what it includes:

- `run_only`: `Backtest.run()` on an already built `Backtest`: signals, the compiled
  kernel, the equity curve and the metrics. The trades, orders and fills tables are
  built lazily on first access (`BacktestResult`), so this figure leaves them out.
- `run_and_trades_table`: the same plus `len(result.trades)` (the trades DataFrame).
- `from_dataframe_end_to_end`: `Backtest(df, ...)` (column mapping and validation of the
  1,000,000 bars) + `run()` + the trades table: what a user waits for.
- `construct_and_validate_only`: `Backtest(df, ...)` alone.

Each is given without a bracket and with a stop-loss + take-profit bracket whose levels
come from the synthetic data's volatility (one and two standard deviations of the
return over a typical no-bracket holding time), so that both legs fire; the exit split
(`exit_reasons`) is printed. The run options (cash, size, size mode, leverage) are
given explicitly, not taken from the defaults. Compile time (first call in the process,
kernels loaded from the on-disk cache or compiled) is reported apart; `--cold` also
measures a first run with an empty Numba cache in a fresh process. Peak memory is the
process's maximum resident set size.

    python benchmarks/backtest_speed.py [--bars 1000000] [--repeat 7] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

#: the run options, explicit so that a change of the library's defaults does not change
#: what is measured: 1 unit (about 100 quote) per trade on 10,000 cash, no margin limit
RUN = {"cash": 10_000.0, "size": 1.0, "size_mode": "fixed", "leverage": None}
STEP_SIGMA = 0.0008  # the per-bar log-return deviation of `synthetic_bars`


def synthetic_bars(n: int, seed: int = 42) -> pd.DataFrame:
    """A seeded geometric random walk of 1-minute OHLCV bars starting at 100."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, 0.0004, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    times = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    volume = rng.uniform(1.0, 100.0, n)
    return pd.DataFrame(
        {"timestamp": times, "open": open_, "high": high, "low": low, "close": close,
         "volume": volume}
    )  # fmt: skip


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def bracket_levels(trades: pd.DataFrame) -> dict[str, float]:
    """Stop-loss at one, take-profit at two standard deviations of the return over the
    median holding time of the no-bracket trades (`sigma * sqrt(bars held)`)."""
    held = float(np.median(trades["exit_bar"] - trades["entry_bar"]))
    move = STEP_SIGMA * float(np.sqrt(max(held, 1.0)))
    return {"stop_loss": round(move, 4), "take_profit": round(2 * move, 4)}


def cold_first_run(n: int, bracket: dict[str, float]) -> float:
    """Seconds for the first run in a fresh process with an empty Numba cache."""
    kw = {**RUN, **bracket}
    code = (
        "import time,sys; sys.path.insert(0,'benchmarks');"
        "from backtest_speed import synthetic_bars; from sapphire import Backtest;"
        f"df=synthetic_bars({n}); t=time.perf_counter();"
        f"Backtest(df,'sma_cross',**{kw!r}).run();"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def peak_memory(n: int, bracket: dict[str, float]) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process that imports Sapphire and runs one 1M-bar backtest
    (trades, equity, orders and fills tables built)."""
    # VmHWM (the high-water mark of this address space) rather than ru_maxrss, which
    # Linux carries over from the parent across fork + exec
    kw = {**RUN, **bracket}
    code = (
        "import re,sys; sys.path.insert(0,'benchmarks');"
        "rss=lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])/1024;"
        "from backtest_speed import synthetic_bars; from sapphire import Backtest;"
        "import sapphire.backtest, sapphire.data, sapphire.indicators; base=rss();"
        f"df=synthetic_bars({n}); r=Backtest(df,'sma_cross',**{kw!r}).run();"
        "r.trades; r.equity; r.orders; r.fills; print(base, rss())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = (float(v) for v in out.stdout.split())
    return {"after_imports_mb": round(base, 1), "peak_mb": round(peak, 1),
            "backtest_mb": round(peak - base, 1)}  # fmt: skip


def figures(df: pd.DataFrame, repeat: int, **kw: Any) -> dict[str, Any]:
    """The four figures (module docstring) for one setting, medians of `repeat` runs."""
    from sapphire import Backtest

    n = len(df)
    bt = Backtest(df, "sma_cross", **RUN, **kw)
    result = bt.run()
    trades = result.trades
    out: dict[str, Any] = {"trades": len(trades)}
    out["exit_reasons"] = {str(k): int(v) for k, v in trades["exit_reason"].value_counts().items()}
    cases: dict[str, Callable[[], object]] = {
        "run_only": bt.run,
        "run_and_trades_table": lambda: len(bt.run().trades),
        "from_dataframe_end_to_end": lambda: len(
            Backtest(df, "sma_cross", **RUN, **kw).run().trades
        ),
        "construct_and_validate_only": lambda: Backtest(df, "sma_cross", **RUN, **kw),
    }
    for name, fn in cases.items():
        med, runs = timed(fn, repeat)
        out[name] = {"s_median": round(med, 5), "s_best": round(min(runs), 5),
                     "bars_per_s": round(n / med)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cold", action="store_true", help="also time a cold compile")
    args = parser.parse_args()

    from sapphire import Backtest

    df = synthetic_bars(args.bars)
    n = len(df)
    out: dict[str, object] = {"bars": n, "strategy": "sma_cross(fast=10, slow=30)", "run": RUN}

    t0 = time.perf_counter()
    plain = Backtest(df, "sma_cross", **RUN).run()
    bracket = bracket_levels(plain.trades)
    Backtest(df, "sma_cross", **RUN, **bracket).run()
    out["first_runs_s_incl_compile_or_cache_load"] = round(time.perf_counter() - t0, 3)
    out["bracket_from_volatility"] = bracket

    out["no_bracket"] = figures(df, args.repeat)
    out["bracket_sl_tp"] = figures(df, args.repeat, **bracket)
    out["peak_rss_this_process_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    out["memory_one_backtest_fresh_process"] = peak_memory(n, bracket)
    if args.cold:
        out["cold_first_run_s"] = round(cold_first_run(n, bracket), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
