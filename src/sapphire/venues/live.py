"""`BybitVenue`: the node's `Venue` protocol over Bybit's REST API (ccxt), spot and USDT
linear perpetuals.

Threads: the node calls `submit_order` / `cancel_order` / `amend_order` on its own
thread and they return at once; the requests run on the venue's event-loop thread (a
dedicated asyncio loop driving `ccxt.async_support`). Whatever the exchange answers
becomes `OrderEvent`s put on a queue, and `drain()` hands them to the node's `on_event`
on the node's thread: the node calls it at every bar (`process_bar`), and a live loop
calls it from a clock timer. A WebSocket stream will feed the same queue.

Order state is polled (every `poll_interval_s`): each working order is looked up by its
client order id (Bybit's `orderLinkId`) and its executions are read when its filled
quantity grew; an execution id is applied once, ever (`executions`). The node's client
order id is the orderLinkId, so every lookup and cancel works without the exchange's id.

Failures (`sapphire.venues.resilience`):

- reads and a cancel by orderLinkId are retried after a timeout or a 5xx; an order
  creation never is: an unanswered creation (or one answered "duplicate orderLinkId",
  110072: it is there already) leaves the order UNKNOWN until it is found by its
  orderLinkId (then its state is adopted), or until a lookup, made more than recvWindow
  after it was signed, does not find it: Bybit refuses a request older than recvWindow,
  so it can no longer arrive, and the order is rejected as "not received";
- requests wait for the client-side rate limiter (Bybit's per-endpoint limits); a
  10006 / HTTP 429 (refused before processing, creation included) is retried after an
  exponential back-off with jitter;
- the circuit breaker opens after consecutive failures: new orders are rejected with
  reason "circuit open" and polling stops, until a probe (the server time) succeeds
  after the cool-down;
- the clock skew is measured from `/v5/market/time` round trips at start, every
  `clock_sync_s` and after a 10002, and given to ccxt as its `timeDifference`.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderType,
    OrderUpdated,
    TradeId,
    VenueOrderId,
)
from sapphire.engine.sizing import Sizer
from sapphire.venues.bybit import (
    LIMITS,
    TERMINAL,
    BybitConnection,
    check_permissions,
    fill_of,
    instrument_of,
    link_id_error,
    order_request,
    wallet_equity,
)
from sapphire.venues.resilience import (
    FAILURES,
    CircuitBreaker,
    Guard,
    Outcome,
    RetryPolicy,
    classify,
)

__all__ = ["CIRCUIT_OPEN", "BybitVenue", "OrderState"]

CIRCUIT_OPEN = "circuit open"
DUPLICATE_LINK_ID = 110072


class OrderState(StrEnum):
    SENDING = "SENDING"  # the creation is in flight
    UNKNOWN = "UNKNOWN"  # the creation went unanswered: looked up by orderLinkId
    LIVE = "LIVE"  # accepted by the exchange
    DONE = "DONE"  # finished (filled, canceled, rejected)


class _Tracked:
    """The venue's own view of one order (the loop thread's; the node's `Order` is
    never read there)."""

    __slots__ = ("filled", "order", "quantity", "sent_ms", "spot", "state", "symbol")

    def __init__(self, order: Order, spot: bool) -> None:
        self.order = order
        self.symbol = order.instrument_id.symbol
        self.spot = spot
        self.state = OrderState.SENDING
        self.quantity = order.quantity
        self.filled = Decimal(0)
        self.sent_ms = 0  # the server's time when the creation was sent


class BybitVenue:
    """The node's venue on Bybit (see the module docstring): `start()` connects (loads
    the markets of `symbols`, measures the clock skew, checks the key's permissions,
    reads the balance of `currency`), `close()` disconnects."""

    supports_trailing = False
    supports_contingent = False

    def __init__(
        self,
        connection: BybitConnection,
        symbols: Sequence[str],
        *,
        environ: Mapping[str, str] | None = None,
        currency: str = "USDT",
        poll_interval_s: float = 1.0,
        clock_sync_s: float = 60.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limits: Mapping[str, float] | None = None,
        headroom: float = 0.8,
        executions: set[str] | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("symbols is empty: name the markets to trade (ccxt symbols)")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s={poll_interval_s!r} is invalid: expected > 0")
        self.connection = connection
        self.symbols = list(symbols)
        self.currency = currency
        self.poll_interval_s = poll_interval_s
        self.guard = Guard(
            limits or LIMITS, headroom=headroom, retry=retry, breaker=breaker,
            clock_sync_s=clock_sync_s,
        )  # fmt: skip
        #: execution ids already applied (pass the persisted set to resume a run)
        self.executions = executions if executions is not None else set()
        self.on_event: Callable[[OrderEvent], None] = lambda event: None
        self.instruments: dict[InstrumentId, Instrument] = {}
        #: why an order ended or an amendment failed, by client order id
        self.reasons: dict[str, str] = {}
        #: unexpected errors of the venue's tasks
        self.errors: list[BaseException] = []
        self._environ = environ
        self._cash = Decimal(0)
        self._events: queue.SimpleQueue[OrderEvent] = queue.SimpleQueue()
        self._orders: dict[str, _Tracked] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="bybit")
        self._client: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> BybitVenue:
        self._thread.start()
        try:
            self._call(self._start(), timeout)
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self) -> None:
        self._client = self.guard.client = self.connection.client(self._environ)
        await self.guard.sync_clock()
        markets = await self.guard.request("market", self._client.load_markets, repeatable=True)
        for symbol in self.symbols:
            if symbol not in markets:
                listed = ", ".join(sorted(markets))
                raise ValueError(f"symbol {symbol!r} is not listed: expected one of {listed}")
            inst = instrument_of(markets[symbol])
            self.instruments[inst.id] = inst
        key = await self.guard.request(
            "user/query-api", self._client.private_get_v5_user_query_api, repeatable=True
        )
        check_permissions(key["result"])
        self._cash = await self._equity()
        self._loop.create_task(self._poll_forever())

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.close()

        self._call(shutdown(), 30.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BybitVenue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.add_done_callback(self._record_error)

    def _record_error(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.errors.append(future.exception())  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the node's side
    def balance(self, currency: str | None = None) -> Decimal:
        """The account's equity in `currency` when the venue started."""
        return self._cash

    def drain(self) -> int:
        """Hand the queued events to `on_event` (on the caller's thread); how many."""
        n = 0
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return n
            self.on_event(event)
            n += 1

    def process_bar(self, *args: Any) -> None:
        """The exchange matches; at each bar the node takes the events that came in."""
        self.drain()

    def has_work(self, instrument_id: Any) -> bool:
        return False

    def apply_funding(self, *args: Any) -> None:
        return None

    def order_state(self, client_order_id: str) -> OrderState | None:
        t = self._orders.get(str(client_order_id))
        return None if t is None else t.state

    def submit_order(self, order: Order, sizer: Sizer | None = None) -> None:
        """Send `order` (its client order id as orderLinkId); its events come through
        `drain`. Rejected at once when the circuit is open or the id cannot be Bybit's."""
        cid = str(order.client_order_id)
        inst = self.instruments.get(order.instrument_id)
        reason = link_id_error(cid)
        if inst is None:
            traded = ", ".join(str(i) for i in self.instruments)
            reason = f"instrument {order.instrument_id} is not traded here: expected {traded}"
        elif reason is None and not self.guard.breaker.allows_orders():
            reason = CIRCUIT_OPEN
        if reason is not None:
            self.reasons[cid] = reason
            self._emit(
                OrderRejected(
                    ts_ns=time.time_ns(), client_order_id=order.client_order_id, reason=reason
                )
            )
            return
        assert inst is not None
        tracked = _Tracked(order, inst.contract_type is ContractType.SPOT)
        self._orders[cid] = tracked
        self._spawn(self._submit(tracked, sizer))

    def cancel_order(self, client_order_id: str, ts_ns: int | None = None) -> bool:
        """Cancel by orderLinkId; False when the order is unknown or finished. The outcome
        comes through `drain` (`OrderCanceled`, or `OrderCancelRejected` with Bybit's reason)."""
        t = self._orders.get(str(client_order_id))
        if t is None or t.state is OrderState.DONE:
            return False
        self._spawn(self._cancel(t))
        return True

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> bool:
        """Amend an accepted order by orderLinkId; an `OrderUpdated` comes through `drain`
        when Bybit took it (a refusal is kept in `reasons`). False when it is not working."""
        t = self._orders.get(str(client_order_id))
        if t is None or t.state is not OrderState.LIVE:
            return False
        self._spawn(self._amend(t, quantity, price, trigger_price))
        return True

    # ------------------------------------------------------------------ requests
    async def _equity(self) -> Decimal:
        answer = await self.guard.request(
            "account/wallet-balance", self._client.fetch_balance, repeatable=True
        )
        return wallet_equity(answer["info"], self.currency)

    def _emit(self, event: OrderEvent) -> None:
        self._events.put(event)

    def _reject(self, t: _Tracked, reason: str) -> None:
        t.state = OrderState.DONE
        self.reasons[str(t.order.client_order_id)] = reason
        self._emit(
            OrderRejected(
                ts_ns=time.time_ns(), client_order_id=t.order.client_order_id, reason=reason
            )
        )

    def _accept(self, t: _Tracked, venue_id: str) -> None:
        t.state = OrderState.LIVE
        cid = t.order.client_order_id
        now = time.time_ns()
        self._emit(
            OrderAccepted(ts_ns=now, client_order_id=cid, venue_order_id=VenueOrderId(venue_id))
        )
        if t.quantity != t.order.quantity:
            self._emit(OrderUpdated(ts_ns=now, client_order_id=cid, quantity=t.quantity))

    async def _submit(self, t: _Tracked, sizer: Sizer | None) -> None:
        order = t.order
        last = None
        try:
            if sizer is not None or order.trigger_price is not None:
                ticker = await self.guard.request(
                    "market", self._client.fetch_ticker, t.symbol, repeatable=True
                )
                last = Decimal(str(ticker["info"]["lastPrice"]))
            if sizer is not None:
                assert last is not None
                sized = sizer(order.price or last, await self._equity())
                if isinstance(sized, str):
                    self._reject(t, sized)
                    return
                t.quantity = sized
            kind, side, amount, price, params = order_request(order, t.quantity, last)
        except ValueError as exc:
            self._reject(t, str(exc))
            return
        except FAILURES as exc:
            self._reject(t, f"not sent: {type(exc).__name__}: {exc}")
            return
        group = "order/create:spot" if t.spot else "order/create"

        async def create() -> Any:
            # signed now (after the limiter's wait): from here the exchange may take it
            # until recvWindow has passed
            t.sent_ms = self.guard.server_ms()
            return await self._client.create_order(t.symbol, kind, side, amount, price, params)

        try:
            answer = await self.guard.request(group, create, repeatable=False)
        except FAILURES as exc:
            # unanswered, or "duplicate orderLinkId" (it is there already: a restart, or
            # an earlier try did arrive): look it up, never send it again
            if classify(exc) is Outcome.UNAVAILABLE or _code(exc) == DUPLICATE_LINK_ID:
                t.state = OrderState.UNKNOWN
                self.reasons[str(order.client_order_id)] = f"looked up after: {_message(exc)}"
            else:
                self._reject(t, _message(exc))
            return
        self._accept(t, str(answer["id"]))

    async def _cancel(self, t: _Tracked) -> None:
        group = "order/cancel:spot" if t.spot else "order/cancel"
        cid = str(t.order.client_order_id)
        reason = None
        try:
            await self.guard.request(
                group,
                self._client.cancel_order,
                None,
                t.symbol,
                {"orderLinkId": cid},
                repeatable=True,  # by orderLinkId: a second cancel is harmless
            )
        except FAILURES as exc:
            reason = _message(exc)
        if t.state is not OrderState.SENDING:
            try:
                await self._refresh(t)
            except FAILURES as exc:
                reason = reason or _message(exc)
        if reason is not None and t.state is not OrderState.DONE:
            self._emit(
                OrderCancelRejected(
                    ts_ns=time.time_ns(), client_order_id=t.order.client_order_id, reason=reason
                )
            )

    async def _amend(
        self,
        t: _Tracked,
        quantity: Decimal | None,
        price: Decimal | None,
        trigger_price: Decimal | None,
    ) -> None:
        order = t.order
        cid = str(order.client_order_id)
        limit = order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        params: dict[str, Any] = {"clientOrderId": cid}
        if trigger_price is not None:
            params["triggerPrice"] = str(trigger_price)
        try:
            await self.guard.request(
                "order/amend",
                self._client.edit_order,
                None,
                t.symbol,
                "limit" if limit else "market",
                order.side.value.lower(),
                None if quantity is None else str(quantity),
                None if price is None else str(price),
                params,
                repeatable=False,
            )
        except FAILURES as exc:
            self.reasons[cid] = f"amendment failed: {_message(exc)}"
            return
        if quantity is not None:
            t.quantity = quantity
        self._emit(
            OrderUpdated(
                ts_ns=time.time_ns(),
                client_order_id=order.client_order_id,
                quantity=quantity,
                price=price,
                trigger_price=trigger_price,
            )
        )

    # ------------------------------------------------------------------ polling
    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except FAILURES:
                continue  # the breaker counted it; the next poll tries again

    async def poll(self) -> None:
        """One round: the probe while the breaker is open (nothing else); else the clock
        resync when due and every working or unknown order's state."""
        if not await self.guard.upkeep():
            return
        for t in list(self._orders.values()):
            if t.state in (OrderState.LIVE, OrderState.UNKNOWN):
                await self._refresh(t)

    async def _lookup(self, t: _Tracked) -> dict[str, Any] | None:
        """The order as Bybit shows it (open orders, then the history), by orderLinkId."""
        client = self._client
        request = {
            "category": "spot" if t.spot else "linear",
            "symbol": client.market(t.symbol)["id"],
            "orderLinkId": str(t.order.client_order_id),
        }
        for group, call in (
            ("order/realtime", client.private_get_v5_order_realtime),
            ("order/history", client.private_get_v5_order_history),
        ):
            answer = await self.guard.request(group, call, request, repeatable=True)
            rows = answer["result"]["list"]
            if rows:
                return dict(rows[0])
        return None

    async def _refresh(self, t: _Tracked) -> None:
        """Bring the order's events up to the exchange's state (see the module docstring)."""
        asked_ms = self.guard.server_ms()
        row = await self._lookup(t)
        cid = str(t.order.client_order_id)
        if row is None:
            waited = asked_ms - t.sent_ms
            # the clock estimate's own error (half the round trip) on top of recvWindow
            margin = self.connection.recv_window_ms + (self.guard.skew.rtt_ms or 0)
            if t.state is OrderState.UNKNOWN and waited > margin:
                self._reject(
                    t,
                    f"not received: Bybit has no order {cid} {waited} ms after it was sent "
                    f"(recvWindow {self.connection.recv_window_ms} ms)",
                )
            return
        status = str(row["orderStatus"])
        reason = str(row.get("rejectReason") or "")
        if reason and reason != "EC_NoError":
            self.reasons[cid] = reason
        if t.state is OrderState.UNKNOWN:
            if status == "Rejected":
                self._reject(t, reason or "rejected")
                return
            self._accept(t, str(row["orderId"]))
        cum = Decimal(str(row["cumExecQty"]))
        if cum > t.filled:
            await self._fills(t, str(row["orderId"]))
        if status in TERMINAL and t.filled >= cum and t.state is not OrderState.DONE:
            t.state = OrderState.DONE
            if status != "Filled":
                self._emit(
                    OrderCanceled(
                        ts_ns=int(row["updatedTime"]) * 1_000_000,
                        client_order_id=t.order.client_order_id,
                    )
                )

    async def _fills(self, t: _Tracked, venue_id: str) -> None:
        trades = await self.guard.request(
            "execution/list",
            self._client.fetch_my_trades,
            t.symbol,
            None,
            None,
            {"orderLinkId": str(t.order.client_order_id)},
            repeatable=True,
        )
        inst = self.instruments[t.order.instrument_id]
        fills = sorted((fill_of(trade, inst.settlement) for trade in trades), key=lambda f: f.ts_ns)
        for f in fills:
            if f.exec_id in self.executions:
                continue
            self.executions.add(f.exec_id)
            t.filled += f.qty
            self._emit(
                OrderFilled(
                    ts_ns=f.ts_ns,
                    client_order_id=t.order.client_order_id,
                    trade_id=TradeId(f.exec_id),
                    last_qty=f.qty,
                    last_px=f.price,
                    liquidity=f.liquidity,
                    fee=f.fee,
                    fee_currency=f.fee_currency,
                    venue_order_id=VenueOrderId(venue_id),
                )
            )
            if t.filled >= t.quantity:
                t.state = OrderState.DONE


def _answer(exc: BaseException) -> dict[str, Any] | None:
    """Bybit's answer in a ccxt error ("bybit {json}"), when it carries one."""
    _, _, body = str(exc).partition(" ")
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and "retCode" in answer else None


def _code(exc: BaseException) -> int | None:
    answer = _answer(exc)
    return None if answer is None else int(answer["retCode"])


def _message(exc: BaseException) -> str:
    """Bybit's retCode and retMsg when the error carries its answer, else its text."""
    answer = _answer(exc)
    if answer is not None:
        return f"{answer['retCode']} {answer.get('retMsg', '')}".strip()
    return str(exc) or type(exc).__name__
