"""Bars per second of `Backtest(...).run()` for sma_cross on 1,000,000 synthetic 1-minute bars.

Prints one JSON object. Compile time (first call in the process, kernels loaded
from the on-disk cache or compiled) is reported apart from the steady-state
figures; `--cold` also measures a first run with an empty Numba cache in a fresh
process. Peak memory is the process's maximum resident set size.

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

import numpy as np
import pandas as pd


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


def timed(fn, repeat: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def cold_first_run(n: int) -> float:
    """Seconds for the first run in a fresh process with an empty Numba cache."""
    code = (
        "import time,sys; sys.path.insert(0,'benchmarks');"
        "from backtest_speed import synthetic_bars; from sapphire import Backtest;"
        f"df=synthetic_bars({n}); t=time.perf_counter();"
        "Backtest(df,'sma_cross',stop_loss=0.02,take_profit=0.04).run();"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def peak_memory(n: int) -> dict[str, float]:
    """Peak RSS (MB) of a fresh process that imports Sapphire and runs one 1M-bar backtest."""
    # VmHWM (the high-water mark of this address space) rather than ru_maxrss, which
    # Linux carries over from the parent across fork + exec
    code = (
        "import re,sys; sys.path.insert(0,'benchmarks');"
        "rss=lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])/1024;"
        "from backtest_speed import synthetic_bars; from sapphire import Backtest;"
        "import sapphire.backtest, sapphire.data, sapphire.indicators; base=rss();"
        f"df=synthetic_bars({n}); r=Backtest(df,'sma_cross',stop_loss=0.02,take_profit=0.04).run();"
        "r.trades; r.equity; r.orders; r.fills; print(base, rss())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = (float(v) for v in out.stdout.split())
    return {"after_imports_mb": round(base, 1), "peak_mb": round(peak, 1),
            "backtest_mb": round(peak - base, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cold", action="store_true", help="also time a cold compile")
    args = parser.parse_args()

    from sapphire import Backtest

    df = synthetic_bars(args.bars)
    n = len(df)
    out: dict[str, object] = {"bars": n, "strategy": "sma_cross(fast=10, slow=30)"}

    t0 = time.perf_counter()
    plain = Backtest(df, "sma_cross")
    out["load_and_validate_s"] = round(time.perf_counter() - t0, 4)
    bracket = Backtest(df, "sma_cross", stop_loss=0.02, take_profit=0.04)

    t0 = time.perf_counter()
    plain.run()
    bracket.run()
    out["first_run_s_incl_compile_or_cache_load"] = round(time.perf_counter() - t0, 3)

    for name, bt in (("no_bracket", plain), ("bracket_sl_tp", bracket)):
        med, runs = timed(bt.run, args.repeat)
        result = bt.run()
        out[name] = {
            "run_s_median": round(med, 5),
            "run_s_best": round(min(runs), 5),
            "bars_per_s": round(n / med),
            "trades": len(result.trades),
        }
    med, _ = timed(lambda: Backtest(df, "sma_cross").run(), max(3, args.repeat // 2))
    out["construct_and_run_no_bracket"] = {"s_median": round(med, 5), "bars_per_s": round(n / med)}
    out["peak_rss_this_process_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    out["memory_one_backtest_fresh_process"] = peak_memory(n)
    if args.cold:
        out["cold_first_run_s"] = round(cold_first_run(n), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
