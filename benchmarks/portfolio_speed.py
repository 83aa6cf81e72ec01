"""Portfolio speed: bars per second of the compiled portfolio kernel on 10 instruments x
1,000,000 bars, and of a 100-combination sweep in one compiled call, each against running
the same work one backtest at a time (`Backtest`, the single-instrument kernel). Prints
figures; run `python benchmarks/portfolio_speed.py [--bars N] [--sweep-bars N] [--repeat R]`.

Both sides are timed from the same frames to the finished result (loading and checking
the data, signals, the simulation, the result tables). The first call of each path, on
a small frame, is timed on its own and is not part of the figures: it compiles the
Numba kernels, or loads them from Numba's on-disk cache (`cache=True`) after the first
run on a machine. Then the compiled call and the one-by-one loop are timed in turn,
`--repeat` times; the first round is printed as it is (it also pays for memory the
process touches for the first time, which costs much more on some virtual machines)
and the warm figure is the best round of each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sapphire import Backtest
from sapphire.backtest.portfolio import PortfolioBacktest
from sapphire.backtest.sweep import sweep

RUN: dict[str, Any] = {"cash": 1e6, "size_mode": "notional", "size": 10_000.0, "fee": 0.0005}
GRID = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 160, 10))}


def frames(m: int, n: int) -> dict[str, pd.DataFrame]:
    """`m` random-walk instruments of `n` one-minute bars."""
    rng = np.random.default_rng(7)
    times = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    out = {}
    for k in range(m):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
        open_ = np.r_[close[0], close[:-1]]
        spread = np.abs(rng.normal(0, 0.0005, n)) * close
        out[f"I{k}"] = pd.DataFrame({
            "timestamp": times, "open": open_, "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread, "close": close, "volume": 1.0,
        })  # fmt: skip
    return out


def seconds(work: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of `work`."""
    t = time.perf_counter()
    work()
    return time.perf_counter() - t


def compare(
    label: str, cells: int, compiled: Callable[[], object], one_by_one: Callable[[], object],
    repeat: int,
) -> None:  # fmt: skip
    """Time `compiled` and `one_by_one` in turn `repeat` times; print the first round,
    the warm (best) round and the speed-up of the compiled call."""
    fast, slow = [], []
    for _ in range(repeat):
        fast.append(seconds(compiled))
        slow.append(seconds(one_by_one))
    for name, a, b in (("first round", fast[0], slow[0]), ("warm", min(fast), min(slow))):
        print(
            f"{label}, {name}: compiled {a:.2f}s ({cells / a:,.0f} bars/s), one by one "
            f"{b:.2f}s ({cells / b:,.0f} bars/s): compiled {b / a:.2f}x as fast"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--sweep-bars", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error(f"--repeat {a.repeat}: expected at least 1")
    tiny = frames(2, 1000)
    first = {
        "portfolio": seconds(lambda: PortfolioBacktest(tiny, "sma_cross", **RUN).run()),
        "backtest": seconds(lambda: Backtest(tiny["I0"], "sma_cross", **RUN).run()),
        "sweep": seconds(lambda: sweep(tiny, "sma_cross", {"fast": [5], "slow": [20]}, **RUN)),
    }
    print(
        "first calls on 1,000 bars (Numba compile or cache load; not in the figures below): "
        + ", ".join(f"{name} {s:.2f}s" for name, s in first.items())
    )
    data = frames(10, a.bars)

    def portfolio() -> None:
        PortfolioBacktest(data, "sma_cross", **RUN).run()

    def backtests() -> None:
        for df in data.values():
            Backtest(df, "sma_cross", **RUN).run()

    compare(f"portfolio 10 x {a.bars:,} bars", 10 * a.bars, portfolio, backtests, a.repeat)
    small = {"I0": data["I0"].iloc[: a.sweep_bars].reset_index(drop=True)}

    def grid_sweep() -> None:
        sweep(small, "sma_cross", GRID, **RUN)

    def grid_backtests() -> None:
        for f in GRID["fast"]:
            for s in GRID["slow"]:
                Backtest(small["I0"], "sma_cross", fast=f, slow=s, **RUN).run()

    label = f"sweep 100 combinations x {a.sweep_bars:,} bars"
    compare(label, 100 * a.sweep_bars, grid_sweep, grid_backtests, a.repeat)


if __name__ == "__main__":
    main()
