"""`BybitVenue`: the node's `Venue` protocol over Bybit's REST API (ccxt), spot and USDT
linear perpetuals.

Threads: the node calls `submit_order` / `cancel_order` / `amend_order` on its own
thread and they return at once; the requests run on the venue's event-loop thread (a
dedicated asyncio loop driving `ccxt.async_support`). Whatever the exchange answers
becomes `OrderEvent`s put on a queue, and `drain()` hands them to the node's `on_event`
on the node's thread: the node calls it at every bar (`process_bar`), and a live loop
calls it from a clock timer.

The creations of one market's orders are sent one after another, in the order
`submit_order` was called (each waits for the previous one's answer, its failure, or
its report by the private stream):
a market order fills as it arrives, so a reversal's reduce-only close must reach the
exchange before the new entry, or the entry closes the position and the close, left
with nothing to reduce, is canceled.

Order state comes from the private WebSocket stream (`sapphire.venues.streams.
PrivateStream`, ccxt.pro: orders, executions, positions, wallet) and from REST polling:
each working order is looked up by its client order id (Bybit's `orderLinkId`) and its
executions are read when its filled quantity grew. Both feed the same queue, and an
execution id is applied once, ever (`executions`), whichever saw it first. While the
stream is healthy the poll is a reconciliation every `reconcile_s` (orders whose creation
went unanswered are still looked up every `poll_interval_s`); while it is down (or with
``stream=False``) every working order is polled every `poll_interval_s`. After a dropped
connection the stream reconnects with back-off and resubscribes, then catches up by REST
before it counts as healthy again: the executions since the last one seen, and every
open order by its orderLinkId (`counters`: ``reconnects``, ``catch_up_fills``). The node's
client order id is the orderLinkId, so every lookup and cancel works without the
exchange's id. `watch_book` streams an L2 book with Sapphire's own sequence checks and
`watch_market` tickers and public trades.

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
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    Order,
    OrderAccepted,
    OrderBook,
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
    Fill,
    check_permissions,
    fill_of,
    instrument_of,
    link_id_error,
    order_request,
    wallet_equity,
)
from sapphire.venues.loop import LoopThread
from sapphire.venues.resilience import (
    FAILURES,
    CircuitBreaker,
    Guard,
    Outcome,
    RetryPolicy,
    classify,
)
from sapphire.venues.streams import Backoff, BookStream, MarketFeed, PrivateStream

T = TypeVar("T")

__all__ = ["CIRCUIT_OPEN", "BybitVenue", "OrderState"]

CIRCUIT_OPEN = "circuit open"
#: the depths of Bybit's orderbook topics (spot has no 500)
BOOK_DEPTHS = (1, 50, 200, 500, 1000)
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
    reads the balance of `currency`, starts the polling and, with `stream`, the private
    stream), `close()` disconnects."""

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
        stream: bool = True,
        reconcile_s: float = 30.0,
        stream_backoff: Backoff | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("symbols is empty: name the markets to trade (ccxt symbols)")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s={poll_interval_s!r} is invalid: expected > 0")
        if not reconcile_s > 0:
            raise ValueError(f"reconcile_s={reconcile_s!r} is invalid: expected > 0")
        self.connection = connection
        self.symbols = list(symbols)
        self.currency = currency
        self.poll_interval_s = poll_interval_s
        self.reconcile_s = reconcile_s
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
        self._sending: dict[str, asyncio.Lock] = {}  # per symbol: creations in order
        self._runner = LoopThread("bybit")
        self._loop = self._runner.loop
        self._client: Any = None
        self._stream = stream
        self._stream_backoff = stream_backoff
        #: the private stream (None with ``stream=False`` or before `start`)
        self.private: PrivateStream | None = None
        #: the book streams by ccxt symbol (`watch_book`) and the market feed
        self.books: dict[str, BookStream] = {}
        self.market_feed: MarketFeed | None = None
        #: fills applied, by where they were first seen
        self.fills = {"stream": 0, "poll": 0, "catch_up": 0}
        self._catch_ups = 0
        self._last_exec_ms = 0  # the newest execution time applied (server ms)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> BybitVenue:
        """Connect: the clock, the markets, the key's permissions, the balance; then
        the polling and the stream. An exchange that does not answer (a 5xx, a timeout,
        a rate limit: during a restart, say) is asked again from the beginning, after 1 s
        doubling to 8 s, until `timeout`; a refusal is raised at once."""
        self._runner.start()
        try:
            self._call_until(self._start, timeout)
            return self
        except BaseException:
            self.close()
            raise

    def _call_until(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run the coroutine `make()` makes; one the exchange does not answer (a 5xx, a
        timeout, a rate limit: during a restart, say) is made and run again after 1 s
        doubling to 8 s, until `timeout`; a refusal is raised at once."""
        deadline = time.monotonic() + timeout
        delay = 1.0
        while True:
            try:
                result: T = self._call(make(), max(1.0, deadline - time.monotonic()))
                return result
            except FAILURES as exc:
                if classify(exc) is Outcome.REFUSED or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(8.0, delay * 2)

    async def _start(self) -> None:
        if self._client is not None:
            await self._client.close()  # an earlier try's
        self._client = self.guard.client = self.connection.client(self._environ, pro=True)
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
        # everything was answered: failures of an earlier try no longer count
        self.guard.breaker.record_success()
        self._last_exec_ms = self.guard.server_ms()
        self._loop.create_task(self._poll_forever())
        if self._stream:
            self.private = PrivateStream(
                self._client,
                on_order=self._stream_order,
                on_execution=self._stream_execution,
                on_connected=self._catch_up,
                backoff=self._stream_backoff,
            )
            self._loop.create_task(self.private.run())

    def close(self) -> None:
        async def close_client() -> None:
            if self._client is not None:
                await self._client.close()

        self._runner.stop(close_client)

    def __enter__(self) -> BybitVenue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return self._runner.call(coro, timeout)

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

    @property
    def streaming(self) -> bool:
        """True while the private stream is subscribed and caught up."""
        return self.private is not None and self.private.healthy

    def wait_streaming(self, timeout: float = 10.0) -> bool:
        """Wait until the private stream is healthy (at most `timeout` s); whether it is."""
        deadline = time.monotonic() + timeout
        while not self.streaming and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.streaming

    def counters(self) -> dict[str, int]:
        """The streams' counts: the private stream's connections, drops and reconnects,
        the catch-ups after a (re)connection, fills by where they were first seen, and
        each book's counters (``book:{topic}:{name}``)."""
        private = self.private.counters.as_dict() if self.private else {}
        counts = {name: private.get(name, 0) for name in ("connects", "drops", "reconnects")}
        counts["catch_ups"] = self._catch_ups
        counts |= {f"{source}_fills": n for source, n in self.fills.items()}
        for stream in self.books.values():
            for name, n in stream.counters.as_dict().items():
                counts[f"book_stream:{stream.url}:{name}"] = n
            for topic, book in stream.books.items():
                counts |= {f"book:{topic}:{k}": n for k, n in book.counters.as_dict().items()}
        return counts

    def watch_book(
        self,
        symbol: str,
        depth: int = 50,
        *,
        stale_after_ms: int | None = 10_000,
    ) -> BookStream:
        """Stream `symbol`'s ``orderbook.{depth}`` topic into a `BybitOrderBook` (gaps,
        stale and crossed books resynced and counted); read it with `order_book`.
        `stale_after_ms` (None: unchecked) bounds the time between two messages."""
        if symbol in self.books:
            return self.books[symbol]
        if depth not in BOOK_DEPTHS:
            raise ValueError(f"depth={depth!r} is invalid: expected one of {BOOK_DEPTHS}")

        async def open_() -> BookStream:
            market = self._client.market(symbol)
            url = await self._client.get_url_by_market_type(symbol, False)
            inst = InstrumentId(symbol, "BYBIT")
            stream = BookStream(
                url, {f"orderbook.{depth}.{market['id']}": inst},
                stale_after_ms=stale_after_ms,
                backoff=self._stream_backoff,
            )  # fmt: skip
            self.books[symbol] = stream
            self._loop.create_task(stream.run())
            return stream

        if symbol not in self.symbols:
            raise ValueError(
                f"symbol {symbol!r} is not traded here: expected one of {self.symbols}"
            )
        return self._call(open_(), 30.0)

    def order_book(self, symbol: str, depth: int | None = None) -> OrderBook:
        """`symbol`'s streamed book (`watch_book` first); BookSequenceError while it
        waits for a snapshot."""
        stream = self.books.get(symbol)
        if stream is None:
            raise ValueError(f"no book stream for {symbol!r}: call watch_book first")
        (topic,) = stream.books

        async def read() -> OrderBook:
            return stream.order_book(topic, depth)

        return self._call(read(), 10.0)

    def watch_market(
        self,
        symbols: Sequence[str] | None = None,
        on_trade: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> MarketFeed:
        """Stream tickers and public trades of `symbols` (all traded ones by default):
        the feed's `tickers` holds the latest, `on_trade` (on the venue's thread) gets
        each trade."""
        if self.market_feed is not None:
            return self.market_feed
        feed = MarketFeed(self._client, symbols or self.symbols, on_trade=on_trade,
                          backoff=self._stream_backoff)  # fmt: skip
        self.market_feed = feed

        async def begin() -> None:
            self._loop.create_task(feed.run())

        self._call(begin(), 10.0)
        return feed

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

    def reconcile(self, orders: Sequence[Order], timeout: float = 60.0) -> None:
        """After a restart: track `orders` (the store's open ones, their executions
        already in `executions`), then bring each up to the exchange's state now, by its
        orderLinkId (fills the store lacks, a cancel or fill done while the node was
        down); the events come through `drain`."""
        for order in orders:
            cid = str(order.client_order_id)
            if cid in self._orders or order.instrument_id not in self.instruments:
                continue
            inst = self.instruments[order.instrument_id]
            t = _Tracked(order, inst.contract_type is ContractType.SPOT)
            t.filled = order.filled_qty
            # accepted before: followed as working; else looked up (never sent again)
            t.state = OrderState.LIVE if order.venue_order_id else OrderState.UNKNOWN
            t.sent_ms = order.ts_last // 1_000_000
            self._orders[cid] = t
        self._call(self.poll(), timeout)

    def account(self, timeout: float = 60.0) -> tuple[Decimal, dict[str, Decimal]]:
        """The exchange's wallet balance of `currency` and the signed position size of
        each traded symbol (exact), read now: asked again through an exchange that does
        not answer (a restart, say) until `timeout`, like `start`."""

        async def read() -> tuple[Decimal, dict[str, Decimal]]:
            answer = await self.guard.request(
                "account/wallet-balance", self._client.fetch_balance, repeatable=True
            )
            wallet = None
            for acct in answer["info"].get("result", {}).get("list") or ():
                for row in acct.get("coin") or ():
                    if row.get("coin") == self.currency:
                        wallet = Decimal(str(row["walletBalance"]))
            if wallet is None:
                raise ValueError(f"the wallet has no {self.currency} balance")
            rows = []
            for symbol in self.symbols:  # Bybit's position list takes one symbol a request
                rows += await self.guard.request(
                    "position/list", self._client.fetch_positions, [symbol], repeatable=True
                )
            sizes = dict.fromkeys(self.symbols, Decimal(0))
            for row in rows:
                info = row["info"]
                size = Decimal(str(info.get("size") or 0))
                sign = -1 if info.get("side") == "Sell" else 1
                if row["symbol"] in sizes:
                    sizes[row["symbol"]] += sign * size
            return wallet, sizes

        return self._call_until(read, timeout)

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
        # tasks start in the order they were spawned and the lock is fair (FIFO): the
        # creations of one symbol go out in the order submitted (the module docstring)
        lock = self._sending.setdefault(t.symbol, asyncio.Lock())
        async with lock:
            send = asyncio.ensure_future(self._send(t, sizer))
            # the next creation goes once this one is answered, or once the stream
            # reported the order (it is on the exchange; the answer may come late)
            while not send.done() and t.state is OrderState.SENDING:
                await asyncio.wait({send}, timeout=0.01)
        await send

    async def _send(self, t: _Tracked, sizer: Sizer | None) -> None:
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
            if t.state is not OrderState.SENDING:
                return  # the stream has already reported the order: it arrived
            # unanswered, or "duplicate orderLinkId" (it is there already: a restart, or
            # an earlier try did arrive): look it up, never send it again
            if classify(exc) is Outcome.UNAVAILABLE or _code(exc) == DUPLICATE_LINK_ID:
                t.state = OrderState.UNKNOWN
                self.reasons[str(order.client_order_id)] = f"looked up after: {_message(exc)}"
            else:
                self._reject(t, _message(exc))
            return
        if t.state is OrderState.SENDING:  # else the stream reported it first
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
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.poll_interval_s)
            full = not self.streaming or time.monotonic() - last_full >= self.reconcile_s
            try:
                await self.poll(full)
            except FAILURES:
                continue  # the breaker counted it; the next poll tries again
            if full:
                last_full = time.monotonic()

    async def poll(self, full: bool = True) -> None:
        """One round: the probe while the breaker is open (nothing else); else the clock
        resync when due and every unknown order's state, and with `full` every working
        order's too."""
        if not await self.guard.upkeep():
            return
        for t in list(self._orders.values()):
            if t.state is OrderState.UNKNOWN or (full and t.state is OrderState.LIVE):
                await self._refresh(t)

    # ------------------------------------------------------------------ the stream
    async def _stream_order(self, row: Mapping[str, Any]) -> None:
        """An order row of the private stream: the order's state adopted."""
        t = self._orders.get(str(row.get("orderLinkId") or ""))
        if t is None or t.state is OrderState.DONE:
            return
        try:
            await self._adopt(t, row, "stream")
        except FAILURES:
            return  # its fills' REST read failed: the next poll reads them

    async def _stream_execution(self, info: Mapping[str, Any]) -> None:
        """An execution row of the private stream: the fill applied (once)."""
        self._execution(info, "stream")

    def _execution(self, info: Mapping[str, Any], source: str) -> None:
        t = self._orders.get(str(info.get("orderLinkId") or ""))
        if t is None or str(info.get("execId")) in self.executions:
            return
        venue_id = str(info["orderId"])
        if t.state in (OrderState.SENDING, OrderState.UNKNOWN):
            self._accept(t, venue_id)
        inst = self.instruments[t.order.instrument_id]
        self._apply_fill(t, fill_of({"info": info}, inst.settlement), venue_id, source)

    async def _catch_up(self, reconnect: bool) -> None:
        """After a (re)subscription, what the stream may have missed, by REST: the
        executions since the newest one applied, then every open order's state."""
        self._catch_ups += 1
        pending = [
            t for t in self._orders.values()
            if t.state in (OrderState.LIVE, OrderState.UNKNOWN, OrderState.SENDING)
        ]  # fmt: skip
        if not pending:
            return
        # from the newest execution applied, less recvWindow for our clock estimate's error
        since = self._last_exec_ms - self.connection.recv_window_ms
        for symbol in sorted({t.symbol for t in pending}):
            trades = await self.guard.request(
                "execution/list", self._client.fetch_my_trades, symbol, since, None, {},
                repeatable=True,
            )  # fmt: skip
            for trade in sorted(trades, key=lambda tr: int(tr["info"]["execTime"])):
                self._execution(trade["info"], "catch_up")
        for t in pending:
            if t.state in (OrderState.LIVE, OrderState.UNKNOWN):
                await self._refresh(t, "catch_up")

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

    async def _refresh(self, t: _Tracked, source: str = "poll") -> None:
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
        await self._adopt(t, row, source)

    async def _adopt(self, t: _Tracked, row: Mapping[str, Any], source: str) -> None:
        """Emit what Bybit's order `row` says happened since the events already sent."""
        cid = str(t.order.client_order_id)
        status = str(row["orderStatus"])
        reason = str(row.get("rejectReason") or "")
        if reason and reason != "EC_NoError":
            self.reasons[cid] = reason
        if t.state in (OrderState.UNKNOWN, OrderState.SENDING):
            if status == "Rejected":
                self._reject(t, reason or "rejected")
                return
            self._accept(t, str(row["orderId"]))
        cum = Decimal(str(row["cumExecQty"]))
        if cum > t.filled:
            await self._fills(t, str(row["orderId"]), source)
        if status in TERMINAL and t.filled >= cum and t.state is not OrderState.DONE:
            t.state = OrderState.DONE
            if status != "Filled":
                self._emit(
                    OrderCanceled(
                        ts_ns=int(row["updatedTime"]) * 1_000_000,
                        client_order_id=t.order.client_order_id,
                    )
                )

    async def _fills(self, t: _Tracked, venue_id: str, source: str) -> None:
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
            self._apply_fill(t, f, venue_id, source)

    def _apply_fill(self, t: _Tracked, f: Fill, venue_id: str, source: str) -> None:
        """Emit the fill unless its execution id was applied already (by any source)."""
        if f.exec_id in self.executions:
            return
        self.executions.add(f.exec_id)
        self.fills[source] += 1
        self._last_exec_ms = max(self._last_exec_ms, f.ts_ns // 1_000_000)
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
