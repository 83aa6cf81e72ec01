"""Crash test: the paper node (not the venue) is SIGKILLed at 20 seeded moments and
resumed each time; afterwards no order is lost or duplicated and the store's orders,
fills, positions and balances equal the venue's.

Moments: a random delay (the node dies wherever it is), or a test-only crash point
(`SAPPHIRE_PAPER_CRASH_POINT`) at which the real node process SIGKILLs itself:
`before_send` (SUBMITTED committed, the venue never got the order), `after_send` (the
venue has it, the node never recorded the answer), `before_record` (a venue event
received, not yet recorded). The venue runs paced (2000x: a bar every 30 ms), so it
keeps matching while the node is dead; the last resume switches it to lockstep (`max`)
to finish the data quickly. Three days of bars (about 130 s of venue time) leave a
margin for the twenty crashes on a loaded CI machine: a crash point the node never
reaches, because the data ended first, fails the test.
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
START = [
    "--run-id", RUN, "--start", "2022-01-05", "--end", "2022-01-08", "--speed", "2000x",
    "--size", "0.01", "-p", "fast=3", "-p", "slow=8", "--fee", "0.0005", "--no-live",
]  # fmt: skip


def _env(home: Path, point: str | None = None, at: int = 1) -> dict[str, str]:
    env = {**os.environ, "SAPPHIRE_HOME": str(home), "SAPPHIRE_PAPER_VENUE_IDLE": "60"}
    env.pop("SAPPHIRE_PAPER_CRASH_POINT", None)
    if point is not None:
        env["SAPPHIRE_PAPER_CRASH_POINT"] = point
        env["SAPPHIRE_PAPER_CRASH_AT"] = str(at)
    return env


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
    for k, kind in enumerate(plan):
        args = CLI + (START if k == 0 else ["resume", RUN, "--no-live"])
        if kind == "delay":
            proc = subprocess.Popen(args, env=_env(home), stdout=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.2, 2.6))  # start-up is ~1 s: most land while trading
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        else:
            env = _env(home, kind, rng.randint(1, 3))
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"crash {k} ({kind}) did not kill the node"
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
    (state,) = store.balances(RUN).values()
    assert {b.currency: b.total for b in state.balances} == venue["balances"]
    print(
        f"crashes {dict(crashed)}; orders {len(orders)}, sent {len(sent)}, fills {len(fills)}, "
        f"tombstones {len(venue['tombstones'])}"
    )
    # the venue server stopped with the session
    assert not (run_dir / "venue.json").exists()
