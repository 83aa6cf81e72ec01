"""The chaos run (issue 11): `sapphire live` trades sma_cross against the local exchange
replaying the bundled month at 240x with every fault switched on at a few percent
(latency, HTTP 5xx, rate limits, answers held past ccxt's timeout after the order was
accepted, WebSocket drops, lost and reordered book deltas, exchange restarts), and the
live process is SIGKILLed 10 times at random (seeded) moments while it trades, each time
followed by `sapphire live resume RUN_ID`. Then:

- no order was sent twice: every orderLinkId is on the exchange once, every exchange
  order is the store's;
- no fill was lost or applied twice: every exchange execution is in the store exactly
  once;
- the store equals the exchange: orders' fills, position, USDT balance;
- the position path is the uncrashed run's where it must be. The uncrashed run is the
  event backtest of the same bars, strategy, size and fees, which
  `test_live_parity.py` shows an uncrashed live session equals fill for fill.

The position-path rule. sma_cross with `short=True` is always in the market after its
first signal and its position after a signal does not depend on what came before (a
cross up leaves it long `size`, a cross down short `size`, whatever it held). So after
each signal the exchange's position must be the uncrashed run's as soon as the signal's
orders have filled, unless the node could not act on it. Legitimately different: a
signal on a bar the node did not see (it was dead: from the last bar replayed before a
kill to the first bar the resumed process took; bars that pass while the node is down
are not replayed to the strategy) and a signal whose order never reached the exchange
(a 503 or a restart answered the creation: the venue finds no such order after
recvWindow and rejects it, "not received"; creations are never sent twice) and a
signal around an exchange restart (every request refused for `restart_pause`, then the
node takes the bars it missed, late: from 3 bars before it to 12 after) and a
signal taken while the previous signal's orders were still in flight (sent late, after
the next bar had opened, they fill a bar later than the uncrashed run's: the exchange's
position at the signal bar is not the uncrashed run's, and the strategy decides on the
position it holds). The
path is compared at the last bar before the next signal's fills, when that is at least
`SETTLE` bars after the signal (an order delayed by retries and back-offs fills at a
later bar's open). A duplicated order shows there as twice the size.

Every fault is on, but a live session subscribes to no order book, so the book faults
(`drop_delta`, `reorder_delta`) find nothing to act on here (`test_live_streams.py`
covers them); the counts of what was injected are printed.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from local_exchange import CREDS, LINEAR, Exchange, frame, no_internet
from test_live_session import assert_store_is_exchange, exchange_position, wait
from test_live_venue import Harness, market

from sapphire import Backtest
from sapphire.domain import InstrumentId, OrderFilled, OrderSide, OrderStatus, OrderSubmitted
from sapphire.live import LiveConfig, LiveSession
from sapphire.store import Store
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.exchange import FaultPlan
from sapphire.venues.live import OrderState
from sapphire.venues.market_data import KlinePoller

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

HISTORY = 1440  # the exchange's bars already replayed (`Exchange`)
WARMUP = 30
SPEED = 240  # a 1-minute bar every 0.25 s
KILLS = 10
SETTLE = 6  # bars a signal's orders get to fill before the path is compared
SIZE = Decimal("0.01")
RESTART = 120  # bars between two restarts of the exchange
FAULTS = (
    "latency=20ms±10,http5xx=0.02,rate_limit=0.02,timeout_after_accept=0.05,"
    f"ws_disconnect=0.03,drop_delta=0.03,reorder_delta=0.03,restart=every:{RESTART}bars,"
    "restart_pause=1s,timeout_hold=12s"
)
ARGS = ["--param", "fast=3", "--param", "slow=8", "--param", "short=true", "--size", "0.01",
        "--size-mode", "fixed", "--warmup", str(WARMUP), "--poll-interval", "0.05",
        "--reconcile-every", "5"]  # fmt: skip


def test_kline_reads_outlive_5xx_and_rate_limits(frame: pd.DataFrame) -> None:
    """A kline read answered 503 or 10006 is tried again (the start and the warm-up
    history) or left to the next poll: the session's loop never dies of it (it did: the
    chaos run's first failure)."""
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    conn = BybitConnection(BybitEnvironment.LOCAL, url=ex.url)
    faults.status("/v5/market/time", 503)
    poller = KlinePoller(conn, LINEAR, "1m", InstrumentId(LINEAR, "BYBIT"), interval_s=0.01)
    try:
        assert faults.count("/v5/market/time") == 2  # refused once, then answered
        faults.status("/v5/market/kline", 503)
        faults.answer("/v5/market/kline", 10006)
        replay = ex.state.replay
        i = replay.position
        assert [b.close for b in poller.history(5)] == list(replay.close[i - 5 : i])
        faults.status("/v5/market/kline", 503, times=2)
        ex.state.advance()
        assert poller.poll(0.0) == []  # the 503: nothing this time, no exception
        got = poller.poll(2.0)  # the next try after another 503
        assert [b.close for b in got] == [replay.close[i]]
        assert len(poller.errors) == 5
    finally:
        poller.close()
        ex.server.stop()


