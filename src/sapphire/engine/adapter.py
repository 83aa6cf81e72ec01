"""`VectorAdapter`: run any vectorised `Strategy` inside the trading node, unchanged.

The adapter turns the strategy's signal arrays into orders exactly as the backtester
does (docs/backtest.md, "Order of events"): a signal on bar *t* acts at the open of bar
*t + 1*: an exit (reason `signal`) first, then, if flat, an entry: a market order, or a
limit/stop order that lives for one bar (GTD, expiring at the end of bar *t + 1*), with
its stop-loss / take-profit / trailing stop as a bracket whose legs the node places at
the entry fill (levels relative to the fill price). No pyramiding: an entry signal with
a position on the same side is ignored. At the end of the data the position is closed
(reason `end`).

How signals are evaluated:

- **batch** (default, backtests): on start the adapter evaluates the strategy once over
  all the replayed bars and then reads bar *t*'s signals when bar *t* arrives. For a
  causal strategy (signals at *t* use bars up to *t* only, which `sapphire check
  lookahead` verifies) this is identical to evaluating it as bars arrive, and it is
  what makes the event engine fast.
- **incremental** (`window=N`, paper/live): the adapter keeps the last `N` bars and
  re-evaluates the strategy on them at each new bar, using the signals of the last
  row. With `N` at least the strategy's warm-up, the signals equal the batch ones (a
  test checks this on a slice of real data).

Sizing (`size_mode`): `fixed` (base quantity), `notional` (quote amount / fill price),
`equity` (fraction of equity / fill price): the quantity is worked out at the fill by
the venue (`sizer`), from the fill price and the cash after any exit at the same open,
rounded down to `lot`; `risk` (the risk profile's risk per trade between the fill and
the entry's stop-loss; an entry without a stop-loss is not sent). The order carries a
placeholder quantity, and the node's pre-trade check sees the quantity the sizer gives
at the last close instead. Sizers are `sapphire.engine.sizing`'s (a paper venue in
another process rebuilds them from their `spec()`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from sapphire.domain import (
    Instrument,
    InstrumentId,
    Order,
    OrderEvent,
    OrderFilled,
    OrderSide,
    TimeInForce,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine.sizing import QUANTITY_MODES, QuantitySizer, RiskSizer, Sizer
from sapphire.engine.strategy import EventStrategy
from sapphire.risk import RiskProfile
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

__all__ = ["NO_STOP", "VectorAdapter"]

_MARKET, _LIMIT, _STOP = 0, 1, 2
#: why a risk-sized entry without a stop-loss is not sent
NO_STOP = "size_mode risk needs a stop-loss: entry not sent"


def _pick(a: NDArray[Any], i: int) -> float:
    return float(a[i] if a.shape[0] > 1 else a[0])


class VectorAdapter(EventStrategy):
    """A vectorised `Strategy` (instance) trading `instrument_id` inside a node.

    Batch mode needs the replayed bars (`bars=`) or precomputed `signals=`;
    incremental mode (`window=N`) needs neither and is fed `Bar`s through `on_bar`.
    """

    def __init__(
        self,
        strategy: Strategy,
        instrument_id: InstrumentId,
        *,
        bars: Bars | None = None,
        signals: SignalArrays | None = None,
        window: int | None = None,
        size: float = 1.0,
        size_mode: Literal["fixed", "notional", "equity", "risk"] = "fixed",
        lot: float = 0.0,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        strategy_id: str | None = None,
        risk_profile: RiskProfile | None = None,
        instrument: Instrument | None = None,
        leverage: float | None = None,
    ) -> None:
        super().__init__(strategy_id or strategy.name)
        if size_mode not in (*QUANTITY_MODES, "risk"):
            raise ValueError(
                f"size_mode={size_mode!r} is invalid: expected fixed, notional, equity, risk"
            )
        if size_mode == "risk" and (risk_profile is None or instrument is None):
            raise ValueError(
                "size_mode='risk' sizes from a risk profile's risk per trade: give a "
                "risk profile (and the instrument)"
            )
        if window is not None and window < 2:
            raise ValueError(f"window={window!r} is invalid: expected at least 2 bars")
        self.strategy = strategy
        self.instrument_id = instrument_id
        self.window = window
        self.size_mode = size_mode
        # risk sizing is per entry (`RiskSizer`); `size` is then unused
        self._quantity = QuantitySizer("equity" if size_mode == "risk" else size_mode, size, lot)
        self._risk = (risk_profile, instrument)
        # a risk-sized entry fits the margin at this leverage (None: the cash alone, 1x)
        self._leverage = leverage or 1.0
        self._overrides = (stop_loss, take_profit, trailing_stop)
        fixed = self._quantity(Decimal(1), Decimal(0)) if size_mode == "fixed" else None
        # a fixed size below one lot is left to the venue's sizer, which rejects it
        self._fixed_qty = fixed if isinstance(fixed, Decimal) else None
        self.bars = bars
        self.sig = signals
        self.timeframe_ns = bars.timeframe_ns if bars is not None else 0
        self.wants_bar_index = window is None
        self.bar_mask: list[bool] = []
        self.pos = Decimal(0)  # this strategy's signed position
        self.children: list[str] = []  # working bracket legs of the position
        self.pending: str | None = None  # working limit/stop entry
        self.rejected: list[tuple[int, float, int, str]] = []  # (bar, side, type, reason)
        self._buf: dict[str, list[float]] = {k: [] for k in ("time", "o", "h", "l", "c", "v")}
        self._seen = 0

    # ---------------------------------------------------------------- lifecycle
    def on_start(self) -> None:
        if self.window is not None:
            return
        if self.sig is None:
            if self.bars is None:
                raise ValueError("a batch VectorAdapter needs bars= or signals= (or window=)")
            sl, tp, ts = self._overrides
            self.sig = normalize_signals(
                self.strategy.signals(self.bars), len(self.bars), strategy=self.strategy.name,
                stop_loss=sl, take_profit=tp, trailing_stop=ts,
            )  # fmt: skip
        s = self.sig
        active = s.enter_long | s.exit_long | s.enter_short | s.exit_short
        self.bar_mask = active.tolist()
        self._el = s.enter_long.tolist()
        self._xl = s.exit_long.tolist()
        self._es = s.enter_short.tolist()
        self._xs = s.exit_short.tolist()

    def on_stop(self) -> None:
        """End of data: drop the working orders, close the position (reason `end`)."""
        # signals of the last bar have no next bar: their orders are dropped, as is a
        # pending entry and the bracket legs
        for order in self.open_orders():
            self.cancel_order(order.client_order_id)
        self.pending = None
        self.children = []
        if self.pos != 0:
            side = OrderSide.SELL if self.pos > 0 else OrderSide.BUY
            order = self.market(self.instrument_id, side, abs(self.pos), reduce_only=True)
            self.submit_order(order, tag="end")

    # ---------------------------------------------------------------- bars
    def on_bar_index(self, j: int) -> None:
        """Act on the signals of bar `j` (batch mode; called only where one is set)."""
        self._act(j, self._el[j], self._xl[j], self._es[j], self._xs[j], self.sig)

    def warm_up(self, bars: Bars) -> None:
        """Incremental mode: take `bars` (the history before the first live bar) into the
        window without acting on them."""
        if self.window is None:
            raise ValueError("warm_up is for an incremental adapter (window=N)")
        for key, values in (
            ("time", bars.time), ("o", bars.open), ("h", bars.high), ("l", bars.low),
            ("c", bars.close), ("v", bars.volume),
        ):  # fmt: skip
            lst = self._buf[key]
            lst.extend(values.tolist())
            del lst[: max(0, len(lst) - self.window)]

    def on_bar(self, bar: Any) -> None:
        """Incremental mode: append the bar, re-evaluate on the window, act on the last."""
        if self.window is None:
            return
        buf = self._buf
        for key, value in (
            ("time", bar.ts_ns), ("o", bar.open), ("h", bar.high), ("l", bar.low),
            ("c", bar.close), ("v", bar.volume),
        ):  # fmt: skip
            lst = buf[key]
            lst.append(value)
            if len(lst) > self.window:
                del lst[0]
        self._seen += 1
        n = len(buf["c"])
        if n < 2:
            return
        times = np.asarray(buf["time"], dtype=np.int64)
        bars = Bars(
            time=times, open=np.asarray(buf["o"]), high=np.asarray(buf["h"]),
            low=np.asarray(buf["l"]), close=np.asarray(buf["c"]), volume=np.asarray(buf["v"]),
            timeframe_ns=int(np.median(np.diff(times))),
        )  # fmt: skip
        self.timeframe_ns = bars.timeframe_ns
        sl, tp, ts = self._overrides
        sig = normalize_signals(
            self.strategy.signals(bars), n, strategy=self.strategy.name,
            stop_loss=sl, take_profit=tp, trailing_stop=ts,
        )  # fmt: skip
        last = n - 1
        self.last_signals = (
            bool(sig.enter_long[last]), bool(sig.exit_long[last]),
            bool(sig.enter_short[last]), bool(sig.exit_short[last]),
        )  # fmt: skip
        self._act(last, *self.last_signals, sig, ts_ns=bar.ts_ns)

    def _act(
        self,
        j: int,
        el: bool,
        xl: bool,
        es: bool,
        xs: bool,
        sig: SignalArrays | None,
        ts_ns: int | None = None,
    ) -> None:
        assert sig is not None
        if self.node.stopped is not None:
            return  # trading stopped for good (the equity reached zero): signals ignored
        pos = self.pos
        if (pos > 0 and (xl or es)) or (pos < 0 and (xs or el)):
            self._cancel_children()
            side = OrderSide.SELL if pos > 0 else OrderSide.BUY
            self.submit_order(
                self.market(self.instrument_id, side, abs(pos), reduce_only=True), tag="signal"
            )
        elif pos != 0:
            return
        want = 1 if (el and not es and not xl) else (-1 if (es and not el and not xs) else 0)
        if want == 0:
            return
        side = OrderSide.BUY if want > 0 else OrderSide.SELL
        etype = int(_pick(sig.entry_type, j))
        sl = _pick(sig.stop_loss, j)
        tp = _pick(sig.take_profit, j)
        ts = _pick(sig.trailing_stop, j)
        qty = self._provisional_qty()
        stop_loss = sl if sl > 0 else None
        take_profit = tp if tp > 0 else None
        trailing_stop = ts if ts > 0 else None
        sizer: Sizer | None
        if self.size_mode == "risk":
            profile, instrument = self._risk
            if stop_loss is None or profile is None or instrument is None:
                self.rejected.append((self.node.bar_index, float(want), 0, NO_STOP))
                return
            sizer = RiskSizer(stop_loss, side.sign, profile, instrument, self._leverage)
        elif self.size_mode == "fixed" and self._fixed_qty is not None:
            sizer = None
        else:
            sizer = self._quantity
        if etype == _MARKET:
            order = self.market(self.instrument_id, side, qty)
        else:
            level = _pick(sig.entry_price, j)
            if not level > 0:
                self.rejected.append((j, float(want), etype, "invalid entry price"))
                return
            if ts_ns is None:
                assert self.bars is not None
                ts_ns = int(self.bars.time[j])
            expire = ts_ns + 2 * self.timeframe_ns  # the end of the next bar
            opts: dict[str, Any] = {
                "time_in_force": TimeInForce.GTD,
                "expire_time_ns": expire,
            }
            if etype == _LIMIT:
                order = self.limit(self.instrument_id, side, qty, to_decimal(level), **opts)
            else:
                order = self.stop_market(self.instrument_id, side, qty, to_decimal(level), **opts)
            self.pending = order.client_order_id
        self.submit_bracket(
            order, tag="entry", sizer=sizer, stop_loss=stop_loss, take_profit=take_profit,
            trailing_stop=trailing_stop,
        )  # fmt: skip

    # ---------------------------------------------------------------- sizing
    def _provisional_qty(self) -> Decimal:
        """The fixed quantity, or a placeholder that the venue sizes at the fill."""
        if self.size_mode == "fixed" and self._fixed_qty is not None:
            return self._fixed_qty
        return Decimal(1)

    # ---------------------------------------------------------------- order events
    def _cancel_children(self) -> None:
        children, self.children = self.children, []
        for cid in children:
            self.cancel_order(cid)

    def on_fill(self, order: Order, fill: OrderFilled) -> None:
        self.pos += order.side.sign * fill.last_qty
        cid = order.client_order_id
        if cid == self.pending:
            self.pending = None
        if order.parent_order_id is not None:
            # a bracket leg filled: the node cancels its siblings
            self.children = []
        if self.pos == 0:
            self.children = []
        else:
            node = self.node
            self.children = [
                c
                for c, o in node._open.items()
                if o.parent_order_id == cid and o.strategy_id == self.strategy_id
            ] or self.children

    def on_liquidation(self, liquidation: Any) -> None:
        """The venue liquidated the position (a `sapphire.sim.liquidation.Liquidation`,
        booked on the node's portfolio): flat, its bracket legs already canceled."""
        if liquidation.instrument_id == self.instrument_id:
            self.pos = Decimal(0)
            self.children = []

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        cid = order.client_order_id
        if order.is_terminal:
            if cid == self.pending:
                self.pending = None
            if cid in self.children:
                self.children.remove(cid)
