"""A paper session: the trading node, the store and the out-of-process venue.

The write-ahead and the rebuild from the store are `sapphire.engine.session.
SessionJournal`'s, shared with live sessions (`sapphire.live`). Write-ahead: every
order event goes to the store (`Store.record_order_event`, one transaction) from the
node's message bus, where the node publishes it before it acts:
`OrderSubmitted` is published, hence committed, before the order is handed to the venue;
venue events (acks, fills, cancels) are committed before the strategy is called back.
After each fill the strategy's position and the account's balances are saved too.

Resume (`PaperSession.resume`): the run's orders are rebuilt from their stored events,
positions and balances by replaying the stored fills into a fresh portfolio, the id
generators restored from `Store.client_order_ids` (a new order never reuses an id), and
the node's event-id counter moved past the stored ones. Then every order the store has
as open is reconciled with the venue (`reconcile`): the venue's events for it that the
store lacks (acks, fills, cancels that happened while the node was down or whose
answer it never recorded) are applied and recorded like live ones; an order the venue
never received is rejected (`never reached the venue`) and tombstoned at the venue so
that it can never appear later. A cancel the node recorded but the venue never got is
sent again. Only then does the node take the venue's stream again, from its current
head: bars that went by while the node was down are not replayed to the strategy (as
with a live exchange); their fills are not lost, they arrive by reconciliation.

Events and control (`sapphire.engine.stream`, `sapphire.engine.control`): the session
publishes what it commits, its bars, equity and status on the event stream (never
waiting on it), and its loop applies the commands of its control channel between two
steps: stop (the loop ends, the venue is shut down, the run stays resumable), pause and
resume entries, the kill switch, cancel and amend an open order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sapphire.domain import (
    AccountId,
    Bar,
    InstrumentId,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    StrategyId,
    TradingState,
)
from sapphire.domain.instrument import to_decimal
from sapphire.encoding import to_json
from sapphire.engine.builder import build_node
from sapphire.engine.control import NodeControl
from sapphire.engine.rebalance import Rebalancer
from sapphire.engine.risk_monitor import refusal_counts, zero_equity_warning
from sapphire.engine.session import (
    SessionJournal,
    clear_pid,
    open_node_stream,
    session_dir,
    write_pid,
)
from sapphire.engine.strategy import EventStrategy
from sapphire.engine.stream import StreamPublisher, node_channel
from sapphire.paper.client import RemoteVenue, VenueClient, ensure_venue
from sapphire.paper.config import REBALANCE, PaperConfig, parse_speed
from sapphire.portfolio import Account, Portfolio
from sapphire.store import Store
from sapphire.store.records import RunMode
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

__all__ = ["IN_SAMPLE", "PaperSession", "SessionView", "paper_dir", "read_in_sample"]

STRATEGY_ID = "s"
ACCOUNT = AccountId("paper")
FUNDING = "funding.npy"  # the run's per-bar funding rates (node and venue read it)
#: a rebalancing session's `Rebalancer.state()`, written ahead of its orders
REBALANCER_STATE = "rebalancer.json"
#: the bars a fixed model scores inside its training window and the caveat about them
#: (an `ml` strategy's `in_sample` and `caveats`), written at the start for `runs show`
IN_SAMPLE = "in_sample.json"
#: seconds between two status events of a running session
STATUS_EVERY_S = 5.0


def paper_dir(run_id: str, home: Path | None = None) -> Path:
    """The run's directory: the venue's database, address and log."""
    return session_dir("paper", run_id, home)


@dataclass
class SessionView:
    """What the live view shows (and `--json` prints at the end)."""

    run_id: str
    bar: int
    bars: int
    last: float | None
    position: Decimal
    avg_px: Decimal | None
    balance: Decimal
    equity: Decimal
    realized: Decimal
    open_orders: list[tuple[str, str, str, str, str]]
    fills: int
    status: str
    #: refused orders (denied by the risk engine or rejected by the venue) by main reason
    denied: dict[str, int] = field(default_factory=dict)
    #: why trading stopped for good (the equity reached zero), None while it trades
    stopped: str | None = None
    #: the strategy's caveats (a fixed model scoring bars of its own training window)
    warnings: list[str] = field(default_factory=list)
    #: those bars: model, bars, of, first, last, train_start, train_end (None: none)
    in_sample: dict[str, Any] | None = None
    #: the position in every instrument, when the session trades several (`position`,
    #: `avg_px`, `last` and `realized` are the first instrument's)
    positions: dict[str, str] = field(default_factory=dict)


class PaperSession:
    """One paper run: `PaperSession.start(config)` or `PaperSession.resume(run_id)`,
    then `run()`."""

    def __init__(
        self,
        run_id: str,
        config: PaperConfig,
        store: Store,
        run_dir: Path,
        *,
        resumed: bool,
        bars: Bars | None = None,
        signals: SignalArrays | None = None,
        strategy: Strategy | EventStrategy | None = None,
        feeds: dict[InstrumentId, Bars] | None = None,
    ) -> None:
        self.run_id = run_id
        self.config = config
        self.store = store
        self.run_dir = run_dir
        self.resumed = resumed
        if feeds is None:
            feeds = (
                {config.instrument_id: bars}
                if bars is not None
                else config.load_feeds(run_dir / "bars.npz")
            )
        #: every instrument's bars, on the same times (several: a rebalancing session)
        self.feeds = feeds
        self.bars = next(iter(feeds.values()))
        self.instruments = [config.instrument(iid) for iid in feeds]
        self.instrument = self.instruments[0]
        self.iid = self.instrument.id
        #: per-bar funding rates (None: none); the venue pays them, the node books them
        self.funding = config.funding_rates(self.bars, run_dir / FUNDING)
        ensure_venue(run_dir, config.to_mapping(), f"PAPER-{run_id}")
        self.client = VenueClient(run_dir)
        cash = to_decimal(config.cash, "cash")
        self.seen: set[str] = set()
        self.venue = RemoteVenue(self.client, self.instruments, cash, self.seen, self._after)
        self._cash = cash
        from sapphire.risk import profile
        from sapphire.strategy.registry import get_strategy

        risk_profile = profile(config.risk_profile) if config.risk_profile else None
        if strategy is None and config.strategy == REBALANCE:
            strategy = config.rebalancer(STRATEGY_ID)
        elif strategy is None:
            strategy = get_strategy(config.strategy)(**config.params)
        #: the instance that computed the signals (an `ml` strategy's scores and caveats)
        self.strategy = strategy
        setup = build_node(
            config, mode="paper", venue=self.venue, instrument_id=self.iid, strategy=strategy,
            portfolio=self._new_portfolio(), run_id=run_id, bars=self.bars, signals=signals,
            risk_profile=risk_profile, instrument=self.instrument,
        )  # fmt: skip
        self.node = setup.node
        self.node.correlate = True  # log lines about an order carry its signal's id
        #: the run's trading strategy: a vectorised strategy's `VectorAdapter`, or the
        #: `Rebalancer` (it writes its state ahead to `REBALANCER_STATE`, to resume from)
        self.adapter: EventStrategy = setup.trader
        if isinstance(self.adapter, Rebalancer):
            self.adapter.on_state = self._save_rebalancer
        #: the risk profile's limits and kill switch (None without a profile), fed each bar
        self.monitor = setup.monitor
        #: stops trading for good when the equity at a bar's close reaches zero
        self.guard = setup.guard
        #: the event stream (what the node does, out; its control channel, in)
        self.stream = open_node_stream(run_dir)
        self.events = StreamPublisher(self.stream)
        #: the write-ahead into the store and the rebuild from it (shared with live)
        self.journal = SessionJournal(
            store, run_id, run_dir, self.node, ACCOUNT, events=self.events
        )
        self.journal.attach()
        #: the commands of the control channel, applied by `run`'s loop
        self.control = NodeControl(
            self.node, run_id, run_dir, trader=self.adapter, monitor=self.monitor,
            stream=self.stream, events=self.events, on_stop=self._stop_asked,
        )  # fmt: skip
        self._stopped_by_control = False
        self._status_at = 0.0
        self._risk_events = 0
        #: drift checks of an `ml` strategy (sapphire.ml.live), None for other strategies
        self.drift: Any = None
        if getattr(strategy, "name", None) == "ml":
            from sapphire.ml.live import DriftWatch

            self.drift = DriftWatch(
                strategy, self.bars, run_dir, every=config.drift_every,
                window=config.drift_window, retrain=config.retrain_on_drift,
                publish=self._on_drift,
            )  # fmt: skip
        self.cursor = 0
        self.bar = -1
        self.status = "running"
        self.speed = config.speed

    def _new_portfolio(self) -> Portfolio:
        ccy = self.instrument.settlement
        lev = self.config.leverage
        leverage = to_decimal(lev, "leverage") if lev else Decimal(1)
        account = Account(ccy, {ccy: self._cash}, leverage=leverage)
        return Portfolio(account, self.instruments)

    def _save_rebalancer(self, state: dict[str, Any]) -> None:
        """The rebalancer's state, written ahead of its orders (atomically)."""
        path = self.run_dir / REBALANCER_STATE
        tmp = path.with_name(f"{REBALANCER_STATE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _on_drift(self, event: Any) -> None:
        """A drift event: on the node's bus, and on its stream channel (notifications,
        the API's WebSocket)."""
        self.node.bus.publish(event)
        payload = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        payload.update(type="drift", run_id=self.run_id)
        self.events.publish(node_channel(self.run_id), payload)

    # ---------------------------------------------------------------- construction
    @classmethod
    def start(
        cls,
        config: PaperConfig,
        *,
        store: Store | None = None,
        run_id: str | None = None,
        home: Path | None = None,
    ) -> PaperSession:
        store = store or Store()
        if run_id is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            run_id = f"paper-{stamp}-{secrets.token_hex(3)}"
        run_dir = paper_dir(run_id, home)
        if any(r.run_id == run_id for r in store.runs()) or run_dir.exists():
            raise ValueError(f"run {run_id!r} already exists: resume it or pick another id")
        # what can fail on bad input fails before anything is started or stored; the run
        # folder the checks began to fill (the bars' cache) goes again with the error
        try:
            feeds, sig, strategy = cls._checked_inputs(config, run_dir)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        store.start_run(
            run_id, RunMode.PAPER, time.time_ns(), [STRATEGY_ID],
            {**config.to_mapping(), "run_dir": str(run_dir)},
        )  # fmt: skip
        for iid in feeds:
            store.save_instrument(config.instrument(iid))
        session = cls(
            run_id, config, store, run_dir, resumed=False, signals=sig, strategy=strategy,
            feeds=feeds,
        )  # fmt: skip
        if session.in_sample is not None:
            (run_dir / IN_SAMPLE).write_text(
                to_json({"in_sample": session.in_sample, "warnings": session.warnings})
            )
        session.node.start()
        session._save_state(time.time_ns())
        return session

    @staticmethod
    def _checked_inputs(
        config: PaperConfig, run_dir: Path
    ) -> tuple[dict[InstrumentId, Bars], SignalArrays | None, Strategy | EventStrategy]:
        """Every instrument's bars (cached in `run_dir`), the strategy's checked signals
        (None for the rebalancer, which has none) and the strategy; a ValueError names
        what is wrong (strategy, data, funding file, signals)."""
        from sapphire.strategy.registry import get_strategy

        if config.strategy == REBALANCE:
            return config.load_feeds(run_dir / "bars.npz"), None, config.rebalancer(STRATEGY_ID)
        strategy = get_strategy(config.strategy)(**config.params)
        feeds = config.load_feeds(run_dir / "bars.npz")
        bars = next(iter(feeds.values()))
        config.funding_rates(bars, run_dir / FUNDING)  # a bad funding file fails here
        # the same signal checks as every mode: a bad signal fails here, not mid-run
        sig = normalize_signals(
            strategy.signals(bars), len(bars), strategy=strategy.name,
            stop_loss=config.stop_loss, take_profit=config.take_profit,
            trailing_stop=config.trailing_stop,
        )  # fmt: skip
        if config.size_mode == "risk":
            import numpy as np

            entries = sig.enter_long | sig.enter_short
            stops = np.broadcast_to(sig.stop_loss, entries.shape)
            if not (stops[entries] > 0).any():
                raise ValueError(
                    f"size_mode='risk' sizes from the stop-loss distance, and strategy "
                    f"{config.strategy!r} gives no stop-loss: use a strategy with one, or "
                    "size_mode fixed, notional or equity"
                )
        return feeds, sig, strategy

    @classmethod
    def resume(
        cls, run_id: str, *, store: Store | None = None, speed: str | None = None
    ) -> PaperSession:
        """Resume `run_id`; `speed` changes the venue's pace from now on (e.g. "max")."""
        store = store or Store()
        info = store.resume_run(run_id)
        if info.mode is not RunMode.PAPER:
            raise ValueError(f"run {run_id!r} is a {info.mode.value} run, not a paper run")
        mapping = dict(info.config)
        run_dir = Path(mapping.pop("run_dir"))
        session = cls(run_id, PaperConfig.from_mapping(mapping), store, run_dir, resumed=True)
        if speed is not None:
            session.client.call("set_speed", speed=speed)
            session.speed = speed
        session._restore()
        return session

    # ---------------------------------------------------------------- persistence
    def _after(self, event: OrderEvent) -> None:
        """After the node booked a venue event: save the position and balances (fills)."""
        if isinstance(event, OrderFilled):
            self._save_state(event.ts_ns)

    def _save_state(self, ts_ns: int) -> None:
        self.journal.save_state(ts_ns)

    # ---------------------------------------------------------------- resume
    def _restore(self) -> None:
        node = self.node
        missing = self.journal.restore(self.monitor, self.seen, self.guard)
        state = self.run_dir / REBALANCER_STATE
        if isinstance(self.adapter, Rebalancer) and state.exists():
            self.adapter.restore_state(json.loads(state.read_text()))
        node.start()  # the adapter computes its signals
        snap = self.client.call("snapshot")
        head = snap["head"]
        lasts = snap.get("lasts") or {str(self.iid): snap.get("last")}
        for iid in self.feeds:
            if lasts.get(str(iid)) is not None:
                # the venue's last close: the mark (and the risk check's price) until a bar
                node.last[iid] = float(lasts[str(iid)])
        self.reconcile()
        if self.funding is not None:
            self._rebuild_portfolio(int(snap["next_bar"]))
        for cid in missing:
            # the entry filled but the node died before placing its exit legs
            node.place_bracket(cid)
        if node.trading_state is TradingState.HALTED and self.monitor is not None:
            # the node may have died between the halt and the flattening order
            self._restore_adapter()
            self.monitor.enforce_halt()
        self._restore_adapter()
        self.cursor = head
        self._save_state(time.time_ns())

    def _rebuild_portfolio(self, bars_done: int) -> None:
        """With funding: the portfolio again from the stored fills (the reconciled ones
        included) and the funding of every bar the venue has matched (`bars_done`, also
        those that went by while the node was down), in the venue's order: a bar's
        funding before the fills at or after its open."""
        assert self.funding is not None
        portfolio = self._new_portfolio()
        fills = self.store.fills(self.run_id)
        times = self.bars.time
        steps: list[tuple[int, int, int]] = [
            (int(times[i]), 0, i) for i in range(bars_done) if self.funding[i] != 0.0
        ]
        steps += [(f.ts_ns, 1, k) for k, f in enumerate(fills)]
        for ts, kind, k in sorted(steps):
            if kind == 0:
                if portfolio.net_quantity(self.iid) != 0:
                    portfolio.apply_funding(
                        self.iid, to_decimal(float(self.funding[k])),
                        to_decimal(float(self.bars.open[k])), ts,
                    )  # fmt: skip
            else:
                f = fills[k]
                portfolio.apply_fill(
                    f.strategy_id, f.instrument_id, f.side, f.last_qty, f.last_px, f.fee,
                    f.ts_ns, fee_currency=f.fee_currency,
                )  # fmt: skip
        self.node.portfolio = portfolio

    def _on_funding(self, i: int) -> None:
        """The venue paid bar `i`'s funding (before matching the bar): book it too."""
        assert self.funding is not None
        portfolio = self.node.portfolio
        if portfolio.net_quantity(self.iid) == 0:
            return
        ts = int(self.bars.time[i])
        portfolio.apply_funding(
            self.iid, to_decimal(float(self.funding[i])),
            to_decimal(float(self.bars.open[i])), ts,
        )  # fmt: skip
        self._save_state(ts)

    def reconcile(self) -> None:
        """Adopt the venue's truth for every order the store has as open."""
        node = self.node
        for order in node.open_orders():
            cid = str(order.client_order_id)
            reply = self.client.call("reconcile", client_order_id=cid, ts_ns=order.ts_last)
            self.venue.deliver(reply["events"])
            if order.status is OrderStatus.PENDING_CANCEL:
                # the cancel request may never have reached the venue: send it again
                again = self.client.call("cancel", client_order_id=cid)
                self.venue.deliver(again["events"])

    def _restore_adapter(self) -> None:
        self.journal.restore_adapter(self.adapter)

    # ---------------------------------------------------------------- the loop
    def _on_bar(self, i: int) -> None:
        """Bar `i` as the venue matched it: to the node (the risk monitor sees its close,
        then the strategy acts); an equity snapshot every 60 bars and at each breach."""
        bars = []
        for iid, b in self.feeds.items():
            bar = Bar(
                instrument_id=iid, ts_ns=int(b.time[i]), open=float(b.open[i]),
                high=float(b.high[i]), low=float(b.low[i]), close=float(b.close[i]),
                volume=float(b.volume[i]),
            )  # fmt: skip
            self.node.process_bar(bar, b.timeframe_ns, index=i)
            bars.append(bar)
        self.bar = i
        tf = self.bars.timeframe_ns
        events = len(self.monitor.events) if self.monitor is not None else 0
        if events != self._risk_events or i % 60 == 0:
            self._risk_events = events
            marks = {bar.instrument_id: to_decimal(bar.close, "close") for bar in bars}
            snap = self.node.portfolio.snapshot(bars[0].ts_ns + tf, marks)
            self.store.save_equity_snapshot(snap, run_id=self.run_id)
            self.journal.publish_equity(snap)
        else:
            self.journal.publish_equity()
        for bar in bars:
            self.journal.publish_bar(bar, tf)
        if self.drift is not None:
            self.drift.on_bar(i)

    def _finish(self) -> None:
        """End of the data: the strategy closes out, the venue fills what is queued."""
        self.node.bar_index = len(self.bars) - 1
        self.node.stop()
        self.venue.deliver(self.client.call("finish"))
        end = int(self.bars.time[-1]) + self.bars.timeframe_ns
        self._save_state(end)
        marks = {iid: to_decimal(float(b.close[-1])) for iid, b in self.feeds.items()}
        snap = self.node.portfolio.snapshot(end, marks)
        self.store.save_equity_snapshot(snap, run_id=self.run_id)
        self.journal.publish_equity(snap)
        guard = self.guard
        stopped = guard.stopped_ns if guard is not None else None
        # a stop at zero equity is kept with the run (`runs show` prints its reason)
        reason = zero_equity_warning(stopped) if stopped is not None else None
        self.store.finish_run(self.run_id, time.time_ns(), reason=reason)
        self.status = "finished"

    def run(
        self,
        on_update: Callable[[SessionView], None] | None = None,
        *,
        max_seconds: float | None = None,
        shutdown_venue: bool = True,
    ) -> SessionView:
        """Trade until the venue's data ends (or `max_seconds`); returns the last view."""
        lockstep = parse_speed(self.speed) is None
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        last_view = 0.0
        write_pid(self.run_dir)
        try:
            self._publish_status()
            done = self.client.call("snapshot")["done"]
            if done and self.cursor >= self.client.call("snapshot")["head"]:
                self._finish()
            while self.status == "running":
                if self.control.poll():  # the commands that arrived (a stop ends the loop)
                    self._publish_status()
                if self.status != "running":
                    break
                if not self.pump(lockstep):
                    time.sleep(0.01)
                now = time.monotonic()
                if on_update is not None and now - last_view > 0.25:
                    on_update(self.view())
                    last_view = now
                if now - self._status_at > STATUS_EVERY_S:
                    self._publish_status()
                if deadline is not None and now > deadline:
                    self.status = "stopped"
            if shutdown_venue and (self.status == "finished" or self._stopped_by_control):
                self.shutdown_venue()
        finally:
            clear_pid(self.run_dir)
            self._publish_status()
            if self.status == "finished" or self._stopped_by_control:
                self.close_events()
            else:
                self.events.flush(1.0)
        view = self.view()
        if on_update is not None:
            on_update(view)
        return view

    def close_events(self) -> None:
        """Stop following the control channel; write what is queued and close the stream
        (the run has finished or was stopped)."""
        self.control.close()
        self.events.close(1.0)
        self.stream.close()

    def _stop_asked(self) -> None:
        """The control channel's `stop`: the loop ends after this step."""
        self._stopped_by_control = True
        self.status = "stopped"

    def _publish_status(self) -> None:
        self._status_at = time.monotonic()
        self.journal.publish_status({
            "mode": "paper", "status": self.status,
            "trading_state": self.control.trading_state.value,
            "operator_state": self.control.operator_state.value,
            "bar": self.bar, "bars": len(self.bars), "fills": self._fill_count(),
        })  # fmt: skip

    def _fill_count(self) -> int:
        return sum(
            1 for o in self.node.orders.values() for e in o.events if isinstance(e, OrderFilled)
        )

    def pump(self, advance: bool) -> int:
        """Take the venue's stream entries after the cursor (`advance`: lockstep, ask for
        the next bar when all is seen): events to the node, bars to the strategy, the
        end of the data to `_finish`. Returns how many entries were taken."""
        entries = self.client.call("poll", after=self.cursor, advance=advance)["entries"]
        for entry in entries:
            self.cursor = entry.seq
            if entry.kind == "event":
                self.venue.deliver([entry.event])
            elif entry.kind == "funding":
                self._on_funding(entry.bar)
            elif entry.kind == "bar":
                self._on_bar(entry.bar)
            else:
                self._finish()
                break
        return len(entries)

    def shutdown_venue(self) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            self.client.call("shutdown")
        self.client.close()

    def view(self) -> SessionView:
        node = self.node
        pos = node.portfolio.position(StrategyId(STRATEGY_ID), self.iid)
        last = node.last.get(self.iid)
        marks = {iid: to_decimal(px) for iid, px in node.last.items()}
        account = node.portfolio.account
        ccy = self.instrument.settlement
        return SessionView(
            run_id=self.run_id,
            bar=self.bar,
            bars=len(self.bars),
            last=last,
            position=pos.quantity if pos is not None else Decimal(0),
            avg_px=pos.avg_px if pos is not None else None,
            balance=account.balance(ccy),
            equity=node.portfolio.equity(marks) if marks else account.balance(ccy),
            realized=pos.realized_pnl if pos is not None else Decimal(0),
            open_orders=[
                (
                    str(o.client_order_id), o.side.value, o.type.value, str(o.quantity),
                    o.status.value,
                )
                for o in node.open_orders()
            ],
            fills=self._fill_count(),
            status=self.status,
            denied=refusal_counts(self.refusals()),
            stopped=(
                zero_equity_warning(self.guard.stopped_ns)
                if self.guard is not None and self.guard.stopped_ns is not None
                else None
            ),
            warnings=self.warnings,
            in_sample=self.in_sample,
            positions=(
                {str(i): str(node.portfolio.net_quantity(i)) for i in self.feeds}
                if len(self.feeds) > 1 else {}
            ),
        )  # fmt: skip

    @property
    def in_sample(self) -> dict[str, Any] | None:
        """The bars of this run a fixed model scores inside its own training window (an
        `ml` strategy's `in_sample`; None: none): its figures are in-sample there."""
        window = getattr(self.strategy, "in_sample", None)
        return dict(window) if window else None

    @property
    def warnings(self) -> list[str]:
        """The strategy's caveats (an `ml` strategy scoring its training bars)."""
        return list(getattr(self.strategy, "caveats", ()))

    def refusals(self) -> list[str]:
        """The reason of every order refused so far: denied by the node's risk engine
        (or its stop at zero equity) or rejected by the venue."""
        return [
            e.reason
            for o in self.node.orders.values()
            for e in o.events
            if isinstance(e, OrderDenied | OrderRejected)
        ]


def read_in_sample(run_dir: Path) -> dict[str, Any]:
    """What `IN_SAMPLE` holds for a run ({"in_sample", "warnings"}; empty: nothing)."""
    import json

    path = Path(run_dir) / IN_SAMPLE
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def denied(order_events: list[OrderEvent]) -> bool:
    """An order the risk engine refused (never sent to the venue)."""
    return any(isinstance(e, OrderDenied) for e in order_events)


def crash_env(point: str | None, at: int = 1) -> dict[str, str]:
    """The environment that arms the test-only crash hook (see `client.maybe_crash`)."""
    env = dict(os.environ)
    if point is not None:
        env["SAPPHIRE_PAPER_CRASH_POINT"] = point
        env["SAPPHIRE_PAPER_CRASH_AT"] = str(at)
    return env
