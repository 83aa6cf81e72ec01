"""A live session: the trading node on an exchange (Bybit), the store, crash-safe resume,
reconciliation, the kill switch and a clean stop.

The node is the one every mode builds (`build_node(mode="live")`): a `WallClock`, the
exchange's venue (`sapphire.venues.live.BybitVenue`) or, with `paper`, Sapphire's
simulated venue (`sapphire.sim.SimulatedVenue`, in this process) fed the exchange's
bars. Bars come from `sapphire.venues.market_data` (confirmed klines, REST polling or
the WebSocket): each goes through `node.process_bar` (the venue's events are taken
first, the risk monitor sees the close, then the strategy acts); between bars the loop
takes the venue's events (fills) as they come. A market order the exchange accepted
and that is still working when a bar comes (its fill on its way: the local exchange
fills it at that bar's open, as the backtest does) is waited for, up to
`MARKET_WAIT_S`, so that the strategy acts on the position it made, not on the one
before (a reversal would otherwise close twice or not at all). A vectorised strategy is re-evaluated
at each bar on its last `warmup` bars (`VectorAdapter(window=...)`), read from the
exchange's klines at start; an event strategy runs as it is.

Several markets (`--strategy rebalance --symbols A,B`): the `Rebalancer`
(`sapphire.engine.rebalance`) over linear perpetuals of one account, in the same node:
one kline source per market, taken in lockstep (`sapphire.venues.market_data.
Lockstep`: a bar time goes to the node once every market's bar for it has come, or
after a wait that is logged), its orders through the node's risk engine, every
market's position and the one wallet reconciled. The Rebalancer's state is written
ahead of its orders (`REBALANCER_STATE` in the run's directory, as a paper session
does), so a resume carries an interrupted rebalance on without sending twice what
reached the exchange.

Store (`sapphire.engine.session.SessionJournal`, shared with paper sessions): every
order event is committed before the node acts on it, positions and balances after
each fill. Resume (`LiveSession.resume`): the node is rebuilt from the store as a paper
session's is, then reconciled with the exchange: each order the store has open is
looked up by its orderLinkId (fills the store lacks applied once, by execution id; a
cancel or fill done while the node was down adopted), then positions and the balance
are compared (`reconcile_account`, also every `reconcile_every` seconds): a difference
is resolved in the exchange's favour and written as a `RiskEvent` of kind
`reconciliation` whose reason names both values. Every event applied by a
reconciliation gets such a record too.

Stop (`stop`, on Ctrl-C): the open orders are cancelled (`on_exit="cancel"`) or left;
the run stays RUNNING in the store, to be resumed. A `paper` run keeps its simulated
venue in memory, so it cannot be resumed (refused with that reason).

Events and control (`sapphire.engine.stream`, `sapphire.engine.control`): the session
publishes what it commits, its bars, equity and status on the event stream (never
waiting on it), and its loop applies the commands of its control channel between two
polls: stop (`run` returns; then `stop` as on Ctrl-C), pause and resume entries, the
kill switch, cancel and amend an open order.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
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
    Instrument,
    InstrumentId,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    RiskEvent,
    StrategyId,
    TradingState,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine import VectorAdapter
from sapphire.engine.builder import build_node
from sapphire.engine.clock import WallClock
from sapphire.engine.control import NodeControl
from sapphire.engine.rebalance import Rebalancer
from sapphire.engine.risk_monitor import refusal_counts
from sapphire.engine.session import (
    SessionJournal,
    clear_pid,
    open_node_stream,
    session_dir,
    write_pid,
)
from sapphire.engine.stream import StreamPublisher
from sapphire.live.config import LiveConfig
from sapphire.paper.config import REBALANCE
from sapphire.portfolio import Account, Portfolio
from sapphire.store import Store
from sapphire.store.records import RunMode

__all__ = ["REBALANCER_STATE", "RECONCILIATION", "LiveSession", "LiveView", "live_dir"]

log = logging.getLogger(__name__)

#: the kind of the `RiskEvent`s a reconciliation writes
RECONCILIATION = "reconciliation"
ACCOUNT = AccountId("live")
#: seconds a bar waits for the market orders still working (their fills on the way)
MARKET_WAIT_S = 5.0
#: how long a periodic reconciliation waits for an exchange that does not answer
RECONCILE_WAIT_S = 10.0
#: seconds between two status events of a running session
STATUS_EVERY_S = 5.0
#: a rebalancing session's `Rebalancer.state()`, written ahead of its orders (the name
#: a paper session gives it)
REBALANCER_STATE = "rebalancer.json"


def _require_graduation(store: Store, config: LiveConfig) -> None:
    """Real money only for a strategy that passed its gates to live, or was let through
    by an audited override (docs/governance.md); a ValueError saying how otherwise."""
    from sapphire.compliance.graduation import graduated

    if graduated(store, config.strategy, config.params, "live") is None:
        shown = " ".join(f"-p {k}={v}" for k, v in config.params.items())
        raise ValueError(
            f"{config.strategy} {shown or '(default parameters)'} has not graduated to live: "
            f"no passed or overridden decision for it (run sapphire graduate check "
            f"--strategy {config.strategy} {shown} --to live --paper-run RUN_ID; "
            "docs/governance.md)"
        )


def live_dir(run_id: str, home: Path | None = None) -> Path:
    """The run's directory (its bracket specs)."""
    return session_dir("live", run_id, home)


