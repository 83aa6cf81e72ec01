"""`ExchangeState`: the local Bybit exchange's markets, account, orders and executions.

Matching and accounting are Sapphire's simulated bar venue (`sapphire.sim.venue`), the
same one paper trading drives: one `SimulatedVenue` lists every market (a USDT linear
perpetual and a spot pair by default) and books their fills in one USDT `Account`, as a
Bybit unified account does. Every market replays the same bars
(`sapphire.venues.exchange.market.BarReplay`), one bar at a time: `advance` matches the
working orders against the next bar.

What fills when (the bar venue's rules, docs/backtest.md):

- a market order fills at the next bar's open (taker fee), after `advance`;
- a limit order rests and fills where the bar's OHLC path reaches its price (maker fee;
  a bar opening through it fills at the open);
- a conditional (`triggerPrice`) order whose direction agrees with its side (a buy
  triggered on a rise, a sell on a fall) is a stop: a market one fills at the trigger
  (or the open when the bar gaps past it, taker fee), a limit one then rests at its
  price. A conditional against its side (a sell triggered on a rise: a take profit)
  is a limit order (maker fee): a market one at the trigger price, a limit buy at the
  lower of its price and the trigger, a limit sell at the higher (the market passes the
  trigger first);
- IOC and FOK limit orders meet the next bar's open: they fill there completely when
  the open is at or better than their price (there is no depth to fill partially
  against), else they are canceled;
- a post-only order that would take liquidity at once (a buy at or above the best ask,
  a sell at or below the best bid of the synthetic book) is canceled at once, and when
  a bar opens through it;
- a reduce-only order is cut to the position at its fill, canceled if nothing is left.

Times: signatures, the answer envelope, orders, executions and positions use the wall
clock (`clock`, ms); market data carries the recorded times of the replayed bars.

Every change is published to `subscribe`rs as ``(topic, data)``: topics `order`,
`execution`, `position`, `wallet` (data in the REST shape of `sapphire.venues.exchange.
views`) and `bar` (a bar was replayed); the WebSocket streams hang off this. Listeners
run under `lock` and must only queue what they get.

Persistence: with a `journal` (`sapphire.venues.exchange.journal`), every replayed bar
and every state-changing request (`perform`) is written down, each with one clock
reading for all it changes, and `restore` rebuilds the state from it.

Simplifications, all visible in the answers: the mark and index prices are the last
price; no funding is paid and nothing is liquidated (`liqPrice` is empty); spot fees are
charged in the quote coin (Bybit takes a spot buy's fee in the base coin); positions are
one-way (`positionIdx` 0) at one leverage for every linear market.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    VenueOrderId,
)
from sapphire.sim.venue import SimulatedVenue
from sapphire.venues.exchange import views
from sapphire.venues.exchange.auth import Credentials
from sapphire.venues.exchange.errors import (
    BAD_PARAM,
    LEVERAGE_MARGIN,
    LEVERAGE_UNCHANGED,
    BybitError,
)
from sapphire.venues.exchange.market import BarReplay, ReplayClock

if TYPE_CHECKING:
    from sapphire.venues.exchange.journal import Journal

__all__ = [
    "LINEAR",
    "SPOT",
    "ExchangeState",
    "Market",
    "OrderRecord",
    "default_markets",
    "markets_for",
]

SPOT, LINEAR = "spot", "linear"
_ZERO = Decimal(0)
_MS = 1_000_000
#: why the venue canceled an order, as Bybit's rejectReason
_REASONS = {
    "post-only order would take liquidity": "EC_PostOnlyWillTakeLiquidity",
    "reduce-only order would not reduce the position": "EC_ReduceOnlyRuleNotSatisfied",
    "insufficient margin": "EC_InsufficientBalance",
}


@dataclass(frozen=True)
class Market:
    """One listed market: Bybit's category and symbol, and Sapphire's instrument."""

    category: str  # "spot" | "linear"
    symbol: str  # Bybit's id, e.g. "BTCUSDT"
    instrument: Instrument

    @property
    def is_spot(self) -> bool:
        return self.category == SPOT


def default_markets() -> list[Market]:
    """BTCUSDT as a USDT linear perpetual and as spot, with Bybit's filters and its base
    fee tier (linear 0.02 % maker / 0.055 % taker, spot 0.1 %)."""
    linear = Instrument(
        InstrumentId("BTC/USDT:USDT", "BYBIT"), "BTC", "USDT", "USDT",
        ContractType.PERPETUAL, Decimal("0.1"), Decimal("0.001"),
        maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.00055"),
        min_qty=Decimal("0.001"), max_qty=Decimal("1190"), min_notional=Decimal("5"),
    )  # fmt: skip
    spot = Instrument(
        InstrumentId("BTC/USDT", "BYBIT"), "BTC", "USDT", "USDT",
        ContractType.SPOT, Decimal("0.01"), Decimal("0.000001"),
        maker_fee=Decimal("0.001"), taker_fee=Decimal("0.001"),
        min_qty=Decimal("0.000048"), max_qty=Decimal("71.73956"), min_notional=Decimal("1"),
    )  # fmt: skip
    return [Market(LINEAR, "BTCUSDT", linear), Market(SPOT, "BTCUSDT", spot)]


def markets_for(symbol: str, price: float) -> list[Market]:
    """`symbol` (``BASEUSDT``) as a USDT linear perpetual and as spot: `default_markets`
    for BTCUSDT; for another base, the same fees and minimum notional, a tick of about a
    hundred-thousandth of `price` and a lot of about 10 to 100 USDT (linear, a
    thousandth of it on spot), both powers of ten (Bybit's own filters are not known
    here)."""
    if symbol == "BTCUSDT":
        return default_markets()
    if not symbol.endswith("USDT") or not symbol[:-4].isalnum() or not symbol.isupper():
        raise ValueError(f"symbol={symbol!r} is invalid: expected BASEUSDT, e.g. ETHUSDT")
    if not price > 0:
        raise ValueError(f"price={price!r} is invalid: expected > 0")
    base, digits = symbol[:-4], math.floor(math.log10(price))
    tick, lot = Decimal(10) ** (digits - 5), Decimal(10) ** (1 - digits)
    out = []
    for market in default_markets():
        inst = market.instrument
        step = lot if market.category == LINEAR else lot / 1000
        suffix = ":USDT" if market.category == LINEAR else ""
        listed = replace(
            inst, id=InstrumentId(f"{base}/USDT{suffix}", inst.id.venue), base=base,
            tick_size=tick, lot_size=step, min_qty=step, max_qty=step * 1_000_000,
        )  # fmt: skip
        out.append(Market(market.category, symbol, listed))
    return out


@dataclass(eq=False)
class OrderRecord:
    """One order as Bybit shows it; `order` is the domain order the venue's events move."""

    order: Order
    market: Market
    order_id: str
    link_id: str
    side: str  # "Buy" | "Sell"
    order_type: str  # "Market" | "Limit"
    time_in_force: str  # "GTC" | "IOC" | "FOK" | "PostOnly"
    qty: Decimal  # as given: the quote amount of a spot market buy in quoteCoin
    price: Decimal | None
    trigger_price: Decimal | None
    trigger_direction: int  # 0 none, 1 rise, 2 fall
    reduce_only: bool
    market_unit: str  # "" | "baseCoin" | "quoteCoin" (spot market orders)
    created_ms: int
    updated_ms: int
    last_on_created: Decimal
    cum_value: Decimal = _ZERO
    cum_fee: Decimal = _ZERO
    reject_reason: str = "EC_NoError"
    cancel_type: str = "UNKNOWN"
    immediate: bool = False  # an IOC/FOK limit waiting for the next price
    fills: int = 0

    @property
    def is_open(self) -> bool:
        return not self.order.is_terminal

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price is not None


