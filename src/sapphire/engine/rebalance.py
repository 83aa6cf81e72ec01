"""`Rebalancer`: an event strategy that holds target weights across instruments.

On a schedule (every N portfolio bars, or the first bar of each calendar period: "4h",
"1D", "1W", "1M") it reads the node's equity, its own positions and the last prices,
works out the signed quantities that move each position to its weight of the equity
(`sapphire.portfolio.allocation.target_orders`, rounded down to each instrument's lot)
and sends them as market orders through the node, so the pre-trade risk engine checks
every one. The weights are fixed, or computed at each rebalance by an allocation method
(`sapphire.portfolio.allocation.allocate`) over the last `lookback` returns of the
instruments' closes. A drift band (`drift`) leaves alone the instruments whose weight is
within that distance of its target.

A rebalance frees cash before it spends it: the reductions go out first and the
increases only at the first portfolio bar after every reduction has ended (filled,
rejected or canceled), sized again at that bar's prices and equity. An instrument whose
reduction was refused is left out of the second step, and a refused order is never sent
again by the same rebalance: each `Rebalance` in `history` lists what it sent and what
the risk engine or the venue refused, with the reason.

A "portfolio bar" is a bar time at which every instrument's bar has closed (the
rebalancer subscribes itself to the bars of all its instruments), so the prices a
rebalance reads are all of the same close. A bar schedule counts by the node's bar
index (the bar's place in the data) and fires at the first portfolio bar of each block
of N, so a resumed session keeps its schedule even when bars went by while it was down.

Resume: `state()` is what a session writes ahead (`on_state` is called at the end of
each portfolio bar and before each step that sends orders) and `restore_state` takes it
back; a rebalance interrupted by a crash is carried on at the next portfolio bar.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from sapphire.domain import (
    Bar,
    InstrumentId,
    Order,
    OrderDenied,
    OrderEvent,
    OrderRejected,
    OrderSide,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine.strategy import EventStrategy
from sapphire.portfolio.allocation import METHODS, allocate, target_orders

__all__ = ["REBALANCE_TAG", "Rebalance", "Rebalancer", "RefusedOrder", "Schedule", "parse_weights"]

#: the tag of every order a `Rebalancer` sends
REBALANCE_TAG = "rebalance"

_ZERO = Decimal(0)
_NS_PER_MIN = 60 * 1_000_000_000
_UNITS = {"min": _NS_PER_MIN, "h": 60 * _NS_PER_MIN, "D": 1440 * _NS_PER_MIN}
_PERIOD = re.compile(r"^(\d+)(min|h|D|W|M)$")
#: weights may sum to 1 plus this much (floats from an allocation method)
_SUM_TOLERANCE = 1e-9


class Schedule:
    """When a rebalance is due: every `every` bars (an int: the first bar of each block of
    N bar indices, i.e. bar 0, N, 2N... when none is missing), or at the first bar of
    each calendar period of the bar open times (a string: "30min", "4h", "1D", "1W"
    weeks from Monday, "1M" calendar months; UTC)."""

    def __init__(self, every: int | str) -> None:
        self.every = every
        self.bars: int | None = None
        self._count = 0
        self._unit = ""
        #: the block or period of the last bar seen (kept by `Rebalancer.state`)
        self.last_key: int | None = None
        if isinstance(every, int) and not isinstance(every, bool):
            if every < 1:
                raise ValueError(f"every={every!r} is invalid: expected >= 1 bars or a period")
            self.bars = every
            return
        match = _PERIOD.match(every) if isinstance(every, str) else None
        if match is None or int(match.group(1)) < 1:
            raise ValueError(
                f"every={every!r} is invalid: expected a number of bars >= 1 or a period "
                "such as '30min', '4h', '1D', '1W' or '1M'"
            )
        self._count = int(match.group(1))
        self._unit = match.group(2)

    def _key(self, ts_ns: int) -> int:
        """The number of the period holding `ts_ns` (periods counted from the epoch)."""
        n, unit = self._count, self._unit
        if unit in _UNITS:
            return ts_ns // (n * _UNITS[unit])
        days = ts_ns // _UNITS["D"]
        if unit == "W":
            return (days + 3) // 7 // n  # 1970-01-01 was a Thursday: weeks from Monday
        when = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
        return (when.year * 12 + when.month - 1) // n

    def due(self, index: int, ts_ns: int) -> bool:
        """Whether the portfolio bar number `index` (from 0) opening at `ts_ns` rebalances;
        called once per portfolio bar, in order."""
        key = index // self.bars if self.bars is not None else self._key(ts_ns)
        fire = key != self.last_key
        self.last_key = key
        return fire


@dataclass(frozen=True)
class RefusedOrder:
    """A rebalancing order the risk engine denied (`stage` "denied") or the venue
    rejected ("rejected"); `quantity` is signed (< 0 sells)."""

    instrument_id: InstrumentId
    quantity: Decimal
    reason: str
    client_order_id: str
    stage: str


@dataclass
class Rebalance:
    """One scheduled rebalance: the bar it fired on, the target `weights` of the
    instruments it trades (those outside the drift band), the target quantities of its
    last step, the orders it sent and the ones refused. `skipped` says why nothing was
    traded when the schedule fired (e.g. every weight within the drift band)."""

    ts_ns: int
    bar: int
    equity: Decimal
    weights: dict[InstrumentId, float]
    targets: dict[InstrumentId, Decimal] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)
    refused: list[RefusedOrder] = field(default_factory=list)
    skipped: str | None = None
    done: bool = False


class Rebalancer(EventStrategy):
    """Holds `instruments` at target weights of the node's equity, rebalanced on `every`.

    Give either `weights` (instrument -> fraction of the equity, keyed by `InstrumentId`,
    its text "SYMBOL@VENUE" or its symbol; negative = short; the absolute weights sum to
    at most 1, the rest stays cash) or `method` (one of
    `sapphire.portfolio.allocation.METHODS`, fitted on the last `lookback` returns of the
    closes at each rebalance, each weight capped at `max_weight`, scaled to `budget` of
    the equity). `drift` > 0 trades only the instruments whose weight is off its target
    by more than `drift`.
    """

    def __init__(
        self,
        instruments: Sequence[InstrumentId],
        *,
        weights: Mapping[InstrumentId, float] | Mapping[str, float] | None = None,
        method: str | None = None,
        lookback: int = 100,
        max_weight: float | None = None,
        budget: float = 1.0,
        every: int | str = 1,
        drift: float = 0.0,
        strategy_id: str = "rebalance",
    ) -> None:
        super().__init__(strategy_id)
        self.instruments = _instruments(instruments)
        if (weights is None) == (method is None):
            raise ValueError("give either weights or method (one of them, not both)")
        self.weights = None if weights is None else _weights(weights, self.instruments)
        if method is not None and method not in METHODS:
            raise ValueError(f"method={method!r} is invalid: expected one of {', '.join(METHODS)}")
        self.method = method
        if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 3:
            raise ValueError(f"lookback={lookback!r} is invalid: expected an int >= 3 returns")
        self.lookback = lookback
        self.max_weight = max_weight
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 1:
            raise ValueError(f"budget={budget!r} is invalid: expected a fraction in (0, 1]")
        self.budget = float(budget)
        if isinstance(drift, bool) or not isinstance(drift, int | float) or not 0 <= drift < 1:
            raise ValueError(f"drift={drift!r} is invalid: expected a fraction in [0, 1)")
        self.drift = float(drift)
        self.schedule = Schedule(every)
        #: every rebalance the schedule fired, in order
        self.history: list[Rebalance] = []
        self.portfolio_bars = 0
        self._closes: deque[list[float]] = deque(maxlen=lookback + 1)
        self._bar_ts: int | None = None
        self._bar_close: dict[InstrumentId, float] = {}
        self._pending: Rebalance | None = None  # waiting for its reductions to end
        self._by_order: dict[str, Rebalance] = {}
        # the rebalance sending orders or waiting for its reductions, and its step
        self._active: Rebalance | None = None
        self._step: str | None = None
        self._redo = False  # restored mid-rebalance: carry it on at the next portfolio bar
        #: called with `state()` at the end of each portfolio bar and before each step
        #: that sends orders (a paper session writes it ahead, to resume from)
        self.on_state: Callable[[dict[str, Any]], None] | None = None

    # ---------------------------------------------------------------- callbacks
    def on_start(self) -> None:
        node = self.node
        for iid in self.instruments:
            node.portfolio.instrument(iid)  # a clear error for an instrument not listed
            if self not in node.bar_loop.bar_subs.get(iid, ()):
                node.bar_loop.subscribe(self, iid)

    def on_bar(self, bar: Bar) -> None:
        if bar.ts_ns != self._bar_ts:
            # a new bar time (an instrument missing a bar at the previous one: that time
            # is not a portfolio bar)
            self._bar_ts = bar.ts_ns
            self._bar_close = {}
        if bar.instrument_id in self.instruments:
            self._bar_close[bar.instrument_id] = bar.close
        if len(self._bar_close) == len(self.instruments):
            self._portfolio_bar(bar.ts_ns)

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        if type(event) is OrderRejected:
            record = self._by_order.get(str(order.client_order_id))
            if record is not None:
                record.refused.append(_refused(order, event.reason, "rejected"))

    # ---------------------------------------------------------------- the schedule
    def _portfolio_bar(self, ts_ns: int) -> None:
        # the node's bar index (the bar's place in the data: a resumed session keeps its
        # schedule), else the count of portfolio bars
        node_index = self.node.bar_index
        index = node_index if node_index >= 0 else self.portfolio_bars
        self.portfolio_bars += 1
        self._closes.append([self._bar_close[iid] for iid in self.instruments])
        if self._redo and not self.open_orders():
            # restored in the middle of a rebalance: its orders that reached the venue are
            # in the positions, so doing the step again sends only what is missing
            self._redo = False
            record = self._active
            assert record is not None
            if self._step == "reduce":
                self._reduce(record)
            else:
                self._increase(record)
        elif self._pending is not None and not self.open_orders():
            record, self._pending = self._pending, None
            self._increase(record)
        if self.schedule.due(index, ts_ns) and not (
            self.method is not None and len(self._closes) <= self.lookback
        ):  # (with a method, the first rebalance waits for `lookback` returns)
            record = Rebalance(ts_ns, index, self._equity(), self._targets())
            self.history.append(record)
            busy = self._pending or (self._active if self._redo else None)
            if busy is not None:
                record.skipped = f"the rebalance of bar {busy.bar} still waits for its reductions"
            else:
                self._reduce(record)
        self._save()

    # ---------------------------------------------------------------- resume
    def state(self) -> dict[str, Any]:
        """What a resumed session needs to carry on, JSON-ready: the schedule's place,
        the closes of the lookback, and the rebalance in progress (its step, bar, equity
        and target weights)."""
        record = self._active
        return {
            "portfolio_bars": self.portfolio_bars,
            "last_key": self.schedule.last_key,
            "closes": [list(c) for c in self._closes],
            "step": self._step,
            "rebalance": None
            if record is None
            else {
                "ts_ns": record.ts_ns,
                "bar": record.bar,
                "equity": str(record.equity),
                "weights": {str(iid): w for iid, w in record.weights.items()},
            },
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Carry on from a `state()` (before the node starts). A rebalance that was
        sending orders, or waiting for its reductions, goes on at the next portfolio bar
        once none of its orders is open: its step is worked out again from the positions,
        so an order that reached the venue before the crash is not sent twice."""
        try:
            self.portfolio_bars = int(state["portfolio_bars"])
            key = state["last_key"]
            self.schedule.last_key = None if key is None else int(key)
            self._closes.clear()
            self._closes.extend([float(x) for x in row] for row in state["closes"])
            step, saved = state["step"], state["rebalance"]
            names = {str(iid): iid for iid in self.instruments}
            if step is not None:
                record = Rebalance(
                    int(saved["ts_ns"]), int(saved["bar"]), Decimal(saved["equity"]),
                    {names[k]: float(w) for k, w in saved["weights"].items()},
                )  # fmt: skip
                self.history.append(record)
                self._active, self._step, self._redo = record, str(step), True
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"rebalancer state {state!r:.200} is invalid: {exc!r}") from None

    def _save(self) -> None:
        if self.on_state is not None:
            self.on_state(self.state())

    def _targets(self) -> dict[InstrumentId, float]:
        if self.weights is not None:
            # an instrument without a weight is held at zero
            return {iid: self.weights.get(iid, 0.0) for iid in self.instruments}
        closes = np.asarray(self._closes, dtype=np.float64)
        returns = pd.DataFrame(
            closes[1:] / closes[:-1] - 1.0, columns=[str(i) for i in self.instruments]
        )
        assert self.method is not None
        w = allocate(returns, self.method, max_weight=self.max_weight)
        return {iid: float(w.iloc[k]) * self.budget for k, iid in enumerate(self.instruments)}

    # ---------------------------------------------------------------- the two steps
    def _reduce(self, record: Rebalance) -> None:
        """The first step: pick the instruments off target by more than the drift band,
        send the orders that reduce their positions; the increases follow when those
        ended (at once when there are none)."""
        equity = record.equity
        if equity <= 0:
            record.skipped = f"equity {equity} <= 0: nothing to allocate"
            record.done = True
            self._active = self._step = None
            return
        prices = self._prices()
        chosen = {}
        for iid, w in record.weights.items():
            held = self.position(iid)
            notional = self.node.portfolio.instrument(iid).notional(held, prices[iid])
            current = float(notional / equity) * (1 if held >= 0 else -1)
            if abs(current - w) > self.drift:
                chosen[iid] = w
        record.weights = chosen
        if not chosen:
            record.skipped = f"every weight within the drift band {self.drift}"
            record.done = True
            self._active = self._step = None
            return
        self._active, self._step = record, "reduce"
        self._save()
        sent = False
        for iid, delta in self._deltas(chosen, equity, prices).items():
            held = self.position(iid)
            if held == 0 or (held > 0) == (delta > 0):
                continue
            # at most down to flat: a flip opens its new side in the second step
            qty = -held if abs(delta) > abs(held) else delta
            self._send(record, iid, qty)
            sent = True
        if sent:
            self._pending = record
            self._step = "increase"
            self._save()
        else:
            self._increase(record)

    def _increase(self, record: Rebalance) -> None:
        """The second step: size every chosen instrument again at the latest prices and
        equity and send the orders (reductions first, then increases); an instrument
        whose reduction was refused is left out."""
        refused = {r.instrument_id for r in record.refused}
        chosen = {iid: w for iid, w in record.weights.items() if iid not in refused}
        self._active, self._step = record, "increase"
        self._save()
        equity = self._equity()
        prices = self._prices()
        deltas = self._deltas(chosen, equity, prices)
        record.targets = {iid: Decimal(str(w)) * equity / prices[iid] for iid, w in chosen.items()}
        for iid, delta in sorted(deltas.items(), key=lambda kv: self._grows(*kv)):
            self._send(record, iid, delta)
        record.done = True
        self._active = self._step = None

    def _grows(self, iid: InstrumentId, delta: Decimal) -> bool:
        held = self.position(iid)
        return abs(held + delta) > abs(held)

    def _deltas(
        self,
        weights: Mapping[InstrumentId, float],
        equity: Decimal,
        prices: dict[InstrumentId, Decimal],
    ) -> dict[InstrumentId, Decimal]:
        by_name = {str(iid): iid for iid in weights}
        portfolio = self.node.portfolio
        out = target_orders(
            {str(iid): w for iid, w in weights.items()},
            {str(iid): self.position(iid) for iid in weights},
            {str(iid): prices[iid] for iid in weights},
            equity,
            {str(iid): portfolio.instrument(iid).lot_size for iid in weights},
        )
        return {by_name[name]: qty for name, qty in out.items()}

    def _send(self, record: Rebalance, iid: InstrumentId, qty: Decimal) -> None:
        side = OrderSide.BUY if qty > 0 else OrderSide.SELL
        order = self.market(iid, side, abs(qty))
        cid = str(order.client_order_id)
        record.orders.append(cid)
        self._by_order[cid] = record
        if not self.submit_order(order, tag=REBALANCE_TAG):
            denied = order.events[-1]
            reason = denied.reason if isinstance(denied, OrderDenied) else "denied"
            record.refused.append(_refused(order, reason, "denied"))

    # ---------------------------------------------------------------- the books
    def _prices(self) -> dict[InstrumentId, Decimal]:
        last = self.node.last
        return {iid: to_decimal(last[iid]) for iid in self.instruments}

    def _equity(self) -> Decimal:
        marks = {iid: to_decimal(px) for iid, px in self.node.last.items()}
        return self.node.portfolio.equity(marks)


