"""Portfolio speed: bars per second of the compiled portfolio kernel on 10 instruments x
1,000,000 bars, and of a 100-combination sweep in one compiled call, each against running
the same work one backtest at a time. Prints figures; run `python benchmarks/portfolio_speed.py
[--bars N]`."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from sapphire import Backtest
from sapphire.backtest.portfolio import PortfolioBacktest
from sapphire.backtest.sweep import sweep


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--sweep-bars", type=int, default=100_000)
    a = ap.parse_args()
    data = frames(10, a.bars)
    run: dict[str, Any] = {"cash": 1e6, "size_mode": "notional", "size": 10_000.0, "fee": 0.0005}
    PortfolioBacktest(frames(2, 1000), "sma_cross", **run).run()  # compile
    t = time.perf_counter()
    PortfolioBacktest(data, "sma_cross", **run).run()
    pf = time.perf_counter() - t
    t = time.perf_counter()
    for df in data.values():
        Backtest(df, "sma_cross", **run).run()
    one = time.perf_counter() - t
    total = 10 * a.bars
    print(f"portfolio 10 x {a.bars:,} bars: {pf:.2f}s, {total / pf:,.0f} bars/s "
          f"(one by one: {one:.2f}s, {total / one:,.0f} bars/s)")  # fmt: skip
    small = {"I0": data["I0"].iloc[: a.sweep_bars].reset_index(drop=True)}
    grid = {"fast": list(range(5, 55, 5)), "slow": list(range(60, 160, 10))}
    sweep(frames(1, 1000), "sma_cross", {"fast": [5], "slow": [20]}, **run)  # compile
    t = time.perf_counter()
    sweep(small, "sma_cross", grid, **run)
    sw = time.perf_counter() - t
    t = time.perf_counter()
    for f in grid["fast"]:
        for s in grid["slow"]:
            Backtest(small["I0"], "sma_cross", fast=f, slow=s, **run).run()
    one = time.perf_counter() - t
    total = 100 * a.sweep_bars
    print(f"sweep 100 combinations x {a.sweep_bars:,} bars: {sw:.2f}s, {total / sw:,.0f} bars/s "
          f"(one by one: {one:.2f}s, {total / one:,.0f} bars/s)")  # fmt: skip


if __name__ == "__main__":
    main()