def test_a_reversal_reaches_the_exchange_close_first(frame: pd.DataFrame) -> None:
    """A short position reversed: a reduce-only close, then the new entry. The close is
    held up on its way (its sizer reads the ticker, answered late) and still reaches
    the exchange first; both fill, long 0.01. Sent side by side, the entry arrived
    first, closed the short, and the close was canceled with nothing to reduce (the
    chaos run's second failure: a position of 0 where the uncrashed run was long)."""
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    h = Harness(ex)
    try:
        short = h.submit(market(OrderSide.SELL, "0.01"))
        h.wait(lambda: short.status is OrderStatus.ACCEPTED)
        ex.state.advance()
        h.wait(lambda: short.status is OrderStatus.FILLED)
        faults.stall("/v5/market/tickers", 0.5, forward=True)
        close = h.submit(
            market(OrderSide.BUY, "0.01", reduce_only=True),
            sizer=lambda price, equity: Decimal("0.01"),
        )
        entry = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: all(o.status is OrderStatus.ACCEPTED for o in (close, entry)))
        links = [r.link_id for r in ex.state.orders.values()]
        assert links[1:] == [str(close.client_order_id), str(entry.client_order_id)]
        ex.state.advance()
        h.wait(lambda: close.status is OrderStatus.FILLED and entry.status is OrderStatus.FILLED)
        assert exchange_position(ex) == Decimal("0.01")
    finally:
        h.venue.close()
        ex.server.stop()


def test_an_answer_held_up_does_not_hold_up_the_next_order(frame: pd.DataFrame) -> None:
    """The first creation's answer is held 2 s after the exchange took it; the private
    stream reports the order, and the next creation goes at once (in the chaos run, an
    answer held past ccxt's timeout kept a reversal's entry 10 s behind its close)."""
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    h = Harness(ex)
    try:
        h.wait(lambda: h.venue.counters().get("connects", 0) >= 1)  # the stream is up
        faults.stall("/v5/order/create", 2.0, forward=True)
        first = h.submit(market(OrderSide.BUY, "0.01"))
        second = h.submit(market(OrderSide.BUY, "0.01"))
        started = time.monotonic()
        h.wait(lambda: second.status is OrderStatus.ACCEPTED, timeout=5.0)
        assert time.monotonic() - started < 1.5
        links = [r.link_id for r in ex.state.orders.values()]
        assert links == [str(first.client_order_id), str(second.client_order_id)]
    finally:
        h.venue.close()
        ex.server.stop()