@dataclass
class LiveView:
    """What the terminal view shows (and `--json` prints at the end)."""

    run_id: str
    env: str
    paper: bool
    bars: int
    last: float | None
    position: Decimal
    avg_px: Decimal | None
    balance: Decimal
    equity: Decimal
    open_orders: list[tuple[str, str, str, str, str]]
    fills: int
    status: str
    trading_state: str
    reconciliations: int
    denied: dict[str, int] = field(default_factory=dict)
    #: the position in every market, when the session trades several (`position`,
    #: `avg_px` and `last` are the first market's)
    positions: dict[str, str] = field(default_factory=dict)


class LiveSession:
    """One live run: `LiveSession.start(config)` or `LiveSession.resume(run_id)`, then
    `run()`; `stop()` at the end (see the module docstring)."""

    def __init__(
        self,
        run_id: str,
        config: LiveConfig,
        store: Store,
        run_dir: Path,
        *,
        start_cash: Decimal | None,
        confirm_mainnet: bool = False,
        environ: dict[str, str] | None = None,
    ) -> None:
        from sapphire.risk import profile
        from sapphire.strategy.registry import get_strategy
        from sapphire.venues.market_data import KlinePoller, KlineStream, Lockstep

        self.run_id = run_id
        self.config = config
        self.store = store
        self.run_dir = run_dir
        self.status = "running"
        self._closed = False
        self.bars_seen = 0
        self.reconciliations = 0
        self.reconcile_misses = 0  # periodic reconciliations the exchange did not answer
        # the exchange's market data needs no key; --paper reads it only
        connection = config.connection(confirm_mainnet=confirm_mainnet or config.paper)
        if not config.paper:
            from sapphire.venues.bybit import credentials_from_env

            if config.key is not None:
                environ = self._stored_key(config.key, environ)
            credentials_from_env(connection.environment, environ)  # before any request
        source_cls = KlineStream if config.market_data == "ws" else KlinePoller
        options = {"interval_s": config.poll_interval} if source_cls is KlinePoller else {}
        #: one kline source per market (several: a rebalancing session)
        self.feeds: list[Any] = []
        self.source: Any = None
        self.venue: Any = None
        try:
            for symbol in config.markets:
                self.feeds.append(source_cls(
                    connection, symbol, str(config.timeframe), InstrumentId(symbol, "BYBIT"),
                    **options,
                ))  # fmt: skip
            #: the bars the node takes: the one market's, or every market's in lockstep
            self.source = self.feeds[0] if len(self.feeds) == 1 else Lockstep(self.feeds)
            #: every market's instrument as the exchange lists it
            self.instruments: list[Instrument] = [f.instrument() for f in self.feeds]
            self.instrument: Instrument = self.instruments[0]
            self.iid = self.instrument.id
            if len(self.instruments) > 1:
                _check_markets(self.instruments)
            self.venue = self._venue(connection, environ)
            if start_cash is None:
                start_cash = (
                    to_decimal(config.cash, "cash") if config.paper else self.venue.balance()
                )
            self.start_cash: Decimal = start_cash
            from sapphire.engine.strategy import EventStrategy
            from sapphire.strategy.base import Strategy

            strategy: Strategy | EventStrategy
            if config.strategy == REBALANCE:
                strategy = config.rebalancer("s")
            else:
                strategy = get_strategy(config.strategy, (Strategy, EventStrategy))(**config.params)
            vectorised = isinstance(strategy, Strategy)
            setup = build_node(
                config, mode="live", venue=self.venue, instrument_id=self.iid,
                strategy=strategy, clock=WallClock(), portfolio=self._new_portfolio(),
                run_id=run_id,
                risk_profile=profile(config.risk_profile) if config.risk_profile else None,
                instrument=self.instrument, window=config.warmup if vectorised else None,
            )  # fmt: skip
        except BaseException:
            self.close()
            raise
        self.node = setup.node
        self.node.correlate = True  # log lines about an order carry its signal's id
        self.trader = setup.trader
        self.monitor = setup.monitor
        self.guard = setup.guard
        self.strategy_id = StrategyId(str(self.trader.strategy_id))
        if isinstance(self.trader, Rebalancer):
            self.trader.on_state = self._save_rebalancer
        #: the event stream (what the node does, out; its control channel, in)
        self.stream = open_node_stream(run_dir)
        self.events = StreamPublisher(self.stream)
        self.journal = SessionJournal(
            store, run_id, run_dir, self.node, ACCOUNT, strategy_id=self.strategy_id,
            events=self.events,
        )  # fmt: skip
        self.journal.attach()
        #: the commands of the control channel, applied by `run`'s loop
        self.control = NodeControl(
            self.node, run_id, run_dir, trader=self.trader, monitor=self.monitor,
            stream=self.stream, events=self.events, on_stop=self._stop_asked,
        )  # fmt: skip
        self._status_at = 0.0
        self.node.bus.subscribe(OrderFilled, self._after_fill)
        self.node.bus.subscribe(OrderEvent, self._on_order_event)
        self._reconciling: str | None = None  # why events are being applied now
        self._risk_events = 0
        self._next_reconcile = time.monotonic() + config.reconcile_every
        self._iids = tuple(inst.id for inst in self.instruments)

    def _stored_key(self, name: str, environ: dict[str, str] | None) -> dict[str, str]:
        """`environ` (default: the process's) with the credentials of the stored key `name`,
        decrypted here (the only place they are): the key store of issue 12."""
        from sapphire.store.keyvault import KeyVault, credentials_environ, load_master_key

        base = dict(os.environ if environ is None else environ)
        home = self.run_dir.parent.parent  # <home>/live/<run_id>
        vault = KeyVault(self.store, load_master_key(home, base))
        stored = vault.get(name)
        if stored.env != self.config.env:
            raise ValueError(
                f"stored key {name!r} is for {stored.exchange} {stored.env}, not "
                f"{self.config.env}: add one for {self.config.env} (sapphire keys add)"
            )
        return {**base, **credentials_environ(vault, name)}

    def _venue(self, connection: Any, environ: dict[str, str] | None) -> Any:
        config = self.config
        if config.paper:
            from sapphire.sim.bar_path import FillModel
            from sapphire.sim.venue import SimulatedVenue

            return SimulatedVenue(
                self.instruments, cash=str(config.cash), leverage=config.leverage,
                fill_model=FillModel(config.slippage_bps, config.slippage_ticks,
                                     float(self.instrument.tick_size)),
                intrabar="worst" if config.intrabar == "worst" else "path", name="SIM",
            )  # fmt: skip
        from sapphire.venues.live import BybitVenue

        executions = {str(f.trade_id) for f in self.store.fills(self.run_id)}
        venue = BybitVenue(
            connection, config.markets, environ=environ,
            poll_interval_s=config.poll_interval, executions=executions,
        )  # fmt: skip
        return venue.start()

    def _new_portfolio(self) -> Portfolio:
        ccy = self.instrument.settlement
        lev = self.config.leverage
        leverage = to_decimal(lev, "leverage") if lev else Decimal(1)
        return Portfolio(Account(ccy, {ccy: self.start_cash}, leverage=leverage), self.instruments)

    def _save_rebalancer(self, state: dict[str, Any]) -> None:
        """The rebalancer's state, written ahead of its orders (atomically)."""
        path = self.run_dir / REBALANCER_STATE
        tmp = path.with_name(f"{REBALANCER_STATE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    # ---------------------------------------------------------------- construction
    @classmethod
    def start(
        cls,
        config: LiveConfig,
        *,
        store: Store | None = None,
        run_id: str | None = None,
        home: Path | None = None,
        confirm_mainnet: bool = False,
        environ: dict[str, str] | None = None,
    ) -> LiveSession:
        """A new run: connected, warmed up, recorded in the store."""
        store = store or Store()
        if run_id is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            run_id = f"live-{stamp}-{secrets.token_hex(3)}"
        run_dir = live_dir(run_id, home)
        if any(r.run_id == run_id for r in store.runs()) or run_dir.exists():
            raise ValueError(f"run {run_id!r} already exists: resume it or pick another id")
        if config.env == "mainnet" and not config.paper:
            _require_graduation(store, config)
        session = cls(
            run_id, config, store, run_dir, start_cash=None,
            confirm_mainnet=confirm_mainnet, environ=environ,
        )  # fmt: skip
        try:
            run_dir.mkdir(parents=True)
            store.start_run(
                run_id, RunMode.LIVE, time.time_ns(), [session.strategy_id],
                {**config.to_mapping(), "run_dir": str(run_dir),
                 "start_cash": str(session.start_cash)},
            )  # fmt: skip
            for instrument in session.instruments:
                store.save_instrument(instrument)
            session._warm_up()
            session.node.start()
            # an exchange account may hold a position or a balance the node does not
            # know of yet: adopted now, not at the first periodic reconciliation
            session.reconcile_account()
        except BaseException:
            session.close()
            raise
        return session

    @classmethod
    def resume(
        cls,
        run_id: str,
        *,
        store: Store | None = None,
        confirm_mainnet: bool = False,
        environ: dict[str, str] | None = None,
    ) -> LiveSession:
        """Resume `run_id`: rebuild from the store, reconcile with the exchange."""
        store = store or Store()
        info = store.run(run_id)
        if info.mode is not RunMode.LIVE:
            raise ValueError(f"run {run_id!r} is a {info.mode.value} run, not a live run")
        mapping = dict(info.config)
        run_dir = Path(mapping.pop("run_dir"))
        start_cash = Decimal(mapping.pop("start_cash"))
        config = LiveConfig.from_mapping(mapping)
        if config.paper:
            raise ValueError(
                f"run {run_id!r} is a --paper run: its simulated venue lived in the stopped "
                "process, so it cannot be resumed; start a new one"
            )
        store.resume_run(run_id)
        session = cls(
            run_id, config, store, run_dir, start_cash=start_cash,
            confirm_mainnet=confirm_mainnet, environ=environ,
        )  # fmt: skip
        try:
            session._restore()
        except BaseException:
            session.close()
            raise
        return session

    def _warm_up(self) -> None:
        """The last `warmup` confirmed bars to a vectorised strategy's window (not acted
        on); the last one's close becomes the node's last price (every market's, with
        several)."""
        if len(self.feeds) > 1:
            for iid, bars in self.source.history(self.config.warmup).items():
                if bars:
                    self.node.last[iid] = bars[-1].close
            return
        history = self.source.history(self.config.warmup)
        if not history:
            return
        if isinstance(self.trader, VectorAdapter):
            import numpy as np

            from sapphire.strategy.base import Bars

            def column(name: str) -> Any:
                return np.asarray([getattr(b, name) for b in history], dtype=np.float64)

            window = Bars(
                time=np.asarray([b.ts_ns for b in history], dtype=np.int64),
                open=column("open"), high=column("high"), low=column("low"),
                close=column("close"), volume=column("volume"),
                timeframe_ns=self.source.timeframe_ns,
            )  # fmt: skip
            self.trader.warm_up(window)
        self.node.last[self.iid] = history[-1].close

    def _restore(self) -> None:
        node = self.node
        missing = self.journal.restore(self.monitor, guard=self.guard)
        state = self.run_dir / REBALANCER_STATE
        if isinstance(self.trader, Rebalancer) and state.exists():
            # a rebalance the crash interrupted goes on at the next portfolio bar
            self.trader.restore_state(json.loads(state.read_text()))
        self._warm_up()
        node.start()
        # the orders the store has open, brought to the exchange's state
        self._reconciling = "while the node was down"
        try:
            self.venue.reconcile(node.open_orders())
            self.venue.drain()
            for order in node.open_orders():
                if order.status is OrderStatus.PENDING_CANCEL:
                    # the cancel may never have reached the exchange: send it again
                    self.venue.cancel_order(str(order.client_order_id))
            self.settle(5.0)
        finally:
            self._reconciling = None
        for cid in missing:
            node.place_bracket(cid)  # the entry filled while the node was down
        self.journal.restore_adapter(self.trader)
        if node.trading_state is TradingState.HALTED and self.monitor is not None:
            self.monitor.enforce_halt()  # the node may have died before flattening
        self.reconcile_account()
        self.journal.save_state(time.time_ns())

    # ---------------------------------------------------------------- events
    def _after_fill(self, event: OrderFilled) -> None:
        """After a fill (booked by the node): positions and balances to the store."""
        self.journal.save_state(event.ts_ns)

    def _drain(self) -> int:
        drain = getattr(self.venue, "drain", None)
        return int(drain()) if drain is not None else 0

    def settle(self, timeout: float) -> None:
        """Take the venue's events until nothing is in flight (or `timeout`)."""
        deadline = time.monotonic() + timeout
        state = getattr(self.venue, "order_state", None)
        while True:
            self._drain()
            busy = state is not None and any(
                str(state(str(o.client_order_id))) in ("SENDING",) for o in self.node.open_orders()
            )
            if not busy or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def _record(self, kind_reason: str, detail: dict[str, object]) -> None:
        self.reconciliations += 1
        self.store.record_risk_event(
            RiskEvent(
                event_id=f"{self.run_id}-rec-{time.time_ns()}-{self.reconciliations}",
                ts_ns=time.time_ns(), kind=RECONCILIATION, reason=kind_reason, detail=detail,
            ),
            run_id=self.run_id,
        )  # fmt: skip

    def _on_order_event(self, event: OrderEvent) -> None:
        if self._reconciling is not None:
            self._record(
                f"{type(event).__name__} of order {event.client_order_id} adopted from the "
                f"exchange ({self._reconciling})",
                {"client_order_id": str(event.client_order_id), "event": type(event).__name__},
            )

    # ---------------------------------------------------------------- reconciliation
    def _reconcile_when_due(self) -> None:
        """The periodic reconciliation: an exchange that does not answer within
        `RECONCILE_WAIT_S` (down, restarting) is asked again at the next period; the
        session trades on meanwhile. A refusal (a revoked key, say) still ends it."""
        from sapphire.venues.resilience import FAILURES, Outcome, classify

        try:
            self.reconcile_account(timeout=RECONCILE_WAIT_S)
        except FAILURES as exc:
            if classify(exc) is Outcome.REFUSED:
                raise
            self.reconcile_misses += 1
            log.warning(
                "run %s: the exchange did not answer the reconciliation (%s: %s); asked "
                "again at the next period",
                self.run_id, type(exc).__name__, exc,
            )  # fmt: skip

    def _position_gaps(
        self, sizes: dict[str, Decimal]
    ) -> list[tuple[Instrument, Decimal, Decimal]]:
        """The markets whose position in the node differs from the exchange's `sizes`:
        (instrument, ours, theirs)."""
        net = self.node.portfolio.net_quantity
        out = []
        for inst in self.instruments:
            ours, theirs = net(inst.id), sizes.get(inst.id.symbol, Decimal(0))
            if ours != theirs:
                out.append((inst, ours, theirs))
        return out

    def reconcile_account(self, timeout: float = 60.0) -> None:
        """Compare every market's position and the balance with the exchange's; adopt
        the exchange's values where they differ, each with a `reconciliation` event. An
        exchange that does not answer is asked again until `timeout`."""
        if self.config.paper:
            return  # the simulated venue is in this process: nothing to compare
        self.settle(5.0)
        wallet, sizes = self.venue.account(timeout)
        self._drain()
        node = self.node
        if self._position_gaps(sizes):
            # a fill may be on its way: bring the orders up to date and read again
            self.venue.reconcile([])
            self._drain()
            wallet, sizes = self.venue.account(timeout)
        ts = time.time_ns()
        gaps = self._position_gaps(sizes)
        for inst, ours, theirs in gaps:
            diff = theirs - ours
            last = node.last.get(inst.id)
            price = to_decimal(last) if last is not None else Decimal(0)
            side = OrderSide.BUY if diff > 0 else OrderSide.SELL
            node.portfolio.apply_fill(
                self.strategy_id, inst.id, side, abs(diff), price, Decimal(0), ts
            )
            detail: dict[str, object] = {"store": str(ours), "exchange": str(theirs)}
            detail["price"] = str(price)
            market = ""
            if len(self.instruments) > 1:
                market = f"{inst.id.symbol}: "
                detail["symbol"] = inst.id.symbol
            self._record(
                f"{market}position {ours} in the store, {theirs} on the exchange: the "
                f"exchange's adopted (at {price})",
                detail,
            )
        if gaps:
            self.journal.restore_adapter(self.trader)
        account = node.portfolio.account
        ccy = self.instrument.settlement
        cash = account.balance(ccy)
        if cash != wallet:
            if wallet > cash:
                account.deposit(ccy, wallet - cash)
            else:
                account.withdraw(ccy, cash - wallet)
            self._record(
                f"{ccy} balance {cash} in the store, {wallet} on the exchange: the "
                "exchange's adopted",
                {"store": str(cash), "exchange": str(wallet), "currency": ccy},
            )
        self.journal.save_state(ts)

    # ---------------------------------------------------------------- the loop
    def _await_market_orders(self, timeout: float) -> None:
        """Take the venue's events until no market order the exchange accepted is
        working (or `timeout`); one whose creation is unanswered is not waited for."""
        deadline = time.monotonic() + timeout
        accepted = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
        while True:
            self._drain()
            working = any(
                o.type is OrderType.MARKET and o.status in accepted for o in self.node.open_orders()
            )
            if not working or time.monotonic() > deadline:
                return
            time.sleep(0.01)

    def _on_bars(self, bars: list[Bar]) -> None:
        """The bars of one bar time (one per market, or fewer after a late market) to
        the node; `bars_seen` counts bar times."""
        node = self.node
        tf = self.source.timeframe_ns
        if not self.config.paper:  # the simulated venue fills in process_bar
            self._await_market_orders(MARKET_WAIT_S)
        for bar in bars:
            node.process_bar(bar, tf)
        self.bars_seen += 1
        events = len(self.monitor.events) if self.monitor is not None else 0
        if events != self._risk_events or self.bars_seen % 60 == 1:
            self._risk_events = events
            marks = {iid: to_decimal(px) for iid, px in node.last.items() if iid in self._iids}
            marks |= {bar.instrument_id: to_decimal(bar.close, "close") for bar in bars}
            snap = node.portfolio.snapshot(bars[0].ts_ns + tf, marks)
            self.store.save_equity_snapshot(snap, run_id=self.run_id)
            self.journal.publish_equity(snap)
        else:
            self.journal.publish_equity()
        for bar in bars:
            self.journal.publish_bar(bar, tf)

    def run(
        self,
        on_update: Callable[[LiveView], None] | None = None,
        *,
        max_seconds: float | None = None,
        max_bars: int | None = None,
    ) -> LiveView:
        """Trade until `max_seconds` or `max_bars` (or an interrupt: Ctrl-C raises
        KeyboardInterrupt, then call `stop`); returns the last view."""
        if self._closed:
            raise ValueError(f"run {self.run_id!r} was stopped: resume it")
        self.status = "running"
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        last_view = 0.0
        every = self.config.reconcile_every
        write_pid(self.run_dir)
        try:
            self._publish_status()
            while self.status == "running":
                if self.control.poll():  # the commands that arrived (a stop ends the loop)
                    self._publish_status()
                if self.status != "running":
                    break
                for bars in _by_time(self.source.poll(0.2)):
                    self._on_bars(bars)
                self._drain()
                now = time.monotonic()
                if now >= self._next_reconcile:
                    self._reconcile_when_due()
                    self._next_reconcile = time.monotonic() + every
                if on_update is not None and now - last_view > 0.25:
                    on_update(self.view())
                    last_view = now
                if now - self._status_at > STATUS_EVERY_S:
                    self._publish_status()
                if (deadline is not None and now > deadline) or (
                    max_bars is not None and self.bars_seen >= max_bars
                ):
                    self.status = "stopped"
        finally:
            clear_pid(self.run_dir)
            self._publish_status()
            self.events.flush(1.0)
        view = self.view()
        if on_update is not None:
            on_update(view)
        return view

    def _stop_asked(self) -> None:
        """The control channel's `stop`: `run` returns after this step."""
        self.status = "stopped"

    def _publish_status(self) -> None:
        self._status_at = time.monotonic()
        self.journal.publish_status({
            "mode": "live", "env": self.config.env, "paper": self.config.paper,
            "status": "closed" if self._closed else self.status,
            "trading_state": self.control.trading_state.value,
            "operator_state": self.control.operator_state.value,
            "bars": self.bars_seen, "reconciliations": self.reconciliations,
        })  # fmt: skip

    def stop(self, on_exit: str | None = None, timeout: float = 15.0) -> list[str]:
        """Stop: cancel the open orders (`on_exit` "cancel", the config's by default)
        or leave them; the venue and the market data are closed. Returns the ids of the
        orders still open (left, or whose cancel was not confirmed in `timeout`)."""
        on_exit = on_exit or self.config.on_exit
        if on_exit not in ("cancel", "leave"):
            raise ValueError(f"on_exit={on_exit!r} is invalid: expected cancel or leave")
        self.status = "stopped"
        try:
            self.settle(timeout)
            if on_exit == "cancel":
                for order in self.node.open_orders():
                    self.node.cancel_order(str(order.client_order_id))
                deadline = time.monotonic() + timeout
                while self.node.open_orders() and time.monotonic() < deadline:
                    self._drain()
                    time.sleep(0.05)
            self._drain()
            self.journal.save_state(time.time_ns())
            return [str(o.client_order_id) for o in self.node.open_orders()]
        finally:
            self.close()

    def close(self) -> None:
        """Disconnect the venue, the market data and the event stream (nothing else)."""
        already = self._closed
        self._closed = True
        # the sources themselves when the set-up failed before the lockstep was made
        parts = (self.venue, self.source) if self.source is not None else (self.venue, *self.feeds)
        for part in parts:
            closer = getattr(part, "close", None)
            if closer is not None:
                closer()
        control = getattr(self, "control", None)  # None when the set-up failed before it
        if control is not None and not already:
            self._publish_status()
            control.close()
            self.events.close(1.0)
            self.stream.close()

    def view(self) -> LiveView:
        node = self.node
        pos = node.portfolio.position(self.strategy_id, self.iid)
        last = node.last.get(self.iid)
        marks = {iid: to_decimal(px) for iid, px in node.last.items() if iid in self._iids}
        account = node.portfolio.account
        ccy = self.instrument.settlement
        orders = node.orders.values()
        return LiveView(
            run_id=self.run_id, env=self.config.env, paper=self.config.paper,
            bars=self.bars_seen, last=last,
            position=pos.quantity if pos is not None else Decimal(0),
            avg_px=pos.avg_px if pos is not None else None,
            balance=account.balance(ccy),
            equity=node.portfolio.equity(marks) if marks else account.balance(ccy),
            open_orders=[
                (str(o.client_order_id), o.side.value, o.type.value, str(o.quantity),
                 o.status.value)
                for o in node.open_orders()
            ],
            fills=sum(1 for o in orders for e in o.events if isinstance(e, OrderFilled)),
            status=self.status, trading_state=self.control.trading_state.value,
            reconciliations=self.reconciliations,
            denied=refusal_counts(
                e.reason for o in orders for e in o.events
                if isinstance(e, OrderDenied | OrderRejected)
            ),
            positions=(
                {str(i): str(node.portfolio.net_quantity(i)) for i in self._iids}
                if len(self._iids) > 1 else {}
            ),
        )  # fmt: skip


def _check_markets(instruments: list[Instrument]) -> None:
    """Several markets trade in one account: linear perpetuals of one settlement coin
    (the one wallet reconciled); a ValueError names the market that is not."""
    from sapphire.domain import ContractType

    ccy = instruments[0].settlement
    for inst in instruments:
        if inst.contract_type is not ContractType.PERPETUAL:
            raise ValueError(
                f"symbol {inst.id.symbol!r} is a {inst.contract_type.value.lower()} market: "
                "a rebalancing session trades linear perpetuals (e.g. ETH/USDT:USDT)"
            )
        if inst.settlement != ccy:
            raise ValueError(
                f"symbol {inst.id.symbol!r} settles in {inst.settlement}, "
                f"{instruments[0].id.symbol!r} in {ccy}: the markets of one session "
                "settle in one coin"
            )


def _by_time(bars: list[Bar]) -> list[list[Bar]]:
    """`bars` (ordered by time) cut into the runs of one bar time each."""
    out: list[list[Bar]] = []
    for bar in bars:
        if out and out[-1][0].ts_ns == bar.ts_ns:
            out[-1].append(bar)
        else:
            out.append([bar])
    return out
