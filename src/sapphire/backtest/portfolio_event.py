"""The event-driven portfolio backtest: one node, one simulated venue listing every
instrument with one shared cash account, one `VectorAdapter` per instrument; results in
the portfolio kernel's record layout (`sapphire.sim.portfolio_kernel`), so that
`PortfolioBacktest` builds its tables with the same code for both engines.

The portfolio limits (`max_weight`, `max_gross`) are applied by the entry's sizer at the
fill, from the venue's equity and positions, as the kernel applies them at its fill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import numpy as np
from numpy.typing import NDArray

from sapphire.domain import (
    InstrumentId,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine import BarFeed, FundingPaid, TradingNode, VectorAdapter
from sapphire.engine.config import RunConfig
from sapphire.sim import kernel as K
from sapphire.sim.bar_path import FillModel
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import SignalArrays

__all__ = ["LimitSizer", "PortfolioRun", "run_portfolio_event"]

_ROLE = {"entry": K.ROLE_ENTRY, "signal": K.ROLE_SIGNAL, "end": K.ROLE_END}
_REASON = {"size below lot": K.REASON_LOT, "insufficient margin": K.REASON_MARGIN}
_FUDGE = Decimal("1e-9")


@dataclass
class PortfolioRun:
    """Kernel-layout outputs of one portfolio run (either engine); `pnl()` gives each
    instrument's cumulative net pnl at every bar, (instrument, bar), on demand."""

    equity: NDArray[np.float64]
    pnl: Callable[[], NDArray[np.float64]]
    orders: NDArray[np.float64]
    order_inst: NDArray[np.int64]
    trades: NDArray[np.float64]
    trade_inst: NDArray[np.int64]
    scalars: NDArray[np.float64]


class LimitSizer:
    """An entry's quantity at the fill: `mode` sizing of `size` from the shared equity,
    cut to `max_weight` of the equity and to what `max_gross` leaves beside the other
    positions (marked at their last price), rounded down to `lot`."""

    def __init__(
        self,
        venue: SimulatedVenue,
        instrument_id: InstrumentId,
        mode: str,
        size: float,
        lot: float,
        max_weight: float | None,
        max_gross: float | None,
    ) -> None:
        self.venue = venue
        self.instrument_id = instrument_id
        self.mode = mode
        self.size = to_decimal(size, "size")
        self.lot = to_decimal(lot, "lot") if lot else None
        self.max_weight = to_decimal(max_weight, "max_weight") if max_weight else None
        self.max_gross = to_decimal(max_gross, "max_gross") if max_gross else None

    def __call__(self, px: Decimal, equity: Decimal) -> Decimal | str:
        if self.mode == "fixed":
            q = self.size
        elif self.mode == "notional":
            q = self.size / px
        else:
            q = self.size * equity / px
        if self.max_weight is not None:
            q = min(q, self.max_weight * equity / px)
        if self.max_gross is not None:
            gross = Decimal(0)
            for iid, book in self.venue._books.items():
                pos = self.venue.position(iid)
                if iid != self.instrument_id and pos:
                    gross += abs(pos) * to_decimal(book.last)
            q = min(q, (self.max_gross * equity - gross) / px)
        if q <= 0:
            return "insufficient margin"
        lot = self.lot
        if lot is not None and q % lot != 0:
            q = ((q / lot) + _FUDGE).to_integral_value(rounding=ROUND_FLOOR) * lot
            if q <= 0:
                return "size below lot"
        return q


