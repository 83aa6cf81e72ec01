"""The event-driven backtest: a vectorised strategy run inside a `TradingNode` against a
`SimulatedVenue`, with results written in the kernel's record layout so that
`Backtest.run` builds trades, orders, fills, equity and metrics with the same code for
both engines (`Backtest(..., engine="event")`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from sapphire.domain import (
    InstrumentId,
    LiquiditySide,
    Order,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderType,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine import (
    BarFeed,
    EventStrategy,
    FundingPaid,
    RiskMonitor,
    TradingNode,
    VectorAdapter,
)
from sapphire.engine.adapter import NO_STOP
from sapphire.engine.builder import build_node
from sapphire.engine.config import RunConfig
from sapphire.engine.node import ZERO_EQUITY_TAG
from sapphire.risk import RiskProfile
from sapphire.sim import kernel as K
from sapphire.sim.bar_path import FillModel
from sapphire.sim.liquidation import LIQUIDATION_CANCEL, Liquidation, LiquidationRule
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import SignalArrays

__all__ = [
    "REASON_NO_STOP",
    "REASON_RISK",
    "ROLE_KILL_SWITCH",
    "ROLE_LIQUIDATION",
    "EventRun",
    "liquidation_rule",
    "run_event_backtest",
]

# roles (and a trade's exit reasons) the kernel has not: a venue liquidation, and the
# kill switch's closing orders; a pre-trade risk denial's rejection reason
ROLE_LIQUIDATION, ROLE_KILL_SWITCH = 6, 7
REASON_RISK, REASON_NO_STOP = 4, 5

_ROLE = {
    "entry": K.ROLE_ENTRY,
    "signal": K.ROLE_SIGNAL,
    "stop_loss": K.ROLE_STOP_LOSS,
    "take_profit": K.ROLE_TAKE_PROFIT,
    "trailing_stop": K.ROLE_TRAILING,
    "end": K.ROLE_END,
    "kill_switch": ROLE_KILL_SWITCH,
    ZERO_EQUITY_TAG: K.ROLE_ZERO_EQUITY,
}
_TYPE = {OrderType.MARKET: K.MARKET, OrderType.LIMIT: K.LIMIT}
_REASON = {"size below lot": K.REASON_LOT, "insufficient margin": K.REASON_MARGIN}


@dataclass
class EventRun:
    """Kernel-layout outputs of one event-driven run."""

    equity: NDArray[np.float64]
    orders: NDArray[np.float64]
    trades: NDArray[np.float64]
    scalars: NDArray[np.float64]
    node: TradingNode
    monitor: RiskMonitor | None = None
    refusals: tuple[tuple[int, str, str], ...] = ()  # (bar, order id, reason)
    #: equity at each bar's close before the end-of-data close (a replay without the
    #: `EquityGuard`; None with it)
    marked: NDArray[np.float64] | None = None


class _Recorder:
    """Listens on the node's bus and writes kernel-layout order, trade and cash rows."""

    def __init__(self, node: TradingNode, cash: float) -> None:
        self.node = node
        self.created: dict[str, int] = {}
        self.orders: list[list[float]] = []
        self.trades: list[list[float]] = []
        self.cash = to_decimal(cash, "cash")
        self.pos = Decimal(0)
        self.marks: list[tuple[int, float, float]] = []  # (bar, cash, position)
        self.fees = Decimal(0)
        self.funding = Decimal(0)
        self.reasons: list[tuple[int, str, str]] = []  # (bar, order id, why refused)
        self._trade: list[float] | None = None
        self._trade_funding = Decimal(0)
        self._entry_fee = Decimal(0)
        bus = node.bus
        bus.subscribe(OrderSubmitted, self.on_submitted)
        bus.subscribe(OrderFilled, self.on_filled)
        bus.subscribe(OrderRejected, self.on_refused)
        bus.subscribe(OrderDenied, self.on_refused)
        bus.subscribe(OrderExpired, self.on_expired)
        bus.subscribe(OrderCanceled, self.on_canceled)
        bus.subscribe(FundingPaid, self.on_funding)
        bus.subscribe(Liquidation, self.on_liquidation)

    def on_funding(self, event: FundingPaid) -> None:
        self.cash += event.amount
        self.funding += event.amount
        self._trade_funding += event.amount
        self.marks.append((self.node.bar_index, float(self.cash), float(self.pos)))

    def on_submitted(self, event: OrderSubmitted) -> None:
        self.created[event.client_order_id] = self.node.bar_index

    def on_filled(self, event: OrderFilled) -> None:
        self._fill(self.node.orders[event.client_order_id], event)

    def on_refused(self, event: OrderRejected | OrderDenied) -> None:
        order = self.node.orders[event.client_order_id]
        self.reasons.append((self.node.bar_index, str(event.client_order_id), event.reason))
        if isinstance(event, OrderDenied):
            self._row(order, K.REJECTED, REASON_RISK)
        else:
            self._row(order, K.REJECTED, _REASON.get(event.reason, K.REASON_NONE))

    def on_expired(self, event: OrderExpired) -> None:
        self._row(self.node.orders[event.client_order_id], K.EXPIRED, K.REASON_NONE)

    def on_canceled(self, event: OrderCanceled) -> None:
        cid = event.client_order_id
        order = self.node.orders[cid]
        reason = self.node.venue.reasons.get(cid)
        if reason == LIQUIDATION_CANCEL:
            return  # a working order dropped by a liquidation: not an order outcome
        if reason is not None:
            self._row(order, K.REJECTED, _REASON.get(reason, K.REASON_NONE))
        elif self.node.tags.get(cid) == "entry" and order.type is not OrderType.MARKET:
            # a pending limit/stop entry cancelled at the end of the data
            self._row(order, K.EXPIRED, K.REASON_NONE)

    def _row(
        self,
        order: Order,
        status: int,
        reason: int,
        fill: OrderFilled | None = None,
    ) -> None:
        cid = order.client_order_id
        tag = self.node.tags.get(cid, "entry")
        level = order.price if order.type is OrderType.LIMIT else order.trigger_price
        self.orders.append(
            [
                self.created.get(cid, self.node.bar_index),
                self.node.bar_index if fill is not None else -1,
                float(order.side.sign),
                _TYPE.get(order.type, K.STOP),
                _ROLE.get(tag, K.ROLE_ENTRY),
                float(order.quantity) if fill is not None or status == K.REJECTED else 0.0,
                float(level) if level is not None else np.nan,
                float(fill.last_px) if fill is not None else np.nan,
                float(fill.fee) if fill is not None else 0.0,
                status,
                reason,
                1.0 if fill is not None and fill.liquidity is LiquiditySide.MAKER else 0.0,
            ]
        )

    def on_liquidation(self, liq: Liquidation) -> None:
        """The venue closed the position: a taker market fill with role `liquidation`."""
        fill = liq.fill
        bar = self.node.bar_index
        self.orders.append(
            [
                bar, bar, float(liq.side.sign), K.MARKET, ROLE_LIQUIDATION,
                float(liq.quantity), np.nan, float(liq.price), float(fill.fee), K.FILLED,
                K.REASON_NONE, 0.0,
            ]
        )  # fmt: skip
        self._book(liq.side.sign, liq.quantity, liq.price, fill.fee, ROLE_LIQUIDATION)

    def _fill(self, order: Order, fill: OrderFilled) -> None:
        self._row(order, K.FILLED, K.REASON_NONE, fill)
        tag = self.node.tags.get(order.client_order_id, "signal")
        role = _ROLE.get(tag, K.ROLE_SIGNAL)
        self._book(order.side.sign, fill.last_qty, fill.last_px, fill.fee, role)

    def _book(self, sign: int, qty: Decimal, px: Decimal, fee: Decimal, role: int) -> None:
        self.cash -= sign * qty * px + fee
        self.fees += fee
        before = self.pos
        self.pos += sign * qty
        bar = self.node.bar_index
        if before == 0:
            self._trade = [bar, float(sign), float(qty), float(px)]
            self._entry_fee = fee
            self._trade_funding = Decimal(0)
        elif self.pos == 0 and self._trade is not None:
            entry_bar, side, size, entry_px = self._trade
            self.trades.append(
                [
                    entry_bar, bar, side, size, entry_px, float(px), float(self._entry_fee),
                    float(fee), float(self._trade_funding), role,
                ]
            )  # fmt: skip
            self._trade = None
        self.marks.append((bar, float(self.cash), float(self.pos)))


