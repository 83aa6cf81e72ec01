"""The out-of-process paper venue: a `SimulatedVenue` with its own durable state.

`VenueBook` wraps J's `SimulatedVenue` (bar matching, fees, slippage, margin) and keeps,
in its own SQLite file (`venue.db` in the run directory), everything an exchange would
keep: every request it took (the input journal), every event it emitted (the outbound
stream), each order by client order id with its state, the fills, the balances and the
positions. The tables are written in one transaction per request or bar, after the
matching and before the answer leaves, so whatever the node has heard of is durable.

On start a `VenueBook` whose database already holds a journal replays the journal into a
fresh `SimulatedVenue` (deterministic: the same inputs give the same events, ids
included) and checks that it reproduces the stored stream; so the venue itself may also
be restarted (`sapphire paper resume` after the whole session stopped).

Idempotency: a submission of a client order id the venue already knows (an order, or a
tombstone written by `reconcile`) returns the existing order's state and events and
creates nothing. `reconcile(cid)` of an id the venue never received writes a tombstone
and emits `OrderRejected(reason="never reached the venue")`, so a late copy of that
submission can never create the order afterwards.

Time: with a speed (`100x`), a thread moves the venue one bar every `timeframe / speed`
seconds whether or not a node is connected: resting orders keep filling while the node
is down, as on an exchange. With `max` the venue is stepped by the node (lockstep: a
new bar when the node has consumed the stream), which makes a session reproducible.

`serve(run_dir)` (`python -m sapphire.paper RUN_DIR`) exposes a `VenueBook` with
`multiprocessing.connection` on 127.0.0.1 (an ephemeral port, a random authkey, both
written to `RUN_DIR/venue.json`, mode 0600). Messages are pickles of domain objects;
the authkey keeps other local users out. A server that gets no request for
`$SAPPHIRE_PAPER_VENUE_IDLE` seconds (default 3600) stops; its state stays on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    Order,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderStatus,
)
from sapphire.engine.sizing import Sizer, sizer_from_spec
from sapphire.paper.config import PaperConfig
from sapphire.risk import profile
from sapphire.sim.bar_path import FillModel
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy.base import Bars

__all__ = ["NEVER_REACHED", "Entry", "VenueBook", "make_sizer", "serve"]

NEVER_REACHED = "never reached the venue"
IDLE_ENV = "SAPPHIRE_PAPER_VENUE_IDLE"  # seconds without a request before the server stops
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS stream (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    client_order_id TEXT, event_id TEXT, bar INTEGER, payload BLOB);
CREATE TABLE IF NOT EXISTS orders (client_order_id TEXT PRIMARY KEY, status TEXT NOT NULL,
    quantity TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_px TEXT, side TEXT NOT NULL,
    type TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS fills (trade_id TEXT PRIMARY KEY, client_order_id TEXT NOT NULL,
    side TEXT NOT NULL, qty TEXT NOT NULL, px TEXT NOT NULL, fee TEXT NOT NULL,
    ts_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS balances (currency TEXT PRIMARY KEY, total TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (instrument_id TEXT PRIMARY KEY, qty TEXT NOT NULL);
"""


