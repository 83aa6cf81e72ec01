"""Crash tests: the paper node (not the venue) is SIGKILLed and resumed, again and again.

1. Paced (`test_node_killed_twenty_times_loses_and_duplicates_nothing`): 20 seeded
   moments; afterwards no order is lost or duplicated and the store's orders, fills,
   positions and balances equal the venue's. Moments: a random delay (the node dies
   wherever it is; the kill waits for the process to have made an order, so that it
   lands while trading, not during start-up), or a test-only crash point
   (`SAPPHIRE_PAPER_CRASH_POINT`) at which the real node process SIGKILLs itself:
   `before_send` (SUBMITTED committed, the venue never got the order), `after_send`
   (the venue has it, the node never recorded the answer), `before_record` (a venue
   event received, not yet recorded). The venue runs paced (1000x: a bar every 60 ms),
   so it keeps matching while the node is dead; the last resume switches it to lockstep
   (`max`) to finish the data quickly. Three days of bars (about 260 s of venue time)
   leave a margin for the twenty crashes and restarts on a loaded machine (a restart
   can take 5-10 s on two busy cores): a crash point the node never reaches, or a kill
   after the run's last order, because the data ended first, fails the test. A duplicated order (one
   decision sent twice, under any id) shows as two orders of one bar or as a position
   beyond the strategy's size.
2. Lockstep (`test_crashed_session_trades_as_the_uncrashed_one`): the same session
   with `--speed max` (the venue waits for the node, so bars are not skipped while it is
   dead) is killed at `after_send` and `before_record`, the moments where nothing may
   be lost, and must trade exactly as the same session run without a crash, alongside:
   the same orders, the same fills (time, side, quantity, price), the same position path
   and balances.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from sapphire.domain import OrderDenied, OrderStatus
from sapphire.paper import NEVER_REACHED
from sapphire.store import Store

pytestmark = pytest.mark.slow

RUN = "crash-test"
CLI = [sys.executable, "-m", "sapphire", "paper"]
SIZE = Decimal("0.01")
#: the session; sizing and margin explicit, not the run defaults
SESSION = [
    "--size", str(SIZE), "--size-mode", "fixed", "--leverage", "1", "-p", "fast=3",
    "-p", "slow=8", "--fee", "0.0005", "--no-live",
]  # fmt: skip
START = [
    "--run-id", RUN, "--start", "2022-01-05", "--end", "2022-01-08", "--speed", "1000x",
    *SESSION,
]  # fmt: skip


def _env(home: Path, point: str | None = None, at: int = 1) -> dict[str, str]:
    env = {**os.environ, "SAPPHIRE_HOME": str(home), "SAPPHIRE_PAPER_VENUE_IDLE": "60"}
    env.pop("SAPPHIRE_PAPER_CRASH_POINT", None)
    if point is not None:
        env["SAPPHIRE_PAPER_CRASH_POINT"] = point
        env["SAPPHIRE_PAPER_CRASH_AT"] = str(at)
    return env


def _orders_made(home: Path) -> int:
    """How many orders the store holds for the run (0 before the store exists)."""
    path = home / "sapphire.db"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT count(*) FROM orders WHERE run_id = ?", (RUN,)).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0
    finally:
        db.close()


def _kill_while_trading(args: list[str], home: Path, extra_s: float) -> int:
    """Start the node and SIGKILL it `extra_s` seconds after it made its first order
    (so the kill lands while trading, not during start-up); the orders it had then."""
    before = _orders_made(home)
    proc = subprocess.Popen(args, env=_env(home), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while _orders_made(home) <= before:
            assert proc.poll() is None, "the node ended before making an order"
            assert time.monotonic() < deadline, "the node made no order in 60 s"
            time.sleep(0.05)
        time.sleep(extra_s)
    finally:
        proc.send_signal(signal.SIGKILL)  # (also when the wait failed: no node left behind)
        proc.wait(timeout=30)
    return _orders_made(home)


def _store_trading(home: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The run's orders (decision time, side, quantity, reduce-only, status, average
    price) and fills (time, side, quantity, price), in time order."""
    store = Store(f"sqlite:///{home / 'sapphire.db'}")
    orders = sorted(
        (o.ts_init, o.side.value, o.quantity, o.reduce_only, o.status.value, o.avg_px)
        for o in store.orders(RUN)
    )
    fills = [
        (f.ts_ns, f.side.value, f.last_qty, f.last_px)
        for f in sorted(store.fills(RUN), key=lambda f: f.ts_ns)
    ]
    return orders, fills