def _step(
    marks: list[tuple[int, float, float]], n: int, cash0: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cash and position at the close of every bar from the change records."""
    cash = np.full(n, cash0)
    pos = np.zeros(n)
    if marks:
        arr = np.asarray(marks, dtype=np.float64)
        bars = arr[:, 0].astype(np.int64)
        # the last record of each bar wins; then carry forward
        last = np.full(n, -1, dtype=np.int64)
        last[bars] = np.arange(len(arr))
        last = np.maximum.accumulate(last)
        have = last >= 0
        cash[have] = arr[last[have], 1]
        pos[have] = arr[last[have], 2]
    return cash, pos


def run_event_backtest(
    bars: Bars,
    strategy: Strategy | EventStrategy,
    config: RunConfig,
    *,
    signals: SignalArrays | None = None,
    symbol: str = "bars",
    funding: NDArray[np.float64] | None = None,
    risk_profile: RiskProfile | None = None,
    new_strategy: Callable[[], Strategy | EventStrategy] | None = None,
) -> EventRun:
    """Replay `bars` through a node running `strategy` (or a vectorised strategy's
    precomputed `signals`), built by `build_node` from `config`.

    `config.maintenance_margin` (None: none, as the kernel) lets the venue liquidate the
    position when the equity falls below the maintenance margin at a path point.
    `risk_profile` (the resolved `config.risk_profile`) checks every order with the
    profile's pre-trade limits and feeds its portfolio limits the equity at each bar's
    close (`RiskMonitor`: REDUCING/HALTED states, the kill switch cancels and flattens on
    HALTED).

    When the equity at a bar's close reaches zero, trading stops there as in the kernel
    (`EquityGuard`): the replay runs without the guard (faster) and, only when its equity
    reached zero, again with it. An `EventStrategy` keeps state: `new_strategy` makes a
    fresh one for that second pass."""
    run = _replay(bars, strategy, config, signals, symbol, funding, risk_profile, False)
    if run.marked is not None and bool(np.any(run.marked <= 0)):
        again = new_strategy() if new_strategy is not None else strategy
        run = _replay(bars, again, config, signals, symbol, funding, risk_profile, True)
    return run


def _replay(
    bars: Bars,
    strategy: Strategy | EventStrategy,
    config: RunConfig,
    signals: SignalArrays | None,
    symbol: str,
    funding: NDArray[np.float64] | None,
    risk_profile: RiskProfile | None,
    guard: bool,
) -> EventRun:
    """One replay of `run_event_backtest` (with the `EquityGuard` or not)."""
    n = len(bars)
    cash = config.cash
    iid = InstrumentId(symbol.replace(" ", "_").replace("@", "_") or "bars", "SIM")
    instrument = config.instrument(iid)
    venue = SimulatedVenue(
        [instrument],
        cash=repr(float(cash)),
        leverage=config.leverage,
        fill_model=FillModel(config.slippage_bps, config.slippage_ticks, config.tick_size),
        intrabar="worst" if config.intrabar == "worst" else "path",
        liquidation=liquidation_rule(config),
    )
    setup = build_node(
        config, mode="backtest", venue=venue, instrument_id=iid, strategy=strategy,
        run_id="bt", bars=bars, signals=signals, risk_profile=risk_profile,
        equity_guard=guard,
    )  # fmt: skip
    node, trader = setup.node, setup.trader
    if isinstance(trader, VectorAdapter):
        node.bus.subscribe(Liquidation, trader.on_liquidation)
    rec = _Recorder(node, cash)
    feed = BarFeed(
        iid, bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume,
        bars.timeframe_ns, funding if funding is not None and len(funding) == n else None,
    )  # fmt: skip
    node.run_bars([feed])
    cash_before_end, pos_before_end = _step(rec.marks, n, cash)
    node.bar_index = n - 1
    node.stop()
    venue.close_queued_at(iid, float(bars.close[-1]), int(bars.time[-1]))
    cash_arr, pos_arr = _step(rec.marks, n, cash)
    equity = cash_arr + pos_arr * bars.close
    for j, side, etype, reason in getattr(trader, "rejected", ()):
        code = REASON_NO_STOP if reason == NO_STOP else K.REASON_PRICE
        rec.orders.append(
            [j, -1, side, etype, K.ROLE_ENTRY, 0.0, np.nan, np.nan, 0.0, K.REJECTED, code, 0.0]
        )
    scalars = np.zeros(K.SCALAR_FIELDS)
    scalars[K.S_CASH] = float(rec.cash)
    scalars[K.S_FEES] = float(rec.fees)
    scalars[K.S_FUNDING] = float(rec.funding)
    scalars[K.S_BARS_IN_MARKET] = int(np.count_nonzero(pos_before_end))
    scalars[K.S_N_ORDERS] = len(rec.orders)
    scalars[K.S_N_TRADES] = len(rec.trades)
    stopped = setup.guard.stopped_bar if setup.guard is not None else None
    scalars[K.S_STOP_BAR] = -1 if stopped is None else stopped
    orders = np.asarray(rec.orders, dtype=np.float64).reshape(-1, K.ORDER_FIELDS)
    trades = np.asarray(rec.trades, dtype=np.float64).reshape(-1, K.TRADE_FIELDS)
    return EventRun(
        equity, orders, trades, scalars, node, setup.monitor, tuple(rec.reasons),
        marked=None if guard else cash_before_end + pos_before_end * bars.close,
    )  # fmt: skip


def liquidation_rule(config: RunConfig) -> LiquidationRule | None:
    """The simulated venue's liquidation rule of `config` (None: no liquidation)."""
    if config.maintenance_margin is None:
        return None
    fee = config.liquidation_fee
    return LiquidationRule(
        maintenance_margin_rate=to_decimal(config.maintenance_margin, "maintenance_margin"),
        liquidation_fee_rate=to_decimal(fee if fee is not None else "0.005", "liquidation_fee"),
    )