def test_the_venue_starts_through_an_exchange_restart(frame: pd.DataFrame) -> None:
    """`sapphire live resume` started while the exchange restarts (every request answered
    503 for 1.5 s): the venue asks again from the beginning and starts (it died with a
    traceback: the chaos run's fourth failure)."""
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    faults.down = True
    timer = threading.Timer(1.5, lambda: setattr(faults, "down", False))
    timer.start()
    started = time.monotonic()
    try:
        h = Harness(ex)
        try:
            assert time.monotonic() - started >= 1.5
            assert h.venue.guard.breaker.allows_orders()
            order = h.submit(market(OrderSide.BUY, "0.01"))
            h.wait(lambda: order.status is OrderStatus.ACCEPTED)
        finally:
            h.venue.close()
    finally:
        timer.cancel()
        ex.server.stop()


ACTOR = """
from decimal import Decimal
from sapphire.engine.strategy import EventStrategy

class Actor(EventStrategy):
    \"\"\"A market buy of 0.01 on its first bar; the position it sees at every bar.\"\"\"

    def __init__(self) -> None:
        super().__init__("a")
        self.seen = []

    def on_bar(self, bar):
        self.seen.append(self.node.portfolio.net_quantity(bar.instrument_id))
        if len(self.seen) == 1:
            self.submit_order(self.market(bar.instrument_id, "BUY", "0.01"))
"""