def _position_path(fills: list[tuple[object, ...]]) -> list[Decimal]:
    """The position after each fill."""
    path, pos = [], Decimal(0)
    for _ts, side, qty, _px in fills:
        pos += qty if side == "BUY" else -qty  # type: ignore[operator]
        path.append(pos)
    return path


def _venue_state(run_dir: Path) -> dict[str, object]:
    db = sqlite3.connect(run_dir / "venue.db")
    try:
        submits = Counter(
            str(pickle.loads(p)["order"].client_order_id)
            for (p,) in db.execute("SELECT payload FROM inputs WHERE kind='submit'")
        )
        orders = {
            cid: (status, Decimal(filled), None if avg is None else Decimal(avg))
            for cid, status, filled, avg in db.execute(
                "SELECT client_order_id, status, filled_qty, avg_px FROM orders"
            )
        }
        tombstones = {
            cid for (cid,) in db.execute(
                "SELECT client_order_id FROM stream WHERE event_id LIKE '%-X-%'"
            )
        }  # fmt: skip
        fills = {t: Decimal(q) for t, q in db.execute("SELECT trade_id, qty FROM fills")}
        balances = {c: Decimal(t) for c, t in db.execute("SELECT currency, total FROM balances")}
        positions = {
            i: Decimal(q) for i, q in db.execute("SELECT instrument_id, qty FROM positions")
        }
    finally:
        db.close()
    return {
        "submits": submits, "orders": orders, "tombstones": tombstones, "fills": fills,
        "balances": balances, "positions": positions,
    }  # fmt: skip