class _Recorder:
    """Writes kernel-layout order and trade rows, per instrument, from the node's bus."""

    def __init__(self, node: TradingNode, index: dict[InstrumentId, int], n: int) -> None:
        self.node = node
        self.index = index
        m = len(index)
        self.created: dict[str, int] = {}
        self.orders: list[list[float]] = []
        self.order_inst: list[int] = []
        self.trades: list[list[float]] = []
        self.trade_inst: list[int] = []
        self.pos = [Decimal(0)] * m
        self.flow = [Decimal(0)] * m
        self.open: list[list[float] | None] = [None] * m
        self.entry_fee = [Decimal(0)] * m
        self.trade_funding = [Decimal(0)] * m
        self.marks: list[tuple[int, int, float, float]] = []  # (bar, instrument, flow, pos)
        self.fees = Decimal(0)
        self.funding = Decimal(0)
        bus = node.bus
        bus.subscribe(OrderSubmitted, self.on_submitted)
        bus.subscribe(OrderFilled, self.on_filled)
        bus.subscribe(OrderRejected, self.on_refused)
        bus.subscribe(OrderDenied, self.on_refused)
        bus.subscribe(FundingPaid, self.on_funding)

    def on_submitted(self, event: OrderSubmitted) -> None:
        self.created[event.client_order_id] = self.node.bar_index

    def on_funding(self, event: FundingPaid) -> None:
        k = self.index[event.instrument_id]
        self.flow[k] += event.amount
        self.funding += event.amount
        self.trade_funding[k] += event.amount
        self.marks.append((self.node.bar_index, k, float(self.flow[k]), float(self.pos[k])))

    def on_refused(self, event: OrderRejected | OrderDenied) -> None:
        order = self.node.orders[event.client_order_id]
        cid = order.client_order_id
        self.order_inst.append(self.index[order.instrument_id])
        self.orders.append(
            [
                self.created.get(cid, self.node.bar_index), -1, float(order.side.sign),
                K.MARKET, K.ROLE_ENTRY, float(order.quantity), np.nan, np.nan, 0.0,
                K.REJECTED, _REASON.get(event.reason, K.REASON_NONE), 0.0,
            ]
        )  # fmt: skip

    def on_filled(self, event: OrderFilled) -> None:
        order = self.node.orders[event.client_order_id]
        cid = order.client_order_id
        k = self.index[order.instrument_id]
        bar = self.node.bar_index
        role = _ROLE.get(self.node.tags.get(cid, "signal"), K.ROLE_SIGNAL)
        sign = order.side.sign
        qty, px, fee = event.last_qty, event.last_px, event.fee
        self.order_inst.append(k)
        self.orders.append(
            [
                self.created.get(cid, bar), bar, float(sign), K.MARKET, role, float(qty),
                np.nan, float(px), float(fee), K.FILLED, K.REASON_NONE, 0.0,
            ]
        )  # fmt: skip
        self.flow[k] -= sign * qty * px + fee
        self.fees += fee
        before = self.pos[k]
        self.pos[k] += sign * qty
        if before == 0:
            self.open[k] = [bar, float(sign), float(qty), float(px)]
            self.entry_fee[k] = fee
            self.trade_funding[k] = Decimal(0)
        elif self.pos[k] == 0 and self.open[k] is not None:
            entry_bar, side, size, entry_px = self.open[k]  # type: ignore[misc]
            self.trade_inst.append(k)
            self.trades.append(
                [
                    entry_bar, bar, side, size, entry_px, float(px), float(self.entry_fee[k]),
                    float(fee), float(self.trade_funding[k]), role,
                ]
            )  # fmt: skip
            self.open[k] = None
        self.marks.append((bar, k, float(self.flow[k]), float(self.pos[k])))


def _per_bar(marks: list[tuple[int, int, float, float]], n: int, m: int) -> tuple[NDArray, ...]:
    """Flow and position of every instrument at the close of every bar."""
    flow = np.zeros((n, m))
    pos = np.zeros((n, m))
    if not marks:
        return flow, pos
    arr = np.asarray(marks, dtype=np.float64)
    for k in range(m):
        rows = arr[arr[:, 1] == k]
        if not len(rows):
            continue
        last = np.full(n, -1, dtype=np.int64)
        last[rows[:, 0].astype(np.int64)] = np.arange(len(rows))
        last = np.maximum.accumulate(last)
        have = last >= 0
        flow[have, k] = rows[last[have], 2]
        pos[have, k] = rows[last[have], 3]
    return flow, pos