@dataclass
class _PositionTimes:
    created_ms: int
    updated_ms: int
    realized_before: Decimal = field(default=_ZERO)  # the book's realised PnL at opening


class ExchangeState:
    """The exchange's whole state (see the module docstring); thread-safe via `lock`.

    `frame`: the replayed bars (default: the bundled BTC month); `history`: bars already
    replayed at the start (what klines and tickers show first); `cash` USDT in the
    account; `leverage` of linear positions; `clock` wall time in ms.
    """

    def __init__(
        self,
        frame: pd.DataFrame | None = None,
        *,
        credentials: Iterable[Credentials] | None = None,
        cash: Decimal | int | str = 100_000,
        leverage: int = 10,
        history: int = 1440,
        markets: Iterable[Market] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if frame is None:
            from sapphire.data import load_ohlcv

            frame, _report = load_ohlcv("sample")
        if not isinstance(leverage, int) or not 1 <= leverage <= 100:
            raise ValueError(f"leverage={leverage!r} is invalid: expected an int in 1..100")
        self.replay = BarReplay(frame, start=history)
        listed = list(markets) if markets is not None else default_markets()
        self.markets = {(m.category, m.symbol): m for m in listed}
        self.by_instrument = {m.instrument.id: m for m in listed}
        self.credentials = {c.key: c for c in credentials or [Credentials.generate()]}
        self.leverage = Decimal(leverage)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.settle = "USDT"
        self.venue = SimulatedVenue(
            [m.instrument for m in listed], cash=Decimal(cash), currency=self.settle,
            leverage=float(leverage), name="BYBIT",
        )  # fmt: skip
        self.venue.on_event = self._on_event
        self.lock = threading.RLock()
        self.orders: dict[str, OrderRecord] = {}
        self.link_ids: dict[str, str] = {}
        self.executions: list[dict[str, object]] = []
        self.positions: dict[InstrumentId, _PositionTimes] = {}
        self.immediate: list[OrderRecord] = []
        self._listeners: list[Callable[[str, dict[str, object]], None]] = []
        self.journal: Journal | None = None
        self._new_ids: list[str] | None = None  # the order ids the request being performed made
        self._replayed_ids: list[str] = []  # the recorded ids a restored request takes
        self._bar(self.replay.position - 1)  # the venue learns the last price

    # ------------------------------------------------------------------ events out
    def subscribe(self, listener: Callable[[str, dict[str, object]], None]) -> None:
        """Call `listener(topic, data)` on every change (see the module docstring)."""
        self._listeners.append(listener)

    def publish(self, topic: str, data: dict[str, object]) -> None:
        for listener in list(self._listeners):
            listener(topic, data)

    # ------------------------------------------------------------------ prices
    def market(self, category: str, symbol: str) -> Market:
        """The listed market, or BybitError 10001 naming what is listed."""
        found = self.markets.get((category, symbol))
        if found is None:
            listed = ", ".join(f"{c}/{s}" for c, s in self.markets)
            raise BybitError(
                BAD_PARAM, f"symbol {symbol!r} is not listed in category {category!r}: {listed}"
            )
        return found

    def last(self, market: Market) -> Decimal:
        """The last price on the market's tick grid."""
        return market.instrument.make_price(self.replay.last, quantize=True)

    def touch(self, market: Market) -> tuple[Decimal, Decimal]:
        """Best bid and ask of the synthetic book: one tick either side of the last."""
        last, tick = self.last(market), market.instrument.tick_size
        return last - tick, last + tick

    # ------------------------------------------------------------------ the clock
    def advance(self) -> bool:
        """Replay the next bar: IOC/FOK orders meet its open, then every market's working
        orders are matched along it. False when the data is exhausted."""
        with self.lock:
            r = self.replay
            if r.done:
                return False
            now = self.clock()
            with self._frozen(now):
                i = r.position
                self._release_immediate(float(r.open[i]))
                self._bar(i)
                r.position = i + 1
                if self.journal is not None:
                    self.journal.append({"op": "advance", "now": now})
                self.publish("bar", {"start": int(r.time_ms[i]), "close": float(r.close[i])})
            return True

    # ------------------------------------------------------------------ persistence
    @contextmanager
    def _frozen(self, now: int) -> Iterator[None]:
        """`clock` reads `now` for the duration: one time for everything one change makes
        (so that replaying it gives the same times)."""
        wall = self.clock
        self.clock = lambda: now
        try:
            yield
        finally:
            self.clock = wall

    def perform(
        self, op: str, handler: Callable[[ExchangeState, Any], object], params: Mapping[str, Any]
    ) -> object:
        """Run the state-changing request `op` (`handler(self, params)`) under the lock
        at one clock reading, and write it to the journal with its outcome."""
        with self.lock:
            now = self.clock()
            ids: list[str] = []
            self._new_ids = ids
            code = 0
            try:
                with self._frozen(now):
                    return handler(self, params)
            except BybitError as exc:
                code = exc.code
                raise
            except Exception:
                code = -1  # a fault of the exchange's own: replayed, it fails again
                raise
            finally:
                self._new_ids = None
                if self.journal is not None:
                    entry = {"op": op, "now": now, "params": dict(params), "ids": ids, "code": code}
                    self.journal.append(entry)

    def restore(
        self, journal: Journal, handlers: Mapping[str, Callable[[ExchangeState, Any], object]]
    ) -> int:
        """Replay `journal`'s entries (through `handlers`, by op), then write every later
        change to it; the number of entries replayed. A ValueError names the first entry
        whose outcome differs from the recorded one (the journal is another exchange's)."""
        with self.lock:
            for number, entry in enumerate(journal.entries, 2):
                op = str(entry.get("op"))
                with self._frozen(int(entry["now"])):
                    if op == "advance":
                        code = 0 if self.advance() else -1
                    elif op in handlers:
                        self._replayed_ids = [str(i) for i in entry.get("ids", [])]
                        try:
                            handlers[op](self, entry.get("params", {}))
                            code = 0
                        except BybitError as exc:
                            code = exc.code
                        except Exception:
                            code = -1
                    else:
                        raise ValueError(f"{journal.path} line {number}: unknown op {op!r}")
                if code != entry.get("code", 0):
                    raise ValueError(
                        f"{journal.path} line {number}: {op} gives retCode {code} when "
                        f"replayed but {entry.get('code', 0)} when recorded: the journal does "
                        "not match this exchange's data or markets"
                    )
            self._replayed_ids = []
            self.journal = journal
            return len(journal.entries)

    def start_clock(self, speed: float, bars: int | None = None) -> ReplayClock:
        """Replay at `speed` times real time (60: one 1-minute bar per second) on a
        thread, `bars` of them at most; `stop()` the returned clock to pause."""
        if not speed > 0:
            raise ValueError(f"speed={speed!r} is invalid: expected > 0")
        step = self.advance
        if bars is not None:
            end = self.replay.position + bars

            def step() -> bool:
                return self.replay.position < end and self.advance()

        clock = ReplayClock(step, self.replay.timeframe_ms / 1000 / speed)
        clock.start()
        return clock

    def _bar(self, i: int) -> None:
        r = self.replay
        ts = int(r.time_ms[i]) * _MS
        end = ts + r.timeframe_ms * _MS
        o, h, lo, c = float(r.open[i]), float(r.high[i]), float(r.low[i]), float(r.close[i])
        for m in self.markets.values():
            self.venue.process_bar(m.instrument.id, ts, o, h, lo, c, end)

    def _release_immediate(self, open_px: float) -> None:
        """IOC/FOK limit orders at the next open: a market order when the open is at or
        better than their price, else canceled."""
        waiting, self.immediate = self.immediate, []
        for rec in waiting:
            if not rec.is_open:
                continue
            assert rec.price is not None
            price = float(rec.price)
            if (open_px <= price) if rec.side == "Buy" else (open_px >= price):
                twin = Order.market(
                    rec.order.client_order_id, rec.order.strategy_id, rec.order.instrument_id,
                    rec.order.side, rec.order.quantity, ts_init=rec.order.ts_init,
                    reduce_only=rec.reduce_only,
                )  # fmt: skip
                self.venue.submit_order(twin)
            else:
                self.cancel_here(rec, "EC_NoImmediateQtyToFill")

    # ------------------------------------------------------------------ orders
    def new_order_id(self) -> str:
        """A new order id (a recorded one while restoring)."""
        if self._replayed_ids:
            return self._replayed_ids.pop(0)
        order_id = str(uuid.uuid4())
        if self._new_ids is not None:
            self._new_ids.append(order_id)
        return order_id

    def add(self, rec: OrderRecord) -> None:
        """Register a new order (already validated), submitted to no one yet."""
        self.orders[rec.order_id] = rec
        if rec.link_id:
            self.link_ids[rec.link_id] = rec.order_id
        rec.order.apply(
            OrderSubmitted(
                ts_ns=self.replay.now_ms * _MS, client_order_id=rec.order.client_order_id
            )
        )

    def cancel_here(self, rec: OrderRecord, reason: str, cancel_type: str = "UNKNOWN") -> None:
        """Cancel an order the venue does not hold (a post-only that would take, an IOC
        that cannot fill, one waiting for the next open)."""
        cid = rec.order.client_order_id
        ts = self.replay.now_ms * _MS
        rec.reject_reason = reason
        rec.cancel_type = cancel_type
        if rec.order.venue_order_id is None:
            self._on_event(
                OrderAccepted(
                    ts_ns=ts, client_order_id=cid, venue_order_id=VenueOrderId(rec.order_id)
                )
            )
        self._on_event(OrderCanceled(ts_ns=ts, client_order_id=cid))

    def find(self, order_id: str | None, link_id: str | None) -> OrderRecord | None:
        if order_id:
            return self.orders.get(order_id)
        if link_id:
            oid = self.link_ids.get(link_id)
            return None if oid is None else self.orders.get(oid)
        return None

    def _on_event(self, event: OrderEvent) -> None:
        cid = str(event.client_order_id)
        rec = self.orders[cid]
        rec.order.apply(event)
        now = self.clock()
        rec.updated_ms = now
        if isinstance(event, OrderCanceled | OrderRejected):
            reason = self.venue.reasons.get(ClientOrderId(cid))
            if reason is not None:
                rec.reject_reason = _REASONS.get(reason, "EC_Others")
        if isinstance(event, OrderFilled):
            self._filled(rec, event, now)
        self.publish("order", views.order(self, rec))

    def _filled(self, rec: OrderRecord, fill: OrderFilled, now: int) -> None:
        inst = rec.market.instrument
        value = fill.last_qty * fill.last_px * inst.multiplier
        rec.cum_value += value
        rec.cum_fee += fill.fee
        rec.fills += 1
        execution = views.execution(self, rec, fill, value, now)
        self.executions.append(execution)
        self.publish("execution", execution)
        if not rec.market.is_spot:
            times = self.positions.get(inst.id)
            if self.venue.position(inst.id) == 0:
                self.positions.pop(inst.id, None)  # closed: a new one starts afresh
            elif times is None:
                pos = self.venue.account.positions.get(inst.id)
                before = pos.realized_pnl if pos is not None else _ZERO
                self.positions[inst.id] = _PositionTimes(now, now, before)
            else:
                times.updated_ms = now
            self.publish("position", views.position(self, rec.market))
        self.publish("wallet", views.wallet(self))

    # ------------------------------------------------------------------ account
    def set_leverage(self, leverage: Decimal) -> None:
        """Change the leverage of the linear positions (and of the venue's margin check);
        BybitError 110043 when unchanged, 110044 when the margin would not be covered."""
        if leverage == self.leverage:
            raise BybitError(LEVERAGE_UNCHANGED, "leverage not modified")
        before = self.leverage
        self._apply_leverage(leverage)
        if self.available(self.settle) < 0:
            self._apply_leverage(before)
            raise BybitError(
                LEVERAGE_MARGIN,
                f"Insufficient available margin: leverage {leverage} needs more initial "
                f"margin than the account's {views.num(self.available(self.settle))} available",
            )
        for m in self.markets.values():
            if not m.is_spot and self.position_qty(m) != 0:
                self.publish("position", views.position(self, m))
        self.publish("wallet", views.wallet(self))

    def _apply_leverage(self, leverage: Decimal) -> None:
        self.leverage = leverage
        self.venue.leverage = leverage
        self.venue.account.leverage = leverage

    def mark(self, market: Market) -> Decimal:
        return self.last(market)

    def position_qty(self, market: Market) -> Decimal:
        return self.venue.position(market.instrument.id)

    def unrealized(self) -> Decimal:
        """Unrealised PnL of the linear positions at their marks."""
        total = _ZERO
        for m in self.markets.values():
            if m.is_spot:
                continue
            pos = self.venue.account.positions.get(m.instrument.id)
            if pos is not None and pos.quantity != 0:
                total += pos.unrealized_pnl(self.mark(m))
        return total

    def position_im(self) -> Decimal:
        total = _ZERO
        for m in self.markets.values():
            if not m.is_spot:
                total += abs(self.position_qty(m)) * self.mark(m) / self.leverage
        return total

    def order_im(self) -> Decimal:
        """Initial margin of the open linear orders that would open risk."""
        total = _ZERO
        for rec in self.orders.values():
            if rec.is_open and not rec.market.is_spot and not rec.reduce_only:
                total += rec.order.leaves_qty * self._price_of(rec) / self.leverage
        return total

    def locked(self, coin: str) -> Decimal:
        """What open spot orders hold: the quote a buy may spend (fee included), the base
        a sell may deliver."""
        total = _ZERO
        for rec in self.orders.values():
            if not (rec.is_open and rec.market.is_spot):
                continue
            inst = rec.market.instrument
            if rec.side == "Buy" and coin == inst.quote:
                if rec.market_unit == "quoteCoin":
                    total += rec.qty
                else:
                    total += rec.order.leaves_qty * self._price_of(rec) * (1 + inst.taker_fee)
            elif rec.side == "Sell" and coin == inst.base:
                total += rec.order.leaves_qty
        return total

    def available(self, coin: str) -> Decimal:
        """What a new order may use: the balance, plus unrealised PnL and less the
        margins of positions and orders for the settlement coin, less what open spot
        orders hold."""
        free = self.venue.account.balance(coin) - self.locked(coin)
        if coin == self.settle:
            free += self.unrealized() - self.position_im() - self.order_im()
        return free

    def _price_of(self, rec: OrderRecord) -> Decimal:
        if rec.order_type == "Limit" and rec.price is not None:
            return rec.price
        if rec.trigger_price is not None:
            return rec.trigger_price
        return self.last(rec.market)
