"""What paper and live sessions share: the node's write-ahead into the store and its
rebuild from the store after a crash (`SessionJournal`).

Write-ahead: `attach` subscribes the journal to the node's bus, where the node publishes
every order event before it acts on it, so `OrderSubmitted` is committed before the
order is handed to the venue and a venue event (ack, fill, cancel) before the strategy
is called back. A bracket entry's spec goes to the run directory's `brackets.jsonl`
(fsynced) before the entry's first event is committed. Risk events and trading-state
changes are committed the same way. `save_state` writes the positions and balances.

Resume (`restore`, before the venue is reconciled): the run's orders are rebuilt from
their stored events, the client-order-id generator continues after the stored ids (a
new order never reuses one), the node's event-id counter moves past the stored ones,
positions and balances are the stored fills replayed into the node's fresh portfolio,
and the trading state is the recorded one (a halt sticks), the risk limits' peaks
rebuilt from the stored equity snapshots; a stop at zero equity sticks too.
`restore_adapter` then gives a vectorised strategy's adapter its position, pending
entry and bracket legs back.

Events (`sapphire.engine.stream`): with a `StreamPublisher`, the journal also publishes
what it commits on the node's channel `node.<run_id>` (orders, fills, positions and
balances, risk events and trading-state changes) and, from the session, the equity, the
session's status and its bars (`candles.<instrument>.<timeframe>`). The stream is the
one `$SAPPHIRE_REDIS_URL` names, else the local files under `$SAPPHIRE_HOME/events/`
(`open_node_stream`). Publishing only queues the event: the node never waits on it.
While a session's loop runs, its process id is in the run directory's `node.pid`
(`write_pid`), which is how the service finds the nodes that are running.

Logs: each committed order event is a log line of `sapphire.node` (INFO, a denial with
its reason; a venue's rejection WARNING), each fill one more, each risk event and
trading-state change a WARNING. The node binds an order's correlation id (its signal's: the parent
order's id, else its own) while it publishes the order's events, so these lines and the
published events (`correlation_id`, which a notification carries on) share it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sapphire.correlation import correlation_id
from sapphire.domain import (
    AccountBalance,
    AccountId,
    AccountState,
    Bar,
    ClientOrderIdGenerator,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    RiskEvent,
    StrategyId,
    TimeInForce,
    TradingState,
    TradingStateChanged,
)
from sapphire.engine.adapter import VectorAdapter
from sapphire.engine.builder import STRATEGY_ID
from sapphire.engine.stream import (
    EventStream,
    LocalStream,
    StreamPublisher,
    candles_channel,
    node_channel,
    open_stream,
    timeframe_label,
)

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode
    from sapphire.engine.risk_monitor import EquityGuard, RiskMonitor
    from sapphire.portfolio.portfolio import EquitySnapshot
    from sapphire.store import Store

log = logging.getLogger("sapphire.node")

__all__ = [
    "BRACKETS", "PID_FILE", "REDIS_ENV", "SessionJournal", "clear_pid", "open_node_stream",
    "read_pid", "session_dir", "write_pid",
]  # fmt: skip

#: the run directory's file of bracket specs (JSON lines, appended before the entry's
#: first event is committed), read back on resume
BRACKETS = "brackets.jsonl"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
#: the environment variable naming the Redis of the event stream (else local files)
REDIS_ENV = "SAPPHIRE_REDIS_URL"
#: the run directory's file holding the process id of the node while its loop runs
PID_FILE = "node.pid"
#: seconds between two equity events of a session (a fill or a snapshot publishes too)
EQUITY_EVERY_S = 1.0


def session_dir(mode: str, run_id: str, home: Path | None = None) -> Path:
    """A session's run directory, `<home>/<mode>/<run_id>` (home: `$SAPPHIRE_HOME`); a run
    id other than letters, digits and `. _ -` is refused, naming it."""
    import re

    from sapphire.config import home_subdir

    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
        raise ValueError(f"run id {run_id!r} is invalid: letters, digits, . _ - only")
    return (home / mode if home is not None else home_subdir(mode)) / run_id


def open_node_stream(run_dir: Path) -> EventStream:
    """The event stream of a node whose run directory is `run_dir` (`<home>/<mode>/<id>`):
    Redis when `$SAPPHIRE_REDIS_URL` is set, else `<home>/events/`."""
    home = Path(run_dir).parent.parent
    url = os.environ.get(REDIS_ENV)
    if url:
        return open_stream(url, home)
    return LocalStream(home / "events", poll_s=0.1)  # the control channel's pace


def write_pid(run_dir: Path) -> None:
    """Record this process as the one running the node of `run_dir`."""
    path = Path(run_dir) / PID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{PID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "ts_ns": time.time_ns()}))
    os.replace(tmp, path)


def read_pid(run_dir: Path) -> int | None:
    """The process id in `run_dir`'s `node.pid` (None: none)."""
    try:
        value = json.loads((Path(run_dir) / PID_FILE).read_text())
        return int(value["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_pid(run_dir: Path) -> None:
    """Remove `node.pid` if it is this process's."""
    if read_pid(run_dir) == os.getpid():
        (Path(run_dir) / PID_FILE).unlink(missing_ok=True)


class SessionJournal:
    """The store side of one paper or live run of `node` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        run_dir: Path,
        node: TradingNode,
        account: AccountId,
        strategy_id: str = STRATEGY_ID,
        events: StreamPublisher | None = None,
    ) -> None:
        self.store = store
        #: publishes what is committed on the node's channel (None: nothing published)
        self.events = events
        self.channel = node_channel(run_id)
        self._candles: dict[tuple[str, int], str] = {}
        self._equity_at = 0.0
        #: the run's one trading strategy (its orders' client ids carry it)
        self.strategy_id = strategy_id
        self.run_id = run_id
        self.run_dir = run_dir
        self.node = node
        self.account = account
        self._bracketed: set[str] = set()  # entries whose bracket spec is on disk
        self._events_n = 0

    def attach(self) -> None:
        """Commit the node's order and risk events as it publishes them."""
        bus = self.node.bus
        bus.subscribe(RiskEvent, self.record_risk)
        bus.subscribe(TradingStateChanged, self.record_risk)
        bus.subscribe(OrderEvent, self.persist)

    # ---------------------------------------------------------------- write-ahead
    def persist(self, event: OrderEvent) -> None:
        """Commit `event` (already applied to its order) before the node acts on it."""
        cid = str(event.client_order_id)
        order = self.node.orders.get(cid)
        if order is None:
            return
        if cid not in self._bracketed:
            spec = self.node.bracket_spec(cid)
            if spec is not None:
                # write-ahead: an entry in the store always has its bracket on disk
                self._bracketed.add(cid)
                line = json.dumps({"client_order_id": cid, **spec}, sort_keys=True)
                with open(self.run_dir / BRACKETS, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        self.store.record_order_event(order, event, run_id=self.run_id)
        self._log_order(order, event)
        if self.events is not None:
            self.events.publish(self.channel, self._order_payload(order, event))
            if type(event) is OrderFilled:
                self.events.publish(self.channel, self._fill_payload(order, event))

    def _log_order(self, order: Any, event: OrderEvent) -> None:
        # a venue's rejection is a warning; a risk denial is routine (counted in the run's
        # summary and metrics), logged with its reason like any other order event
        level = logging.WARNING if isinstance(event, OrderRejected) else logging.INFO
        if not log.isEnabledFor(level):
            return
        cid = str(order.client_order_id)
        name = type(event).__name__
        fields: dict[str, Any] = {
            "run_id": self.run_id, "client_order_id": cid, "order_event": name,
            "status": order.status.value, "side": order.side.value,
            "order_type": order.type.value, "quantity": str(order.quantity),
            "instrument_id": str(order.instrument_id),
        }  # fmt: skip
        if order.price is not None:
            fields["price"] = str(order.price)
        if isinstance(event, OrderFilled):
            fields |= {"last_qty": str(event.last_qty), "last_px": str(event.last_px),
                       "fee": str(event.fee), "trade_id": str(event.trade_id)}  # fmt: skip
            log.info("fill %s %s %s @ %s", cid, order.side.value, event.last_qty,
                     event.last_px, extra=fields)  # fmt: skip
            return
        reason = getattr(event, "reason", None)
        if reason is not None:
            fields["reason"] = reason
        log.log(level, "order %s %s%s", cid, name, f": {reason}" if reason else "", extra=fields)

    def _order_payload(self, order: Any, event: OrderEvent) -> dict[str, Any]:
        # the order's values now (Decimals and enums are immutable: encoded later)
        return {
            "type": "order", "run_id": self.run_id, "event": type(event).__name__,
            "event_id": event.event_id, "ts_ns": event.ts_ns,
            "client_order_id": str(order.client_order_id),
            "strategy_id": str(order.strategy_id), "instrument_id": str(order.instrument_id),
            "side": order.side.value, "order_type": order.type.value,
            "status": order.status.value, "quantity": order.quantity, "price": order.price,
            "trigger_price": order.trigger_price, "filled_qty": order.filled_qty,
            "avg_px": order.avg_px, "reduce_only": order.reduce_only,
            "reason": getattr(event, "reason", None), "correlation_id": correlation_id(),
        }  # fmt: skip

    def _fill_payload(self, order: Any, fill: OrderFilled) -> dict[str, Any]:
        return {
            "type": "fill", "run_id": self.run_id, "event_id": fill.event_id,
            "ts_ns": fill.ts_ns, "client_order_id": str(fill.client_order_id),
            "trade_id": str(fill.trade_id), "strategy_id": str(order.strategy_id),
            "instrument_id": str(order.instrument_id), "side": order.side.value,
            "last_qty": fill.last_qty, "last_px": fill.last_px, "fee": fill.fee,
            "fee_currency": fill.fee_currency, "liquidity": fill.liquidity.value,
            "correlation_id": correlation_id(),
        }  # fmt: skip

    def record_risk(self, event: RiskEvent | TradingStateChanged) -> None:
        """Commit a risk event or trading-state change before the node acts on it."""
        self.store.record_risk_event(event, run_id=self.run_id)
        if isinstance(event, RiskEvent):
            what = f"risk {event.kind}"
        else:
            what = f"state {event.state.value}"
        log.warning(
            "%s: %s", what, event.reason,
            extra={"run_id": self.run_id, "risk_event": what, "reason": event.reason},
        )  # fmt: skip
        if self.events is None:
            return
        common = {
            "run_id": self.run_id,
            "event_id": event.event_id,
            "ts_ns": event.ts_ns,
            "reason": event.reason,
            "strategy_id": None if event.strategy_id is None else str(event.strategy_id),
            "correlation_id": correlation_id(),
        }
        if isinstance(event, RiskEvent):
            payload = {"type": "risk", "kind": event.kind, "detail": dict(event.detail), **common}
        else:
            payload = {
                "type": "trading_state", "state": event.state.value,
                "previous": None if event.previous is None else event.previous.value, **common,
            }  # fmt: skip
        self.events.publish(self.channel, payload)

    # ---------------------------------------------------------------- events only
    def publish_bar(self, bar: Bar, timeframe_ns: int) -> None:
        """A bar the node took, on `candles.<instrument>.<timeframe>`."""
        if self.events is None:
            return
        key = (str(bar.instrument_id), int(timeframe_ns))
        channel = self._candles.get(key)
        if channel is None:
            channel = self._candles[key] = candles_channel(key[0], timeframe_label(key[1]))
        self.events.publish(channel, {
            "type": "bar", "run_id": self.run_id, "instrument_id": key[0],
            "timeframe": channel.rsplit(".", 1)[1],
            "ts_ns": bar.ts_ns, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume,
        })  # fmt: skip

    def publish_equity(
        self, snapshot: EquitySnapshot | None = None, *, force: bool = False
    ) -> None:
        """The equity: `snapshot` (one the session stores), else the node's equity at its
        last prices, at most every `EQUITY_EVERY_S` seconds unless `force`."""
        if self.events is None:
            return
        now = time.monotonic()
        if snapshot is None and not force and now - self._equity_at < EQUITY_EVERY_S:
            return
        self._equity_at = now
        if snapshot is not None:
            payload: dict[str, Any] = {
                "ts_ns": snapshot.ts_ns, "currency": snapshot.currency,
                "equity": snapshot.equity, "balance": snapshot.balance,
                "unrealized_pnl": snapshot.unrealized_pnl,
                "gross_exposure": snapshot.gross_exposure,
            }  # fmt: skip
        else:
            node = self.node
            marks = node._marks()
            account = node.portfolio.account
            if any(p.instrument_id not in marks for p in node.portfolio.open_positions()):
                return  # a position without a price cannot be valued yet
            payload = {
                "ts_ns": node.clock.now_ns(), "currency": account.base_currency,
                "equity": node.portfolio.equity(marks),
                "balance": account.balance(account.base_currency),
            }  # fmt: skip
        self.events.publish(self.channel, {"type": "equity", "run_id": self.run_id, **payload})

    def publish_status(self, status: dict[str, Any]) -> None:
        """The session's status (running, stopped, finished...) and its figures."""
        if self.events is not None:
            self.events.publish(self.channel, {
                "type": "status", "run_id": self.run_id, "ts_ns": time.time_ns(),
                "pid": os.getpid(), "stream": self.events.stats(), **status,
            })  # fmt: skip

    def save_state(self, ts_ns: int) -> None:
        """The node's positions and balances, in one transaction."""
        account = self.node.portfolio.account
        self._events_n += 1
        state = AccountState(
            ts_ns=ts_ns, event_id=f"{self.run_id}-acct-{time.time_ns()}-{self._events_n}",
            account_id=self.account,
            balances=tuple(AccountBalance(c, t) for c, t in sorted(account.balances.items())),
            base_currency=account.base_currency,
        )  # fmt: skip
        positions = self.node.portfolio.positions()
        with self.store.atomic():
            for pos in positions:
                self.store.save_position(pos, run_id=self.run_id)
            self.store.save_balances(state, run_id=self.run_id)
        if self.events is not None:
            for pos in positions:
                self.events.publish(self.channel, {
                    "type": "position", "run_id": self.run_id, "ts_ns": ts_ns,
                    "instrument_id": str(pos.instrument_id),
                    "strategy_id": None if pos.strategy_id is None else str(pos.strategy_id),
                    "quantity": pos.quantity, "avg_px": pos.avg_px,
                    "realized_pnl": pos.realized_pnl, "fees": pos.fees,
                })  # fmt: skip
            self.events.publish(self.channel, {
                "type": "balance", "run_id": self.run_id, "ts_ns": ts_ns,
                "account_id": str(self.account),
                "balances": {b.currency: b.total for b in state.balances},
            })  # fmt: skip

    def load_brackets(self) -> dict[str, dict[str, Any]]:
        """The bracket specs written by `persist` (a torn last line is ignored: its
        order never reached the store)."""
        path = self.run_dir / BRACKETS
        specs: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                cid = row.pop("client_order_id")
                specs[cid] = row
        known = set(self.store.client_order_ids(self.run_id, self.strategy_id))
        self._bracketed.update(specs)
        return {cid: spec for cid, spec in specs.items() if cid in known}

    # ---------------------------------------------------------------- resume
    def restore(
        self,
        monitor: RiskMonitor | None,
        seen: set[str] | None = None,
        guard: EquityGuard | None = None,
    ) -> list[str]:
        """Rebuild the node from the store, before `node.start()` (see the module
        docstring); the stored event ids are added to `seen`. A stop at zero equity that
        `guard` recorded stays: the node keeps denying every order but the stop's own
        closing ones. Returns the FILLED entries whose exit legs are missing
        (`node.place_bracket` them once a price is known)."""
        node, store = self.node, self.store
        orders = store.orders(self.run_id)
        max_event = 0
        prefix = f"{self.run_id}-"
        for order in orders:
            for ev in order.events:
                if seen is not None:
                    seen.add(ev.event_id)
                tail = ev.event_id[len(prefix) :] if ev.event_id.startswith(prefix) else ""
                if tail.isdigit():
                    max_event = max(max_event, int(tail))
        sid = self.strategy_id
        gen = ClientOrderIdGenerator(sid, self.run_id)
        seqs = [gen.seq_of(c) for c in store.client_order_ids(self.run_id, sid)]
        missing = node.restore(
            orders, max_event,
            id_seqs={sid: max((s for s in seqs if s is not None), default=0)},
            brackets=self.load_brackets(),
        )  # fmt: skip
        # positions and balances: replay the stored fills
        for fill in store.fills(self.run_id):
            node.portfolio.apply_fill(
                fill.strategy_id, fill.instrument_id, fill.side, fill.last_qty, fill.last_px,
                fill.fee, fill.ts_ns, fee_currency=fill.fee_currency,
            )  # fmt: skip
        # the limits' peaks and days from the stored snapshots; the state as recorded
        recorded = store.trading_state(self.run_id)
        if monitor is not None:
            limits = monitor.limits
            for rec in store.equity_snapshots(self.run_id):
                limits.evaluate(rec.ts_ns, rec.equity)
            if recorded is TradingState.HALTED and limits.state is not TradingState.HALTED:
                # a halt sticks (until reset): already recorded, so its events are not again
                limits.halt("halted before the restart", time.time_ns())
            own = limits.state_for(StrategyId(sid))
            node.trading_state = max((recorded, own), key=_SEVERITY.__getitem__)
        else:
            node.trading_state = recorded
        if guard is not None:
            self.restore_stop(guard)
        return missing

    def restore_stop(self, guard: EquityGuard) -> None:
        """The equity guard's stop at zero equity, as its `RiskEvent` (kind
        `ZERO_EQUITY_TAG`) was committed: the node stays stopped and the guard keeps
        the bar it stopped at (the run's summary says so)."""
        from sapphire.engine.node import ZERO_EQUITY_TAG
        from sapphire.engine.risk_monitor import ZERO_EQUITY_DENIAL

        for event in self.store.risk_events(self.run_id):
            if isinstance(event, RiskEvent) and event.kind == ZERO_EQUITY_TAG:
                bar = event.detail.get("bar")
                guard.stopped_ns = event.ts_ns
                guard.stopped_bar = None if bar is None else int(str(bar))
                self.node.stopped = ZERO_EQUITY_DENIAL
                return

    def restore_adapter(self, adapter: Any) -> None:
        """A vectorised strategy's adapter takes its position, pending entry and bracket
        legs from the restored node (an event strategy keeps its own state: no-op)."""
        if not isinstance(adapter, VectorAdapter):
            return
        node = self.node
        adapter.pos = node.portfolio.net_quantity(
            adapter.instrument_id, StrategyId(adapter.strategy_id)
        )
        adapter.pending = None
        adapter.children = []
        for order in node.open_orders():
            if order.parent_order_id is not None:
                adapter.children.append(str(order.client_order_id))
            elif order.time_in_force is TimeInForce.GTD:
                adapter.pending = str(order.client_order_id)