def make_sizer(spec: dict[str, Any] | None, config: PaperConfig) -> Sizer | None:
    """The venue-side sizer of a serialised sizing spec (`sapphire.engine.sizing`): the
    node's sizer, rebuilt with the run's risk profile and instrument."""
    if spec is None:
        return None
    risk = profile(config.risk_profile) if config.risk_profile else None
    return sizer_from_spec(spec, profile=risk, instrument=config.instrument())


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of the venue's outbound stream: an order event, a bar the venue has
    matched (`bar` = its index), or the end of the data (`kind="end"`)."""

    seq: int
    kind: str  # "event" | "funding" (before bar `bar` is matched) | "bar" | "end"
    bar: int | None = None
    event: OrderEvent | None = None


class VenueBook:
    """A `SimulatedVenue` plus its durable state (see the module docstring)."""

    def __init__(
        self,
        config: PaperConfig,
        db_path: str | Path,
        bars: Bars | None = None,
        *,
        name: str = "PAPER",
        crash_on_error: bool = False,
        feeds: Mapping[InstrumentId, Bars] | None = None,
    ) -> None:
        self.config = config
        self.crash_on_error = crash_on_error
        self.name = name
        if feeds is None:
            feeds = {config.instrument_id: bars if bars is not None else config.load_bars()}
        #: every instrument's bars (several for a rebalancing session), on the same times:
        #: a bar step matches bar i of each, in this order
        self.feeds = dict(feeds)
        self.bars = next(iter(self.feeds.values()))
        self.instruments = [config.instrument(iid) for iid in self.feeds]
        self.instrument = self.instruments[0]
        #: per-bar funding rates (None: no funding), applied at each bar's open
        self.funding = config.funding_rates(self.bars, Path(db_path).parent / "funding.npy")
        self.lock = threading.RLock()
        self.venue = SimulatedVenue(
            self.instruments,
            cash=str(config.cash),
            leverage=config.leverage,
            fill_model=FillModel(config.slippage_bps, config.slippage_ticks, config.tick_size),
            intrabar="worst" if config.intrabar == "worst" else "path",
            name=name,
        )
        self.venue.on_event = self._on_event
        self.orders: dict[str, Order] = {}
        self.order_events: dict[str, list[OrderEvent]] = {}
        self.tombstones: dict[str, OrderRejected] = {}
        self.stream: list[Entry] = []
        self.next_bar = 0
        self.done = False
        self.finished = False
        self._pending: list[OrderEvent] = []
        self._fills: list[OrderFilled] = []
        self._inputs = 0
        self.db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        stored = self.db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        if stored is None:
            self.db.execute(
                "INSERT INTO meta VALUES ('config', ?)", (json.dumps(config.to_mapping()),)
            )
        elif json.loads(stored[0]) != json.loads(json.dumps(config.to_mapping())):
            raise ValueError(f"{db_path} belongs to another paper configuration")
        self._restore()

    # ---------------------------------------------------------------- journal
    def _restore(self) -> None:
        rows = self.db.execute("SELECT kind, payload FROM inputs ORDER BY seq").fetchall()
        stored = self.db.execute("SELECT COUNT(*) FROM stream").fetchone()[0]
        for kind, payload in rows:
            self._apply(kind, pickle.loads(payload))
            self._pending.clear()
            self._fills.clear()
        self._inputs = len(rows)
        if len(self.stream) != stored:
            raise ValueError(
                f"the venue journal replays to {len(self.stream)} stream entries, "
                f"the database holds {stored}: the venue database is inconsistent"
            )

    def _apply(self, kind: str, args: dict[str, Any]) -> Any:
        """Carry out one journaled input (also used to replay the journal)."""
        v = self.venue
        if kind == "submit":
            order: Order = args["order"]
            cid = str(order.client_order_id)
            self.orders[cid] = order
            self.order_events[cid] = []
            v.submit_order(order, make_sizer(args.get("sizer"), self.config))
            return None
        if kind == "cancel":
            return v.cancel_order(args["client_order_id"])
        if kind == "amend":
            return v.amend_order(
                args["client_order_id"], quantity=args.get("quantity"),
                price=args.get("price"), trigger_price=args.get("trigger_price"),
            )  # fmt: skip
        if kind == "tombstone":
            cid = args["client_order_id"]
            event = OrderRejected(
                event_id=f"{self.name}-X-{cid}", ts_ns=args["ts_ns"],
                client_order_id=ClientOrderId(cid), reason=NEVER_REACHED,
            )  # fmt: skip
            self.tombstones[cid] = event
            self._add(Entry(len(self.stream) + 1, "event", event=event))
            self._pending.append(event)
            return None
        if kind == "bar":
            i = self.next_bar
            b = self.bars
            ts = int(b.time[i])
            if self.funding is not None and self.funding[i] != 0.0:
                # at the bar's open, before its orders are matched (as the backtester)
                v.apply_funding(self.instrument.id, float(self.funding[i]), float(b.open[i]), ts)
                self._add(Entry(len(self.stream) + 1, "funding", bar=i))
            for iid, f in self.feeds.items():
                v.process_bar(
                    iid, ts, float(f.open[i]), float(f.high[i]), float(f.low[i]),
                    float(f.close[i]), ts + f.timeframe_ns,
                )  # fmt: skip
            self.next_bar = i + 1
            self._add(Entry(len(self.stream) + 1, "bar", bar=i))
            if self.next_bar >= len(b):
                self.done = True
                self._add(Entry(len(self.stream) + 1, "end"))
            return None
        if kind == "finish":
            for iid, f in self.feeds.items():
                v.close_queued_at(iid, float(f.close[-1]), int(f.time[-1]))
            self.finished = True
            return None
        raise ValueError(f"unknown venue input {kind!r}")

    def _add(self, entry: Entry) -> None:
        self.stream.append(entry)

    def _on_event(self, event: OrderEvent) -> None:
        cid = str(event.client_order_id)
        order = self.orders[cid]
        if isinstance(event, OrderCanceled) and order.status is OrderStatus.SUBMITTED:
            # a market order is accepted at its fill: one cancelled while it waits for
            # the next open goes, as the node's copy did, through the cancel request
            order.apply(
                OrderCancelRequested(
                    event_id=f"{event.event_id}-rq", ts_ns=event.ts_ns,
                    client_order_id=event.client_order_id,
                )
            )  # fmt: skip
        order.apply(event)
        self.order_events[cid].append(event)
        self._add(Entry(len(self.stream) + 1, "event", event=event))
        self._pending.append(event)
        if isinstance(event, OrderFilled):
            self._fills.append(event)

    def _do(self, kind: str, args: dict[str, Any]) -> tuple[Any, list[OrderEvent]]:
        """Apply an input and commit it, its events and the new state in one transaction."""
        start = len(self.stream)
        payload = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)  # before it mutates
        try:
            result = self._apply(kind, args)
        except Exception as exc:
            if not self.crash_on_error:
                raise
            # crash-only: memory may be half-changed, the input is not journaled, so a
            # restart replays the journal without it
            print(f"venue: {kind} failed, stopping: {exc!r}", file=sys.stderr, flush=True)
            os._exit(70)
        events, self._pending = self._pending, []
        fills, self._fills = self._fills, []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._inputs += 1
            db.execute(
                "INSERT INTO inputs VALUES (?, ?, ?)",
                (self._inputs, kind, payload),
            )
            for entry in self.stream[start:]:
                ev = entry.event
                db.execute(
                    "INSERT INTO stream VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        entry.seq, entry.kind,
                        None if ev is None else str(ev.client_order_id),
                        None if ev is None else str(ev.event_id), entry.bar,
                        None if ev is None else pickle.dumps(ev),
                    ),
                )  # fmt: skip
            touched = {str(e.client_order_id) for e in events}
            for cid in touched:
                order = self.orders.get(cid)
                if order is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            cid, order.status.value, str(order.quantity), str(order.filled_qty),
                            None if order.avg_px is None else str(order.avg_px),
                            order.side.value, order.type.value, pickle.dumps(order),
                        ),
                    )  # fmt: skip
            for fill in fills:
                order = self.orders[str(fill.client_order_id)]
                db.execute(
                    "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(fill.trade_id), str(fill.client_order_id), order.side.value,
                        str(fill.last_qty), str(fill.last_px), str(fill.fee), fill.ts_ns,
                    ),
                )  # fmt: skip
            if fills or kind == "bar":  # a bar may pay funding
                for ccy, total in self.venue.account.balances.items():
                    db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (ccy, str(total)))
                for iid in self.venue.instruments:
                    db.execute(
                        "INSERT OR REPLACE INTO positions VALUES (?, ?)",
                        (str(iid), str(self.venue.position(iid))),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result, events

    # ---------------------------------------------------------------- requests
    def _state(self, cid: str) -> dict[str, Any]:
        if cid in self.tombstones:
            return {"known": True, "order": None, "events": [self.tombstones[cid]]}
        order = self.orders.get(cid)
        if order is None:
            return {"known": False, "order": None, "events": []}
        return {"known": True, "order": order, "events": list(self.order_events[cid])}

    def submit(self, order: Order, sizer: dict[str, Any] | None = None) -> dict[str, Any]:
        """Take an order; a known client order id returns its state and creates nothing."""
        cid = str(order.client_order_id)
        with self.lock:
            if cid in self.orders or cid in self.tombstones:
                return {**self._state(cid), "duplicate": True}
            self._do("submit", {"order": order, "sizer": sizer})
            return {**self._state(cid), "duplicate": False}

    def cancel(self, client_order_id: str) -> dict[str, Any]:
        with self.lock:
            ok, _ = self._do("cancel", {"client_order_id": str(client_order_id)})
            return {**self._state(str(client_order_id)), "ok": bool(ok)}

    def amend(self, client_order_id: str, **changes: Any) -> dict[str, Any]:
        with self.lock:
            ok, _ = self._do("amend", {"client_order_id": str(client_order_id), **changes})
            return {**self._state(str(client_order_id)), "ok": bool(ok)}

    def query(self, client_order_id: str) -> dict[str, Any]:
        with self.lock:
            return self._state(str(client_order_id))

    def reconcile(self, client_order_id: str, ts_ns: int = 0) -> dict[str, Any]:
        """The venue's truth about an order the node thinks may be open; an id the venue
        never received is rejected for good (a tombstone)."""
        cid = str(client_order_id)
        with self.lock:
            if cid not in self.orders and cid not in self.tombstones:
                self._do("tombstone", {"client_order_id": cid, "ts_ns": int(ts_ns)})
            return self._state(cid)

    def step(self) -> bool:
        """Match the next bar; False when the data is exhausted."""
        with self.lock:
            if self.done:
                return False
            self._do("bar", {})
            return True

    def finish(self) -> list[OrderEvent]:
        """End of the session: fill the market orders still queued at the last close."""
        with self.lock:
            _, events = self._do("finish", {})
            return events

    def poll(self, after: int, advance: bool = False, limit: int = 2000) -> dict[str, Any]:
        """Stream entries after sequence `after`; `advance` (lockstep) matches one more
        bar first when the caller has seen everything."""
        with self.lock:
            if advance and after >= len(self.stream) and not self.done:
                self.step()
            return {
                "entries": self.stream[after : after + limit],
                "head": len(self.stream),
                "done": self.done,
            }

    def snapshot(self) -> dict[str, Any]:
        """Balances, positions and every order's state (what the crash test compares)."""
        with self.lock:
            return {
                "balances": dict(self.venue.account.balances),
                "positions": {str(i): self.venue.position(i) for i in self.venue.instruments},
                "orders": {
                    cid: (o.status.value, o.filled_qty, o.avg_px) for cid, o in self.orders.items()
                },
                "tombstones": sorted(self.tombstones),
                "head": len(self.stream),
                "next_bar": self.next_bar,
                "bars": len(self.bars),
                "done": self.done,
                "last": self.bars.close[self.next_bar - 1] if self.next_bar else None,
                "lasts": {
                    str(iid): float(f.close[self.next_bar - 1]) if self.next_bar else None
                    for iid, f in self.feeds.items()
                },
            }

    def close(self) -> None:
        self.db.close()


