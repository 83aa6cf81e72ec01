"""Bars per second of the event-driven backtest (`Backtest(..., engine="event")`: the
trading node, the VectorAdapter and the simulated venue) for sma_cross on 1,000,000
synthetic 1-minute bars (the bars of benchmarks/backtest_speed.py).

Prints one JSON object: the median of `--repeat` runs (signals, node loop, results),
and the same figure with a 1 % stop-loss / 2 % take-profit bracket (orders rest at the
venue while a position is open, so the venue walks those bars' OHLC path). Target
(issue 3): 300,000 bars/s for plain sma_cross.

    python benchmarks/event_speed.py [--bars 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from backtest_speed import synthetic_bars
from sapphire.backtest import Backtest


def measure(df: object, repeat: int, **kw: object) -> dict[str, float]:
    bt = Backtest(df, "sma_cross", engine="event", **kw)  # type: ignore[arg-type]
    n = len(bt.bars)
    times = []
    trades = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = bt.run()
        times.append(time.perf_counter() - t0)
        trades = int(result.metrics["n_trades"])
    med = statistics.median(times)
    return {"seconds": round(med, 4), "bars_per_s": round(n / med), "trades": trades}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    df = synthetic_bars(args.bars)
    Backtest(df.iloc[:5000], "sma_cross", engine="event").run()  # warm up imports and numba
    out = {
        "benchmark": "event_speed",
        "bars": args.bars,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "sma_cross": measure(df, args.repeat),
        "sma_cross_sl_tp": measure(df, args.repeat, stop_loss=0.01, take_profit=0.02),
        "target_bars_per_s": 300_000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
