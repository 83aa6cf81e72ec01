"""A paper session trading several instruments in one node: the venue server replays the
bundled Binance pairs in lockstep on one bar clock, the `Rebalancer` holds its target
weights through the risk engine, and a node killed in the middle of a rebalance resumes
without losing or duplicating an order and ends where the uncrashed session ends."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sapphire.domain import InstrumentId, OrderSide
from sapphire.engine.rebalance import Rebalancer
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

DATA = Path(__file__).parents[1] / "data"
SYMBOLS = ("ETH", "ADA", "XMR")
SOURCES = ",".join(f"{s}={DATA.resolve()}/binance-{s}_BTC-5m.feather" for s in SYMBOLS)
WEIGHTS = "ETH=0.4,ADA=0.3,XMR=0.25"
LOT = Decimal("0.01")
IIDS = {s: InstrumentId(s, "PAPER") for s in SYMBOLS}
#: the session's settings (the CLI's options and PaperConfig's fields)
SETTINGS: dict[str, Any] = {
    "strategy": "rebalance", "data": SOURCES, "weights": WEIGHTS,
    "rebalance_every": "100", "speed": "max", "cash": 10.0, "taker_fee": 0.001,
    "maker_fee": 0.001, "lot_size": 0.01, "end": "2018-01-11T12:00",
}  # fmt: skip


def _start(tmp_path: Path, **changes: object) -> PaperSession:
    config = PaperConfig(**{**SETTINGS, "risk_profile": None, **changes})
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return PaperSession.start(config, store=store, home=tmp_path)


def test_a_paper_session_holds_the_target_weights_of_several_instruments(
    tmp_path: Path,
) -> None:
    session = _start(tmp_path)
    try:
        view = session.run(shutdown_venue=False)
        venue = session.client.call("snapshot")
    finally:
        session.shutdown_venue()
    assert view.status == "finished" and view.bars == 373
    rb = session.adapter
    assert isinstance(rb, Rebalancer)
    assert [r.bar for r in rb.history] == [0, 100, 200, 300]
    held = {iid: Decimal(0) for iid in rb.instruments}
    for record in rb.history:
        assert record.done and not record.refused
        for cid in record.orders:
            order = session.node.orders[cid]
            assert order.filled_qty == order.quantity
            held[order.instrument_id] += order.filled_qty * (
                1 if order.side is OrderSide.BUY else -1
            )
        # each position within one lot of its target weight of the equity
        for iid in rb.instruments:
            assert abs(record.targets[iid] - held[iid]) < LOT, (iid, record.bar)
    # the node's books are the venue's, instrument by instrument
    assert {str(i): str(q) for i, q in held.items()} == view.positions
    assert {k: Decimal(v) for k, v in view.positions.items()} == venue["positions"]
    store = session.store
    assert {str(p.instrument_id): p.quantity for p in store.positions(session.run_id)} == (
        venue["positions"]
    )
    # the rebalancer's state is written ahead: nothing left in progress at the end
    state = json.loads((session.run_dir / "rebalancer.json").read_text())
    assert state["step"] is None and state["portfolio_bars"] == 373


def test_a_risk_limit_denies_an_order_of_the_rebalance(tmp_path: Path) -> None:
    profile = tmp_path / "capped.yaml"
    profile.write_text(
        "name: capped\nrisk_per_trade: 0.01\npre_trade:\n  max_notional_per_order: 3.5\n"
    )
    session = _start(tmp_path, risk_profile=str(profile))
    try:
        view = session.run()
    finally:
        session.shutdown_venue()
    rb = session.adapter
    assert isinstance(rb, Rebalancer)
    first = rb.history[0]
    # 10 BTC: the 4 BTC ETH buy is over the 3.5 BTC limit, the others go through
    assert [r.instrument_id for r in first.refused] == [IIDS["ETH"]]
    assert "max_notional_per_order 3.50" in first.refused[0].reason
    assert view.denied and sum(view.denied.values()) == sum(len(r.refused) for r in rb.history)
    assert Decimal(view.positions["ETH@PAPER"]) == 0
    assert Decimal(view.positions["ADA@PAPER"]) > 0


def test_bad_rebalance_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="DOGE names an unknown instrument"):
        PaperConfig(**{**SETTINGS, "weights": "DOGE=0.5"})
    with pytest.raises(ValueError, match=r"sum to 1\.2"):
        PaperConfig(**{**SETTINGS, "weights": "ETH=0.6,ADA=0.6"})
    with pytest.raises(ValueError, match="needs --weights or --allocation"):
        PaperConfig(**{**SETTINGS, "weights": None})
    with pytest.raises(ValueError, match="give --strategy rebalance"):
        PaperConfig(weights="ETH=0.5")
    with pytest.raises(ValueError, match="instrument 'ETH' is given twice"):
        PaperConfig(**{**SETTINGS, "data": "ETH=a.csv,ETH=b.csv"})


# ------------------------------------------------------------------ crash and resume
RUN = "rebalance-crash"
CLI = [sys.executable, "-m", "sapphire", "paper"]
ARGS = [
    "--run-id", RUN, "--strategy", "rebalance", "--data", SOURCES, "--weights",
    WEIGHTS, "--rebalance-every", "100", "--speed", "max", "--cash", "10",
    "--fee", "0.001", "--lot-size", "0.01", "--end", "2018-01-11T12:00", "--risk-profile",
    "aggressive", "--no-live",
]  # fmt: skip


def _env(home: Path, point: str | None = None, at: int = 1) -> dict[str, str]:
    env = {**os.environ, "SAPPHIRE_HOME": str(home), "SAPPHIRE_PAPER_VENUE_IDLE": "60"}
    env.pop("SAPPHIRE_PAPER_CRASH_POINT", None)
    if point is not None:
        env["SAPPHIRE_PAPER_CRASH_POINT"] = point
        env["SAPPHIRE_PAPER_CRASH_AT"] = str(at)
    return env


def _venue_positions_and_submits(run_dir: Path) -> tuple[dict[str, Decimal], Counter[str]]:
    db = sqlite3.connect(run_dir / "venue.db")
    try:
        positions = {
            i: Decimal(q) for i, q in db.execute("SELECT instrument_id, qty FROM positions")
        }
        submits = Counter(
            str(pickle.loads(p)["order"].client_order_id)
            for (p,) in db.execute("SELECT payload FROM inputs WHERE kind='submit'")
        )
    finally:
        db.close()
    return positions, submits


@pytest.mark.slow
def test_a_rebalance_killed_midway_resumes_without_losing_or_duplicating(
    tmp_path: Path,
) -> None:
    reference_home = tmp_path / "reference"
    reference = subprocess.Popen([*CLI, *ARGS], env=_env(reference_home), stdout=subprocess.DEVNULL)
    home = tmp_path / "home"
    # killed after sending 2 of the first rebalance's 3 buys, then at later moments:
    # after an order reached the venue, and before a venue event was recorded
    plan = [("after_send", 2), ("after_send", 3), ("before_record", 2), ("after_send", 1)]
    for k, (point, at) in enumerate(plan):
        args = [*CLI, *ARGS] if k == 0 else [*CLI, "resume", RUN, "--no-live"]
        proc = subprocess.run(
            args, env=_env(home, point, at), stdout=subprocess.DEVNULL, timeout=120
        )
        assert proc.returncode == -signal.SIGKILL, f"crash {k} ({point}) did not kill the node"
    final = subprocess.run(
        [*CLI, "resume", RUN, "--no-live"], env=_env(home), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-3000:]
    assert reference.wait(timeout=300) == 0

    store = Store(f"sqlite:///{home / 'sapphire.db'}")
    want = Store(f"sqlite:///{reference_home / 'sapphire.db'}")
    assert store.run(RUN).status.value == "FINISHED"
    orders = store.orders(RUN)
    assert not [o for o in orders if o.is_open]
    # no order was sent twice: every id reached the venue at most once, and no bar
    # holds two orders of one instrument and side
    venue_positions, submits = _venue_positions_and_submits(home / "paper" / RUN)
    assert submits and max(submits.values()) == 1
    decided = Counter((o.ts_init, str(o.instrument_id), o.side) for o in orders)
    assert max(decided.values()) == 1
    # the store's books are the venue's
    positions = {str(p.instrument_id): p.quantity for p in store.positions(RUN)}
    assert positions == venue_positions
    # nothing was lost: the crashed session ends holding what the uncrashed one holds
    # (the step a crash interrupted went out a bar later, at that bar's prices)
    expected = {str(p.instrument_id): p.quantity for p in want.positions(RUN)}
    assert set(expected) == {f"{s}@PAPER" for s in SYMBOLS}
    for iid, qty in expected.items():
        assert qty > 0 and abs(positions[iid] - qty) / qty < Decimal("0.02"), (iid, qty)
    assert len(orders) >= len(want.orders(RUN))
