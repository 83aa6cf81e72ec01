"""Tick-to-order latency inside the trading node: a trade tick enters
`TradingNode.process_trade_tick`, the strategy's `on_trade_tick` decides and builds a
market order, the order passes the pre-trade risk engine (every check of `RiskConfig`
on), and is handed to the venue (`venue.submit_order`): the time between the two ends.

Two venues: `recording` timestamps the hand-over (what an exchange adapter would then
send; the order is then cancelled so that it does not count as open), `simulated` is
the SimulatedVenue (the tick also fills the previous order, so the node books a fill,
the portfolio and the strategy callbacks inside the same measurement). Prints one JSON
object with p50/p99/max in microseconds over `--ticks` (the first 1,000 left out as
warm-up), measured with Python's garbage collector on at its default thresholds, as a
user's process runs (`gc_on`), and, labelled beside it, with the collector off for the
measured loop (`gc_off`: what the code costs without collection pauses).

    python benchmarks/tick_to_order_latency.py [--ticks 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from decimal import Decimal

import numpy as np

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    OrderSide,
    TradeId,
    TradeTick,
)
from sapphire.engine import EventStrategy, TradingNode
from sapphire.risk import RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

IID = InstrumentId("BTC/USDT:USDT", "SIM")
INSTRUMENT = Instrument(
    IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.1"),
    lot_size=Decimal("0.001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.00055"),
    min_qty=Decimal("0.001"), max_qty=Decimal("100"),
)  # fmt: skip
RISK = RiskConfig(
    max_notional_per_order=Decimal(100_000), max_position_notional=Decimal(500_000),
    max_position_qty={IID: Decimal(10)}, max_gross_exposure=Decimal(1_000_000),
    max_open_orders=50, max_orders_per_window=1_000_000, rate_limit_window_s=1.0,
    price_band=Decimal("0.05"),
)  # fmt: skip


class Flipper(EventStrategy):
    """On every tick: a market order that alternates buy and sell (position stays small)."""

    def __init__(self) -> None:
        super().__init__("lat")
        self.n = 0

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.n += 1
        side = OrderSide.BUY if self.n % 2 else OrderSide.SELL
        self.submit_order(self.market(IID, side, "0.01"))


def run(ticks: int, simulated: bool, gc_off: bool) -> dict[str, float]:
    venue = SimulatedVenue([INSTRUMENT], cash=1_000_000)
    stamps: list[int] = []
    holder: list[TradingNode] = [None]  # type: ignore[list-item]
    real_submit = venue.submit_order

    def submit(order, sizer=None):  # type: ignore[no-untyped-def]
        stamps.append(time.perf_counter_ns())
        real_submit(order, sizer)
        if not simulated:
            holder[0].cancel_order(order.client_order_id)  # so it does not stay open

    venue.submit_order = submit  # type: ignore[method-assign]
    node = TradingNode(venue, risk=RiskEngine(RISK), run_id="l")
    holder[0] = node
    node.add_strategy(Flipper(), trade_ticks=[IID])
    node.start()
    rng = np.random.default_rng(7)
    prices = (50_000 + np.cumsum(rng.normal(0, 5, ticks))).round(1).tolist()
    events = [
        TradeTick(instrument_id=IID, ts_ns=1_000_000 * (k + 1), price=p, size=0.01,
                  aggressor_side=None, trade_id=TradeId(str(k + 1)))
        for k, p in enumerate(prices)
    ]  # fmt: skip
    starts = []
    gc.collect()  # the set-up's garbage is not charged to the first ticks
    if gc_off:
        gc.disable()
    try:
        for tick in events:
            starts.append(time.perf_counter_ns())
            node.process_trade_tick(tick)
    finally:
        gc.enable()
    lat = (np.asarray(stamps) - np.asarray(starts[: len(stamps)])) / 1000.0
    warm = lat[1000:] if len(lat) > 2000 else lat
    return {
        "orders": len(stamps),
        "p50_us": round(float(np.percentile(warm, 50)), 1),
        "p99_us": round(float(np.percentile(warm, 99)), 1),
        "max_us": round(float(warm.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=100_000)
    args = parser.parse_args()
    out = {
        "benchmark": "tick_to_order_latency",
        "ticks": args.ticks,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "gc_thresholds": gc.get_threshold(),
        "recording_venue": {
            "gc_on": run(args.ticks, simulated=False, gc_off=False),
            "gc_off": run(args.ticks, simulated=False, gc_off=True),
        },
        "simulated_venue": {
            "gc_on": run(args.ticks, simulated=True, gc_off=False),
            "gc_off": run(args.ticks, simulated=True, gc_off=True),
        },
        "target_p99_us_gc_on": 100,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
