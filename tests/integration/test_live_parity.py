"""Parity of live trading with the backtest: sma_cross run by `LiveSession` against the
local Bybit exchange (real HTTP, unmodified ccxt, the store write-ahead) ends with the
same fills as `Backtest(engine="event")` on the same bars under the exchange's fill
model: a market order fills at the next bar's open, at Bybit's taker fee (0.055 %), on
BTCUSDT's tick (0.1) and lot (0.001), the same fixed size.

The live loop runs in lockstep with the exchange (`step`: the exchange replays one bar,
the session takes its fills, then the bar), so every fill is known to belong to the bar
just replayed: compared bar by bar, side, quantity, price and fee as exact Decimals.

What is compared: the live session starts flat at the first bar after the exchange's
history, its strategy warmed up on the `warmup` bars before it (not acted on). The
backtest runs over those warm-up bars and the live ones, so it may already hold a
position entered on a warm-up bar; its fills are compared from the first entry signalled
on a live bar on (a position entered during the warm-up, and its exit, have no live
counterpart), and without the close the backtest makes at the end of its data (the
live session leaves its position open).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from local_exchange import Exchange, frame, no_internet
from test_live_session import assert_store_is_exchange, step

from sapphire import Backtest
from sapphire.domain import OrderFilled
from sapphire.live import LiveConfig, LiveSession
from sapphire.store import Store

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

HISTORY = 1440  # the exchange's bars already replayed (`Exchange`)
WARMUP = 30
BARS = 800  # live bars: 100+ closed trades of sma_cross 3/8 with reversals
PARAMS: dict[str, Any] = {"fast": 3, "slow": 8, "short": True}
#: the sizing and costs both runs share (the exchange's: Bybit's linear fee tier, tick, lot)
RUN: dict[str, Any] = {"size": 0.01, "size_mode": "fixed", "risk_profile": None}
EXCHANGE = {"maker_fee": 0.0002, "taker_fee": 0.00055, "tick_size": 0.1, "lot_size": 0.001}

Row = tuple[int, str, Decimal, Decimal, Decimal]  # bar time (ns), side, qty, price, fee


def live_fills(frame: pd.DataFrame, store: Store, tmp_path: Path) -> tuple[list[Row], float]:
    ex = Exchange(frame)
    try:
        cfg = LiveConfig(
            env="local", url=ex.url, params=PARAMS, warmup=WARMUP, poll_interval=0.05,
            reconcile_every=3600.0, **RUN,
        )  # fmt: skip
        started = time.monotonic()
        session = LiveSession.start(
            cfg, store=store, home=tmp_path, environ=ex.environ(), run_id="parity"
        )
        rows: list[Row] = []
        seen: set[str] = set()
        try:
            for _ in range(BARS):
                replay = ex.state.replay
                bar_ns = int(replay.time_ms[replay.position]) * 1_000_000
                step(session, ex)
                for f in store.fills("parity"):
                    if str(f.trade_id) not in seen:
                        seen.add(str(f.trade_id))
                        rows.append((bar_ns, f.side.value, f.last_qty, f.last_px, f.fee))
            session.settle(5.0)
        finally:
            session.stop(on_exit="leave")
        assert_store_is_exchange(store, "parity", ex)
        return rows, time.monotonic() - started
    finally:
        ex.server.stop()


def backtest_fills(frame: pd.DataFrame) -> list[Row]:
    bars = frame.iloc[HISTORY - WARMUP : HISTORY + BARS].reset_index(drop=True)
    bt = Backtest(bars, "sma_cross", engine="event", cash=100_000.0, **RUN, **EXCHANGE, **PARAMS)
    bt.run()
    node = bt.event_run.node
    # the backtest closes what is open at the end of its data (tag "end"); the live
    # session leaves it open
    fills = [
        (o, e) for o in node.orders.values() for e in o.events
        if isinstance(e, OrderFilled) and node.tags.get(o.client_order_id) != "end"
    ]  # fmt: skip
    fills.sort(key=lambda oe: oe[1].ts_ns)
    return [(e.ts_ns, o.side.value, e.last_qty, e.last_px, e.fee) for o, e in fills]


def compared(rows: list[Row], first_live_ns: int) -> list[Row]:
    """The backtest's fills from the first entry signalled on a live bar (filled after
    the first live bar) on."""
    for i, row in enumerate(rows):
        if row[0] > first_live_ns and _is_entry(rows, i):
            return rows[i:]
    return []


def closed_trades(rows: list[Row]) -> int:
    """How many trades the fills close: each time the position returns to zero or
    changes sign (a reversal closes one trade and opens the next)."""
    closed, pos = 0, Decimal(0)
    for _, side, qty, _, _ in rows:
        after = pos + (qty if side == "BUY" else -qty)
        if pos != 0 and (after == 0 or (after > 0) != (pos > 0)):
            closed += 1
        pos = after
    return closed


def _is_entry(rows: list[Row], i: int) -> bool:
    """Whether fill `i` opens a position (the signed sum of the fills before it is 0)."""
    pos = sum((q if s == "BUY" else -q for _, s, q, _, _ in rows[:i]), Decimal(0))
    return pos == 0


@pytest.mark.slow
def test_sma_cross_live_ends_with_the_backtests_fills(frame: pd.DataFrame, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    live, seconds = live_fills(frame, store, tmp_path)
    replay_ns = pd.DatetimeIndex(frame["timestamp"]).as_unit("ns").asi8
    expected = compared(backtest_fills(frame), int(replay_ns[HISTORY]))
    print(f"parity: {len(live)} live fills ({closed_trades(live)} closed trades) vs "
          f"{len(expected)} backtest fills, {BARS} bars in {seconds:.1f} s")  # fmt: skip
    assert live == expected
    assert closed_trades(live) >= 100