def test_node_killed_twenty_times_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rng = random.Random(3_2026_12_01)
    plan = [
        rng.choice(["delay", "delay", "before_send", "after_send", "before_record"])
        for _ in range(20)
    ]
    # the first start dies trading, not before the run exists (then there is no resume)
    plan[0] = "after_send"
    crashed: Counter[str] = Counter()
    at_kill: list[int] = []  # orders in the store after each kill
    for k, kind in enumerate(plan):
        args = CLI + (START if k == 0 else ["resume", RUN, "--no-live"])
        if kind == "delay":
            at_kill.append(_kill_while_trading(args, home, rng.uniform(0.0, 1.0)))
        else:
            env = _env(home, kind, rng.randint(1, 3))
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, f"crash {k} ({kind}) did not kill the node"
            at_kill.append(_orders_made(home))
        crashed[kind] += 1

    final = subprocess.run(
        [*CLI, "resume", RUN, "--speed", "max", "--no-live", "--json"],
        env=_env(home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]

    run_dir = home / "paper" / RUN
    venue = _venue_state(run_dir)
    store = Store(f"sqlite:///{home / 'sapphire.db'}")
    info = store.run(RUN)
    assert info.status.value == "FINISHED"
    orders = store.orders(RUN)
    assert len(orders) > 20, "the session traded too little to test anything"
    # every kill landed while trading: after the first order, before the last
    assert min(at_kill) >= 1 and max(at_kill) < len(orders), (at_kill, len(orders))
    # no decision was sent twice: at most one order per bar (sma_cross long-only makes
    # one decision a bar; a resumed node that acted on a bar again would make a second)
    decided = Counter(o.ts_init for o in orders)
    assert max(decided.values()) == 1, [t for t, n in decided.items() if n > 1][:5]

    # every client order id reached the venue at most once, none twice
    assert venue["submits"], "no order reached the venue"
    assert max(venue["submits"].values()) == 1
    # the orders: the store's (those the risk engine let through) are the venue's
    sent = {
        str(o.client_order_id): o
        for o in orders
        if not any(isinstance(e, OrderDenied) for e in o.events)
    }
    assert set(sent) == set(venue["orders"]) | venue["tombstones"]
    assert not set(venue["orders"]) & venue["tombstones"]
    for cid, (status, filled, avg) in venue["orders"].items():
        o = sent[cid]
        assert (o.status.value, o.filled_qty, o.avg_px) == (status, filled, avg), cid
    for cid in venue["tombstones"]:
        assert sent[cid].status is OrderStatus.REJECTED
        assert NEVER_REACHED in str(sent[cid].events[-1])
    # a tombstone for each order the node died before sending (a random-delay kill can
    # land in that window too)
    assert len(venue["tombstones"]) >= crashed["before_send"]
    assert not [o for o in orders if o.is_open]
    # fills, positions and balances
    fills = store.fills(RUN)
    assert {str(f.trade_id): f.last_qty for f in fills} == venue["fills"]
    assert len(fills) == len(venue["fills"])
    positions = {str(p.instrument_id): p.quantity for p in store.positions(RUN)}
    assert positions == venue["positions"]
    # the position path: flat or long the strategy's size, never more (a duplicated
    # entry would double it), and flat at the end
    path = _position_path(_store_trading(home)[1])
    assert set(path) <= {Decimal(0), SIZE}, sorted(set(path))
    assert path[-1] == 0
    (state,) = store.balances(RUN).values()
    assert {b.currency: b.total for b in state.balances} == venue["balances"]
    print(
        f"crashes {dict(crashed)}; orders {len(orders)}, sent {len(sent)}, fills {len(fills)}, "
        f"tombstones {len(venue['tombstones'])}"
    )
    # the venue server stopped with the session
    assert not (run_dir / "venue.json").exists()


def test_crashed_session_trades_as_the_uncrashed_one(tmp_path: Path) -> None:
    session = ["--start", "2022-01-05", "--end", "2022-01-06", "--speed", "max", *SESSION]
    # the same session without a crash, alongside
    reference_home = tmp_path / "reference"
    reference = subprocess.Popen(
        [*CLI, "--run-id", RUN, *session], env=_env(reference_home), stdout=subprocess.DEVNULL
    )
    home = tmp_path / "home"
    rng = random.Random(7_2026_12_07)
    plan = ["after_send"] + [rng.choice(["after_send", "before_record"]) for _ in range(4)]
    at_kill = []
    for k, kind in enumerate(plan):
        args = [*CLI, "--run-id", RUN, *session] if k == 0 else [*CLI, "resume", RUN, "--no-live"]
        proc = subprocess.run(
            args, env=_env(home, kind, rng.randint(1, 3)), stdout=subprocess.DEVNULL, timeout=120
        )
        assert proc.returncode == -signal.SIGKILL, f"crash {k} ({kind}) did not kill the node"
        at_kill.append(_orders_made(home))
    final = subprocess.run(
        [*CLI, "resume", RUN, "--no-live"], env=_env(home), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert reference.wait(timeout=300) == 0

    orders, fills = _store_trading(home)
    want_orders, want_fills = _store_trading(reference_home)
    assert len(want_fills) > 50, "the session traded too little to test anything"
    assert min(at_kill) >= 1 and max(at_kill) < len(orders), (at_kill, len(orders))
    assert orders == want_orders
    assert fills == want_fills
    assert _position_path(fills) == _position_path(want_fills)
    balances = [
        {b.currency: b.total for b in state.balances}
        for h in (home, reference_home)
        for state in Store(f"sqlite:///{h / 'sapphire.db'}").balances(RUN).values()
    ]
    assert balances[0] == balances[1]
