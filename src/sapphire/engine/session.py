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
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sapphire.domain import (
    AccountBalance,
    AccountId,
    AccountState,
    ClientOrderIdGenerator,
    OrderEvent,
    RiskEvent,
    StrategyId,
    TimeInForce,
    TradingState,
    TradingStateChanged,
)
from sapphire.engine.adapter import VectorAdapter
from sapphire.engine.builder import STRATEGY_ID

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode
    from sapphire.engine.risk_monitor import EquityGuard, RiskMonitor
    from sapphire.store import Store

__all__ = ["BRACKETS", "SessionJournal", "session_dir"]

#: the run directory's file of bracket specs (JSON lines, appended before the entry's
#: first event is committed), read back on resume
BRACKETS = "brackets.jsonl"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def session_dir(mode: str, run_id: str, home: Path | None = None) -> Path:
    """A session's run directory, `<home>/<mode>/<run_id>` (home: `$SAPPHIRE_HOME`); a run
    id other than letters, digits and `. _ -` is refused, naming it."""
    import re

    from sapphire.config import home_subdir

    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
        raise ValueError(f"run id {run_id!r} is invalid: letters, digits, . _ - only")
    return (home / mode if home is not None else home_subdir(mode)) / run_id


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
    ) -> None:
        self.store = store
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

    def record_risk(self, event: RiskEvent | TradingStateChanged) -> None:
        """Commit a risk event or trading-state change before the node acts on it."""
        self.store.record_risk_event(event, run_id=self.run_id)

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
        with self.store.atomic():
            for pos in self.node.portfolio.positions():
                self.store.save_position(pos, run_id=self.run_id)
            self.store.save_balances(state, run_id=self.run_id)

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