# -------------------------------------------------------------------- the server
_METHODS = ("submit", "cancel", "amend", "query", "reconcile", "poll", "snapshot", "finish")


class _Server:
    def __init__(self, book: VenueBook, listener: Listener) -> None:
        self.book = book
        self.listener = listener
        self.stop = threading.Event()
        self.interval: float | None = None
        self.generation = 0
        self.last_request = time.monotonic()

    def set_speed(self, speed: float | None) -> None:
        """Pace the venue at `speed` x real time, or stop pacing (None: lockstep)."""
        with self.book.lock:
            self.interval = (
                None if speed is None else self.book.bars.timeframe_ns / 1e9 / float(speed)
            )
            self.generation += 1
            if self.interval is not None:
                threading.Thread(target=self.pace, args=(self.generation,), daemon=True).start()

    def pace(self, generation: int) -> None:
        nxt = time.monotonic()
        while not self.stop.is_set() and generation == self.generation:
            interval = self.interval
            if interval is None:
                return
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            if self.stop.is_set() or generation != self.generation:
                return
            if not self.book.step():
                return

    def handle(self, conn: Connection) -> None:
        with conn:
            while not self.stop.is_set():
                try:
                    method, kwargs = conn.recv()
                except (EOFError, OSError):
                    return
                self.last_request = time.monotonic()
                if method == "shutdown":
                    conn.send(("ok", None))
                    self.shutdown()
                    return
                if method == "set_speed":
                    try:
                        from sapphire.paper.config import parse_speed

                        self.set_speed(parse_speed(kwargs["speed"]))
                        conn.send(("ok", None))
                    except (ValueError, KeyError) as exc:
                        conn.send(("error", str(exc)))
                    continue
                try:
                    if method not in _METHODS:
                        raise ValueError(f"unknown venue request {method!r}")
                    result = getattr(self.book, method)(**kwargs)
                    reply: tuple[str, Any] = ("ok", result)
                except (ValueError, KeyError) as exc:
                    reply = ("error", str(exc))
                try:
                    conn.send(reply)
                except OSError:
                    return  # the node died before reading the answer: the state stays

    def shutdown(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):  # wake the accept loop
            Client(self.listener.address, authkey=self._authkey).close()

    def watch_idle(self, idle_s: float) -> None:
        """Stop after `idle_s` seconds without a request (the state is on disk: a
        resume starts the venue again)."""
        while not self.stop.wait(min(idle_s, 5.0)):
            if time.monotonic() - self.last_request > idle_s:
                self.shutdown()
                return

    _authkey = b""