def _refused(order: Order, reason: str, stage: str) -> RefusedOrder:
    qty = order.quantity if order.side is OrderSide.BUY else -order.quantity
    return RefusedOrder(order.instrument_id, qty, reason, str(order.client_order_id), stage)


def _instruments(instruments: Sequence[InstrumentId]) -> tuple[InstrumentId, ...]:
    out = tuple(instruments)
    if not out:
        raise ValueError("a Rebalancer needs at least one instrument")
    for iid in out:
        if not isinstance(iid, InstrumentId):
            raise ValueError(f"instrument {iid!r} is invalid: expected an InstrumentId")
    if len(set(out)) != len(out):
        raise ValueError(f"instruments {[str(i) for i in out]} name one instrument twice")
    return out


def _weights(
    weights: Mapping[InstrumentId, float] | Mapping[str, float],
    instruments: tuple[InstrumentId, ...],
) -> dict[InstrumentId, float]:
    """Target weights keyed by instrument, checked: known instruments, finite numbers,
    absolute values summing to at most 1."""
    names = {str(i): i for i in instruments} | {i.symbol: i for i in instruments}
    out: dict[InstrumentId, float] = {}
    for key, w in weights.items():
        iid = key if isinstance(key, InstrumentId) else names.get(str(key))
        if iid is None or iid not in instruments:
            raise ValueError(
                f"weight for {key!s} names an unknown instrument: expected one of "
                f"{', '.join(str(i) for i in instruments)}"
            )
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
            raise ValueError(f"weight {w!r} for {key!s} is invalid: expected a finite number")
        if iid in out:
            raise ValueError(f"weight for {key!s}: {iid} is given twice")
        out[iid] = float(w)
    total = sum(abs(w) for w in out.values())
    if total > 1 + _SUM_TOLERANCE:
        raise ValueError(
            f"weights {', '.join(f'{i.symbol}={w:g}' for i, w in out.items())} sum to "
            f"{total:g} (in absolute value): expected at most 1, the rest held as cash"
        )
    return out


def parse_weights(text: str) -> dict[str, float]:
    """`"ETH=0.6,ADA=0.35"` as a mapping of name to weight (the command lines' and the
    paper and live configurations' form); a ValueError names a bad item. The weights
    themselves are checked by `Rebalancer`."""
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"weights item {item!r} is invalid: expected NAME=fraction, e.g. ETH=0.6"
            ) from None
    return out