@pytest.mark.slow
def test_a_bar_waits_for_the_market_order_filled_at_its_open(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    """The bar whose open fills a market order comes before its fill (here: held back
    0.5 s): the strategy still acts on the position that fill made (the chaos run's
    third failure: a reversal acted on a stale position and sent one order of two)."""
    ex = Exchange(frame)
    path = tmp_path / "actor.py"
    path.write_text(ACTOR, encoding="utf-8")
    cfg = LiveConfig(
        env="local", url=ex.url, strategy=f"{path}:Actor", warmup=30, poll_interval=0.05,
        reconcile_every=3600.0, risk_profile=None,
    )  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    session = LiveSession.start(cfg, store=store, home=tmp_path, environ=ex.environ(), run_id="a")
    try:
        ex.state.advance()
        session.run(max_bars=1, max_seconds=10)
        venue = session.venue
        (order,) = session.node.open_orders()

        def accepted() -> bool:
            venue.drain()
            return order.status is OrderStatus.ACCEPTED

        wait(accepted)
        real = venue.drain
        release = time.monotonic() + 0.5
        venue.drain = lambda: real() if time.monotonic() > release else 0
        ex.state.advance()  # the market order fills at this bar's open
        session.run(max_bars=2, max_seconds=10)
        assert session.trader.seen == [Decimal(0), Decimal("0.01")]
    finally:
        session.stop(on_exit="leave")
        ex.server.stop()


class Tape:
    """What the exchange did, recorded as it happens: the wall time each bar was
    replayed, and the linear position after each bar."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.wall: list[int] = []  # wall ns of bar HISTORY + i
        self.after: list[Decimal] = []  # the position after bar HISTORY + i
        self._pos = Decimal(0)
        ex.state.subscribe(self)

    def __call__(self, topic: str, data: dict[str, Any]) -> None:
        if topic == "execution" and data.get("category") == "linear":
            qty = Decimal(str(data["execQty"]))
            self._pos += qty if data["side"] == "Buy" else -qty
        elif topic == "bar":
            self.wall.append(time.time_ns())
            self.after.append(self._pos)

    def bar_at(self, wall_ns: int) -> int:
        """The index (from HISTORY) of the last bar replayed at `wall_ns`."""
        return bisect.bisect_right(self.wall, wall_ns) - 1


def reference(frame: pd.DataFrame, bars: int) -> tuple[list[int], list[Decimal]]:
    """The uncrashed run: the event backtest's fill bars (from HISTORY) and its position
    after each bar."""
    data = frame.iloc[HISTORY - WARMUP : HISTORY + bars].reset_index(drop=True)
    bt = Backtest(
        data, "sma_cross", engine="event", cash=100_000.0, size=float(SIZE),
        size_mode="fixed", risk_profile="conservative", maker_fee=0.0002,
        taker_fee=0.00055, tick_size=0.1, lot_size=0.001, fast=3, slow=8, short=True,
    )  # fmt: skip
    bt.run()
    node = bt.event_run.node
    start = pd.DatetimeIndex(data["timestamp"]).as_unit("ns").asi8
    delta: dict[int, Decimal] = {}
    for o in node.orders.values():
        if node.tags.get(o.client_order_id) == "end":
            continue
        for e in o.events:
            if isinstance(e, OrderFilled):
                i = int(start.searchsorted(e.ts_ns)) - WARMUP
                delta[i] = delta.get(i, Decimal(0)) + e.last_qty * o.side.sign
    # a position the backtest entered on a warm-up bar is held from the first live bar
    pos = sum((q for i, q in delta.items() if i < 0), Decimal(0))
    path = []
    for i in range(bars):
        pos += delta.get(i, Decimal(0))
        path.append(pos)
    return sorted(i for i in delta if i >= 0), path


@pytest.mark.slow
def test_faults_and_ten_sigkills_lose_and_duplicate_nothing(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    started = time.monotonic()
    ex = Exchange(frame, plan=FaultPlan.parse(FAULTS, seed=11))
    tape = Tape(ex)
    env = {
        **os.environ, "SAPPHIRE_HOME": str(tmp_path), "BYBIT_LOCAL_API_KEY": CREDS.key,
        "BYBIT_LOCAL_API_SECRET": CREDS.secret,
    }  # fmt: skip
    env.pop("SAPPHIRE_DATABASE_URL", None)
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    first = [sys.executable, "-m", "sapphire", "live", "--env", "local", "--url", ex.url,
             *ARGS, "--run-id", "chaos"]  # fmt: skip
    again = [sys.executable, "-m", "sapphire", "live", "resume", "chaos"]
    rng = random.Random(2026)
    down: list[tuple[int, int]] = []  # bars the node did not see: [from, to)
    tf_ns = 60_000_000_000
    # (a process's first bar is its first equity snapshot: those before it are not)
    seen_snaps: set[int] = set()

    def first_bar_taken() -> int | None:
        """The first bar (index from HISTORY) the current process took: its first
        equity snapshot (stamped at the bar's end)."""
        try:
            new = {s.ts_ns for s in store.equity_snapshots("chaos")} - seen_snaps
        except Exception:
            return None
        if not new:
            return None
        seen_snaps.update(new)
        return int(frame_ns.searchsorted(min(new) - tf_ns)) - HISTORY

    frame_ns = pd.DatetimeIndex(frame["timestamp"]).as_unit("ns").asi8

    def life(cmd: list[str], last: bool) -> tuple[int, int]:
        """One process: started, killed after 3 new fills at a random moment (the last
        one runs to its end); the first bar it took and the last bar replayed when it
        died."""
        seen_snaps.update(s.ts_ns for s in store.equity_snapshots("chaos"))
        log = tmp_path / f"life{len(down)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            taken: list[int] = []

            def running() -> bool:
                if not taken:
                    bar = first_bar_taken()
                    if bar is not None:
                        taken.append(bar)
                return bool(taken) or proc.poll() is not None

            wait(running, 60)
            assert taken, log.read_text()
            if last:
                assert proc.wait(60) == 0, log.read_text()
                return taken[0], len(tape.wall)
            fills = len(store.fills("chaos"))
            wait(lambda: len(store.fills("chaos")) >= fills + 3 or proc.poll() is not None, 40)
            time.sleep(rng.uniform(0.0, 1.5))
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return taken[0], max(0, len(tape.wall) - 1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    clock = ex.state.start_clock(speed=SPEED)
    killed_at = 0
    try:
        for k in range(KILLS + 1):
            last = k == KILLS
            # the last life runs 16 s (64 bars) unkilled: enough signals to compare
            cmd = (first if k == 0 else again) + ["--seconds", "16" if last else "300"]
            if last:
                cmd += ["--on-exit", "leave"]
            taken, killed = life(cmd, last)
            down.append((killed_at, taken))
            killed_at = killed
    finally:
        clock.stop()
    bars = len(tape.wall)
    # what was in flight settles on the exchange; a last resume takes it; store = exchange
    time.sleep(0.5)
    final = LiveSession.resume("chaos", store=store, environ=ex.environ())
    venue = final.venue
    in_flight = (OrderState.SENDING, OrderState.UNKNOWN)  # an unanswered creation: found,
    # or rejected as not received once recvWindow has passed

    def settled() -> bool:
        final.settle(0.0)
        opened = final.node.open_orders()
        return all(venue.order_state(str(o.client_order_id)) not in in_flight for o in opened)

    wait(settled, 20)
    final.stop(on_exit="leave")
    counts = dict(ex.app.state.faults.counts)
    ex.server.stop()
    assert_store_is_exchange(store, "chaos", ex)
    balance = store.balances("chaos")
    (state,) = balance.values()
    wallet = ex.state.venue.account.balance("USDT")
    assert {b.currency: b.total for b in state.balances}["USDT"] == wallet
    orders = store.orders("chaos")
    assert not [o for o in orders if not o.is_terminal], "an order left open"

    # the position path
    fill_bars, path = reference(frame, bars)
    lost: list[int] = []  # bars of orders that never reached the exchange

    def submitted(order: Any) -> int:
        events = store.order_events(str(order.client_order_id))
        return next(e.ts_ns for e in events if isinstance(e, OrderSubmitted))

    for o in orders:
        if o.status is OrderStatus.REJECTED:
            lost.append(tape.bar_at(submitted(o)))
    blind = [(a - 1, b) for a, b in down]
    # the exchange's restarts: everything refused for restart_pause (4 bars), then the
    # node catches up on the bars it missed, late
    blind += [(r - 3, r + 12) for r in range(RESTART - 1, bars, RESTART)]
    compared = stale = 0
    for f, nxt in itertools.pairwise(fill_bars):
        signal_bar, at = f - 1, nxt - 1
        if at - signal_bar < SETTLE:
            continue
        if any(a <= signal_bar < b for a, b in blind) or any(signal_bar <= x <= at for x in lost):
            continue
        if tape.after[signal_bar] != path[signal_bar]:
            # the previous signal's orders had not filled when the node took this bar
            # (sent late, after the next bar opened): it decided on the position it held
            stale += 1
            continue
        if tape.after[at] != path[at]:
            sent = sorted(
                (tape.bar_at(submitted(o)), str(o.client_order_id), o.side.value,
                 o.status.value)
                for o in orders
            )  # fmt: skip
            window = range(signal_bar - 8, at + 2)
            raise AssertionError(
                f"signal on bar {signal_bar}: position {tape.after[at]} at bar {at}, the "
                f"uncrashed run's {path[at]}; down {down}, lost {lost}, orders sent "
                f"{[x for x in sent if x[0] in window]}, reference fills at "
                f"{[f for f in fill_bars if f in window]}, exchange path "
                f"{[str(tape.after[i]) for i in window if i < bars]}"
            )
        assert abs(tape.after[at]) == SIZE
        compared += 1
    fills = store.fills("chaos")
    print(f"chaos: {bars} bars, {len(orders)} orders, {len(fills)} fills, {KILLS} kills, "
          f"path compared at {compared} of {len(fill_bars)} signals ({stale} taken on a "
          f"position still in flight), {len(lost)} orders "
          f"not received, faults {counts}, {time.monotonic() - started:.0f} s")  # fmt: skip
    assert compared >= 8  # 9 to 16 in runs on a loaded 2-core machine: never vacuous
    assert all(counts.get(name, 0) > 0 for name in ("http5xx", "rate_limit", "restart"))
    assert exchange_position(ex) == sum((p.quantity for p in store.positions("chaos")), Decimal(0))