def serve(run_dir: str | Path) -> None:
    """Run the venue of `run_dir` until asked to shut down (see the module docstring)."""
    run = Path(run_dir)
    spec = json.loads((run / "venue_config.json").read_text())
    config = PaperConfig.from_mapping(spec["config"])
    feeds = config.load_feeds(run / "bars.npz")
    book = VenueBook(config, run / "venue.db", name=spec["name"], crash_on_error=True, feeds=feeds)
    authkey = os.urandom(32)
    listener = Listener(("127.0.0.1", 0), authkey=authkey)
    server = _Server(book, listener)
    server._authkey = authkey
    host, port = listener.address
    info = {"host": host, "port": port, "authkey": authkey.hex(), "pid": os.getpid()}
    tmp = run / "venue.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, run / "venue.json")
    server.set_speed(config.speed_factor)
    idle = float(os.environ.get(IDLE_ENV, "3600"))
    threading.Thread(target=server.watch_idle, args=(idle,), daemon=True).start()
    try:
        while not server.stop.is_set():
            try:
                conn = listener.accept()
            except (OSError, AuthenticationError):
                continue
            if server.stop.is_set():
                conn.close()
                break
            threading.Thread(target=server.handle, args=(conn,), daemon=True).start()
    finally:
        listener.close()
        with book.lock:
            book.close()
        with contextlib.suppress(FileNotFoundError):
            (run / "venue.json").unlink()
