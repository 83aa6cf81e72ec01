"""Bybit order-book maintenance speed: the 50 real `orderbook.500.XRPUSDT` messages of
tests/data (one snapshot of 500 levels a side, then 49 deltas) replayed through
`BybitOrderBook.apply` (checks, exact Decimal levels) many times over. The messages are
parsed JSON before the clock starts, as a WebSocket client hands them over. Prints one
JSON object: messages per second over the whole replay, and deltas per second alone
(the steady state of a live stream; the snapshot comes once per subscription). Beside
it, as a baseline measured in the same run, the simulated venue's float `L2Book` fed the
same parsed messages through `parse_bybit_orderbook_message` (no stale/crossed checks).

    python benchmarks/bybit_book_speed.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import zipfile
from pathlib import Path

from sapphire.domain import InstrumentId
from sapphire.sim.book import L2Book
from sapphire.sim.replay import parse_bybit_orderbook_message
from sapphire.venues.bybit_book import BookStatus, BybitOrderBook

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FILE = DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip"
XRP = InstrumentId("XRPUSDT", "BYBIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    with zipfile.ZipFile(FILE) as archive:
        (name,) = archive.namelist()
        messages = [json.loads(line) for line in archive.read(name).decode().splitlines()]
    snapshot, deltas = messages[0], messages[1:]

    total = snapshot_s = 0.0
    for _ in range(rounds):
        book = BybitOrderBook(XRP, messages[0]["topic"])
        start = time.perf_counter()
        book.apply(snapshot)
        middle = time.perf_counter()
        for msg in deltas:
            if book.apply(msg) is not BookStatus.APPLIED:
                raise SystemExit(f"replay went out of sync: {book.resync_reason}")
        total += time.perf_counter() - start
        snapshot_s += middle - start
    baseline = 0.0
    for _ in range(rounds):
        sim_book = L2Book(XRP)
        start = time.perf_counter()
        for msg in messages:
            sim_book.apply_update(parse_bybit_orderbook_message(msg, XRP))
        baseline += time.perf_counter() - start
    out = {
        "benchmark": "bybit_book_speed",
        "messages": len(messages) * rounds,
        "msgs_per_s": round(len(messages) * rounds / total),
        "deltas_per_s": round(len(deltas) * rounds / (total - snapshot_s)),
        "snapshot_ms": round(snapshot_s / rounds * 1e3, 3),
        "sim_l2book_float_msgs_per_s": round(len(messages) * rounds / baseline),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