def run_portfolio_event(
    bars: Sequence[Bars],
    symbols: Sequence[str],
    strategy: Strategy,
    configs: Sequence[RunConfig],
    signals: Sequence[SignalArrays],
    *,
    cash: float,
    leverage: float | None,
    max_weight: float | None,
    max_gross: float | None,
    funding: Sequence[NDArray[np.float64] | None] | None = None,
) -> PortfolioRun:
    """Replay aligned `bars` (one per instrument, the same times) through one node
    trading `strategy`'s precomputed `signals` on every instrument, each with its own
    `configs` entry (fees, slippage, tick, lot, size), against one shared account."""
    m = len(bars)
    n = len(bars[0])
    iids = [InstrumentId(s.replace(" ", "_").replace("/", "_") or f"i{k}", "SIM") for k, s in
            enumerate(symbols)]  # fmt: skip
    instruments = [cfg.instrument(iid) for cfg, iid in zip(configs, iids, strict=True)]
    first = configs[0]
    venue = SimulatedVenue(
        instruments,
        cash=repr(float(cash)),
        leverage=leverage,
        fill_model=FillModel(first.slippage_bps, first.slippage_ticks, first.tick_size),
    )
    node = TradingNode(venue, run_id="pf", bracket_tick=first.tick_size)
    limited = bool(max_weight) or bool(max_gross)
    for k, (cfg, iid) in enumerate(zip(configs, iids, strict=True)):
        adapter = VectorAdapter(
            strategy, iid, bars=bars[k], signals=signals[k], size=cfg.size,
            size_mode=cfg.size_mode,  # type: ignore[arg-type]
            lot=cfg.lot_size or float(instruments[k].lot_size), strategy_id=f"s{k}",
        )  # fmt: skip
        if limited:
            # sized at the fill from the shared account, within the portfolio limits
            adapter._quantity = LimitSizer(  # type: ignore[assignment]
                venue, iid, cfg.size_mode, cfg.size, cfg.lot_size, max_weight, max_gross
            )
            adapter._fixed_qty = None
        node.add_strategy(adapter, bars=[iid])
    rec = _Recorder(node, {iid: k for k, iid in enumerate(iids)}, n)
    feeds = []
    for k, (iid, b) in enumerate(zip(iids, bars, strict=True)):
        rates = funding[k] if funding is not None else None
        feeds.append(
            BarFeed(iid, b.time, b.open, b.high, b.low, b.close, b.volume, b.timeframe_ns, rates)
        )
    node.run_bars(feeds)
    _flow, pos_before_end = _per_bar(rec.marks, n, m)
    node.bar_index = n - 1
    node.stop()
    for iid, b in zip(iids, bars, strict=True):
        venue.close_queued_at(iid, float(b.close[-1]), int(b.time[-1]))
    flow, pos = _per_bar(rec.marks, n, m)
    close = np.column_stack([b.close for b in bars])
    pnl = flow + pos * close
    equity = cash + pnl.sum(axis=1)
    by_instrument = np.ascontiguousarray(pnl.T)
    scalars = np.zeros(K.SCALAR_FIELDS)
    scalars[K.S_CASH] = cash + float(sum(rec.flow))
    scalars[K.S_FEES] = float(rec.fees)
    scalars[K.S_FUNDING] = float(rec.funding)
    scalars[K.S_BARS_IN_MARKET] = int(np.count_nonzero(np.any(pos_before_end != 0, axis=1)))
    scalars[K.S_N_ORDERS] = len(rec.orders)
    scalars[K.S_N_TRADES] = len(rec.trades)
    scalars[K.S_STOP_BAR] = -1
    return PortfolioRun(
        equity, by_instrument.copy,
        np.asarray(rec.orders, dtype=np.float64).reshape(-1, K.ORDER_FIELDS),
        np.asarray(rec.order_inst, dtype=np.int64),
        np.asarray(rec.trades, dtype=np.float64).reshape(-1, K.TRADE_FIELDS),
        np.asarray(rec.trade_inst, dtype=np.int64),
        scalars,
    )  # fmt: skip
