"""Bars per second of the event-driven backtest (`Backtest(..., engine="event")`: the
trading node, the VectorAdapter and the simulated venue) for sma_cross on 1,000,000
synthetic 1-minute bars (the bars of benchmarks/backtest_speed.py).

Prints one JSON object: the median of `--repeat` runs of `run()` on a built `Backtest`
(signals, the node loop, the equity curve and metrics; the trades table, built lazily,
left out), and the same with a stop-loss / take-profit bracket at the levels of
benchmarks/backtest_speed.py (set from the data's volatility so that both legs fire;
orders rest at the venue while a position is open, so the venue walks those bars' OHLC
path), with the exit split. The garbage collector is on, as in a user's process (the
replay raises its young-generation threshold itself, `sapphire.gc_tuning`); the run
options (cash, size, size mode, leverage) are explicit. Target (issue 3): 300,000
bars/s for plain sma_cross.

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

from backtest_speed import RUN, bracket_levels, synthetic_bars
from sapphire.backtest import Backtest


def measure(df: object, repeat: int, **kw: object) -> dict[str, object]:
    bt = Backtest(df, "sma_cross", engine="event", **RUN, **kw)  # type: ignore[arg-type]
    n = len(bt.bars)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = bt.run()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    reasons = result.trades["exit_reason"].value_counts()
    return {
        "run_only_s_median": round(med, 4),
        "bars_per_s": round(n / med),
        "trades": int(result.metrics["n_trades"]),
        "exit_reasons": {str(k): int(v) for k, v in reasons.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    df = synthetic_bars(args.bars)
    Backtest(df.iloc[:5000], "sma_cross", engine="event", **RUN).run()  # warm up imports
    bracket = bracket_levels(Backtest(df, "sma_cross", **RUN).run().trades)  # (kernel run)
    out = {
        "benchmark": "event_speed",
        "bars": args.bars,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "sma_cross": measure(df, args.repeat),
        "run": RUN,
        "bracket_from_volatility": bracket,
        "sma_cross_sl_tp": measure(df, args.repeat, **bracket),
        "target_bars_per_s": 300_000,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
