"""`BybitVenue` against the local Bybit exchange over real HTTP: orders and their events,
and the failure handling (timeouts, 5xx, rate limits, the circuit breaker, clock skew),
the failures injected by the test middleware `local_exchange.Faults`.

Every event the venue emits is applied to the order (`Harness`), so its state machine
checks the sequence; the replay is stepped by hand, so fill prices are known.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pandas as pd
import pytest
from local_exchange import LINEAR, SPOT, Exchange, Faults, frame, no_internet

from sapphire.domain import (
    Bar,
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderUpdated,
    StrategyId,
    TimeInForce,
)
from sapphire.engine.builder import build_node
from sapphire.engine.clock import WallClock
from sapphire.engine.config import RunConfig
from sapphire.engine.strategy import EventStrategy
from sapphire.venues.bybit import LIMITS, BybitConnection, BybitEnvironment
from sapphire.venues.exchange import FaultPlan
from sapphire.venues.live import CIRCUIT_OPEN, BybitVenue, OrderState
from sapphire.venues.resilience import CircuitBreaker, RetryPolicy

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

PERP = InstrumentId(LINEAR, "BYBIT")
SPOT_ID = InstrumentId(SPOT, "BYBIT")
S = StrategyId("s")
FAST = RetryPolicy(attempts=3, base_s=0.05, cap_s=0.2)
CREATE = "/v5/order/create"


class Harness:
    """A started venue over `ex`, every event applied to its order."""

    def __init__(self, ex: Exchange, **options: Any) -> None:
        conn = BybitConnection(
            BybitEnvironment.LOCAL,
            url=ex.url,
            timeout_ms=options.pop("timeout_ms", 3000),
            recv_window_ms=options.pop("recv_window_ms", 1000),
        )
        options.setdefault("retry", FAST)
        self.venue = BybitVenue(
            conn, [LINEAR, SPOT], environ=ex.environ(), poll_interval_s=0.05, **options
        )
        self.events: list[OrderEvent] = []
        self.orders: dict[str, Order] = {}
        self.venue.on_event = self._apply
        self.venue.start()
        self._seq = 0

    def _apply(self, event: OrderEvent) -> None:
        self.events.append(event)
        self.orders[str(event.client_order_id)].apply(event)

    def submit(self, make: Callable[[ClientOrderId], Order], sizer: Any = None) -> Order:
        self._seq += 1
        order = make(ClientOrderId(f"t-{self._seq}"))
        self.orders[str(order.client_order_id)] = order
        order.apply(OrderSubmitted(ts_ns=1, client_order_id=order.client_order_id))
        self.venue.submit_order(order, sizer)
        return order

    def wait(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.venue.drain()
            if done():
                return
            assert not self.venue.errors, self.venue.errors
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; events so far: {self.events}")
            time.sleep(0.02)

    def of(self, order: Order, kind: type[OrderEvent]) -> list[Any]:
        return [
            e
            for e in self.events
            if e.client_order_id == order.client_order_id and isinstance(e, kind)
        ]


def market(side: OrderSide, qty: str, iid: InstrumentId = PERP, **kw: Any) -> Any:
    return lambda cid: Order.market(cid, S, iid, side, Decimal(qty), ts_init=0, **kw)


def limit(side: OrderSide, qty: str, price: float, iid: InstrumentId = PERP, **kw: Any) -> Any:
    return lambda cid: Order.limit(
        cid, S, iid, side, Decimal(qty), Decimal(str(price)), ts_init=0, **kw
    )


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = Exchange(frame)
    yield ex
    ex.server.stop()


@pytest.fixture
def faulty(frame: pd.DataFrame) -> Iterator[tuple[Exchange, Faults]]:
    ex = Exchange(frame, faults=True)
    assert ex.faults is not None
    yield ex, ex.faults
    ex.server.stop()


@pytest.fixture
def harness(exchange: Exchange) -> Iterator[Harness]:
    h = Harness(exchange)
    yield h
    h.venue.close()


# ---------------------------------------------------------------------- orders
def test_start_reads_instruments_exactly_and_the_balance(harness: Harness) -> None:
    perp = harness.venue.instruments[PERP]
    assert (perp.tick_size, perp.lot_size, perp.min_qty) == (
        Decimal("0.1"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    assert harness.venue.instruments[SPOT_ID].tick_size == Decimal("0.01")
    assert harness.venue.balance("USDT") == Decimal(100_000)


def test_a_market_order_is_accepted_then_filled_once(exchange: Exchange, harness: Harness) -> None:
    order = harness.submit(market(OrderSide.BUY, "0.01"))
    harness.wait(lambda: order.status is OrderStatus.ACCEPTED)
    (accepted,) = harness.of(order, OrderAccepted)
    link = exchange.state.find(None, "t-1")
    assert link is not None and accepted.venue_order_id == link.order_id
    fill_px = Decimal(str(exchange.next_bar()["open"]))
    exchange.state.advance()
    harness.wait(lambda: order.status is OrderStatus.FILLED)
    (fill,) = harness.of(order, OrderFilled)
    assert (fill.last_qty, fill.last_px, fill.liquidity) == (
        Decimal("0.01"),
        fill_px,
        LiquiditySide.TAKER,
    )
    assert fill.fee == Decimal("0.01") * fill_px * Decimal("0.00055")
    assert fill.fee_currency == "USDT"
    assert str(fill.trade_id) in harness.venue.executions
    count = len(harness.events)
    asyncio.run_coroutine_threadsafe(harness.venue.poll(), harness.venue._loop).result(5)
    time.sleep(0.2)  # more polls: the fill is never applied twice
    harness.venue.drain()
    assert len(harness.events) == count


def test_a_limit_order_is_amended_and_canceled(exchange: Exchange, harness: Harness) -> None:
    order = harness.submit(limit(OrderSide.BUY, "0.01", 30000))
    harness.wait(lambda: order.status is OrderStatus.ACCEPTED)
    assert harness.venue.amend_order("t-1", price=Decimal("30100"), quantity=Decimal("0.02"))
    harness.wait(lambda: order.price == Decimal("30100"))
    rec = exchange.state.find(None, "t-1")
    assert rec is not None and (rec.price, rec.order.quantity) == (
        Decimal("30100"),
        Decimal("0.02"),
    )
    assert harness.venue.cancel_order("t-1")
    harness.wait(lambda: order.status is OrderStatus.CANCELED)
    assert len(harness.of(order, OrderCanceled)) == 1
    assert not harness.venue.cancel_order("t-1")  # finished: nothing to cancel


def test_order_options_reach_bybit(exchange: Exchange, harness: Harness) -> None:
    state = exchange.state
    last = float(state.last(state.markets[("linear", "BTCUSDT")]))
    post = harness.submit(limit(OrderSide.BUY, "0.01", last + 1, post_only=True))
    bar = exchange.next_bar()
    ioc = harness.submit(
        limit(OrderSide.BUY, "0.01", bar["open"] - 1000, time_in_force=TimeInForce.IOC)
    )
    fok = harness.submit(
        limit(OrderSide.BUY, "0.02", bar["open"] + 100, time_in_force=TimeInForce.FOK)
    )
    harness.wait(lambda: post.is_terminal and fok.status is OrderStatus.ACCEPTED)
    assert post.status is OrderStatus.CANCELED
    assert harness.venue.reasons["t-1"] == "EC_PostOnlyWillTakeLiquidity"
    recs = {r.link_id: r for r in state.orders.values()}
    assert (recs["t-1"].time_in_force, recs["t-2"].time_in_force, recs["t-3"].time_in_force) == (
        "PostOnly",
        "IOC",
        "FOK",
    )
    state.advance()
    harness.wait(lambda: ioc.is_terminal and fok.is_terminal)
    assert ioc.status is OrderStatus.CANCELED and fok.status is OrderStatus.FILLED
    assert fok.avg_px == Decimal(str(bar["open"]))
    # a reduce-only stop closes the position when the price falls to its trigger
    replay = state.replay
    last = replay.close[replay.position - 1]
    i = replay.position
    while replay.low[i] > last - 5:
        i += 1
    trigger = Decimal(str(last - 5)).quantize(Decimal("0.1"))
    stop = harness.submit(
        lambda cid: Order.stop_market(
            cid, S, PERP, OrderSide.SELL, Decimal("0.02"), trigger, ts_init=0, reduce_only=True
        )
    )
    harness.wait(lambda: stop.status is OrderStatus.ACCEPTED)
    rec = state.find(None, "t-4")
    assert rec is not None and (rec.trigger_direction, rec.reduce_only) == (2, True)
    while replay.position <= i:
        state.advance()
    harness.wait(lambda: stop.status is OrderStatus.FILLED)
    assert state.position_qty(state.markets[("linear", "BTCUSDT")]) == 0


def test_bybit_refusals_are_rejections_with_its_reason(harness: Harness) -> None:
    big = harness.submit(limit(OrderSide.BUY, "100", 40000))
    harness.wait(lambda: big.is_terminal)
    (rejected,) = harness.of(big, OrderRejected)
    assert rejected.reason.startswith("110007 ab not enough for new order")
    long_id = Order.market(
        ClientOrderId("x" * 37), S, PERP, OrderSide.BUY, Decimal("0.01"), ts_init=0
    )
    harness.orders[str(long_id.client_order_id)] = long_id
    long_id.apply(OrderSubmitted(ts_ns=1, client_order_id=long_id.client_order_id))
    harness.venue.submit_order(long_id)
    harness.wait(lambda: long_id.is_terminal)
    assert "orderLinkId" in harness.of(long_id, OrderRejected)[0].reason


def test_a_spot_market_buy_in_base_units(exchange: Exchange, harness: Harness) -> None:
    order = harness.submit(market(OrderSide.BUY, "0.5", SPOT_ID))
    harness.wait(lambda: order.status is OrderStatus.ACCEPTED)
    bar = exchange.next_bar()
    exchange.state.advance()
    harness.wait(lambda: order.status is OrderStatus.FILLED)
    assert (order.filled_qty, order.avg_px) == (Decimal("0.5"), Decimal(str(bar["open"])))


# ---------------------------------------------------------------------- failures
def test_a_creation_timed_out_after_arriving_is_found_never_resent(frame: pd.DataFrame) -> None:
    """The exchange's own `timeout_after_accept` fault: the order is created, its answer
    comes after the client's 400 ms timeout."""
    ex = Exchange(frame, plan=FaultPlan.parse("timeout_after_accept=1,timeout_hold=1s"))
    h = Harness(ex, timeout_ms=400)
    try:
        order = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: h.venue.order_state("t-1") is not OrderState.SENDING)
        h.wait(lambda: order.status is OrderStatus.ACCEPTED)
        ex.state.advance()
        h.wait(lambda: order.status is OrderStatus.FILLED)
        assert len(ex.state.orders) == 1
        assert ex.app.state.faults.counts == {"timeout_after_accept": 1}
    finally:
        h.venue.close()
        ex.server.stop()


def test_the_venue_trades_on_through_exchange_restarts(frame: pd.DataFrame) -> None:
    """The exchange's own `restart` fault every 2 bars: streams closed, requests refused
    for 0.5 s, the same state after. The venue reconnects, and every fill (some made just
    before a restart) is applied once."""
    ex = Exchange(frame, plan=FaultPlan.parse("restart=every:2bars,restart_pause=0.5s"))
    h = Harness(ex, retry=RetryPolicy(attempts=8, base_s=0.1, cap_s=0.3))
    try:
        orders = []
        for _ in range(3):
            order = h.submit(market(OrderSide.BUY, "0.01"))
            h.wait(lambda o=order: o.status is OrderStatus.ACCEPTED, 10)
            ex.state.advance()  # the fill
            ex.state.advance()  # the restart
            orders.append(order)
            h.wait(lambda o=order: o.status is OrderStatus.FILLED, 10)
            time.sleep(0.6)  # the exchange is back
        assert [len(h.of(o, OrderFilled)) for o in orders] == [1, 1, 1]
        assert ex.app.state.faults.counts["restart"] == 3
        h.wait(lambda: h.venue.counters()["reconnects"] >= 1, 10)
        assert ex.state.venue.position(PERP) == Decimal("0.03")
    finally:
        h.venue.close()
        ex.server.stop()


def test_a_creation_that_never_arrived_is_rejected_as_not_received(
    faulty: tuple[Exchange, Faults],
) -> None:
    ex, faults = faulty
    h = Harness(ex, timeout_ms=400, recv_window_ms=1000)
    try:
        faults.stall(CREATE, 0.6, forward=False)
        faults.status(CREATE, 502)
        first = h.submit(market(OrderSide.BUY, "0.01"))
        second = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: first.is_terminal and second.is_terminal)
        for order in (first, second):
            (rejected,) = h.of(order, OrderRejected)
            assert rejected.reason.startswith("not received")
        assert faults.count(CREATE) == 2  # one try each: a creation is never repeated
        assert ex.state.orders == {}
    finally:
        h.venue.close()


def test_an_order_already_on_the_exchange_is_adopted_not_duplicated(exchange: Exchange) -> None:
    """After a restart the node resubmits with the same client order id: Bybit answers
    "duplicate orderLinkId" (110072) and the venue adopts the order it finds."""

    async def place() -> str:
        client = ccxt_async.bybit(exchange.config())
        try:
            placed = await client.create_order(
                LINEAR, "limit", "buy", 0.01, 30000, params={"clientOrderId": "t-1"}
            )
            return str(placed["id"])
        finally:
            await client.close()

    venue_id = asyncio.run(place())
    h = Harness(exchange)
    try:
        order = h.submit(limit(OrderSide.BUY, "0.01", 30000))
        h.wait(lambda: order.status is OrderStatus.ACCEPTED)
        assert order.venue_order_id == venue_id
        assert len(exchange.state.orders) == 1
    finally:
        h.venue.close()


def test_reads_and_cancels_are_retried_after_5xx(faulty: tuple[Exchange, Faults]) -> None:
    ex, faults = faulty
    h = Harness(ex)
    try:
        order = h.submit(limit(OrderSide.BUY, "0.01", 30000))
        h.wait(lambda: order.status is OrderStatus.ACCEPTED)
        faults.status("/v5/order/cancel", 503, times=1)
        faults.status("/v5/order/realtime", 500, times=2)
        assert h.venue.cancel_order("t-1")
        h.wait(lambda: order.status is OrderStatus.CANCELED)
        assert faults.count("/v5/order/cancel") == 2
        assert faults.count("/v5/order/cancel", 0) == 1
    finally:
        h.venue.close()


@pytest.mark.parametrize(("create_limit", "refused"), [(5, False), (50, True)])
def test_the_client_limiter_keeps_under_bybits_limit(
    frame: pd.DataFrame, create_limit: float, refused: bool
) -> None:
    """The exchange allows 5 creations a second: a limiter set to Bybit's limit never
    meets a 10006; one set too loose (50) does, and backs off until every order is in."""
    ex = Exchange(frame, limits={"order": 5, "spot-order": 20, "query": 50, "position": 10})
    patient = RetryPolicy(attempts=10, base_s=0.1, cap_s=1.0)
    h = Harness(ex, limits={**LIMITS, "order/create": create_limit}, retry=patient)
    try:
        orders = [h.submit(limit(OrderSide.BUY, "0.001", 30000 + i)) for i in range(12)]
        h.wait(lambda: all(o.status is OrderStatus.ACCEPTED for o in orders), 15)
        assert bool(h.venue.guard.backoffs) is refused
        assert len(ex.state.orders) == 12
    finally:
        h.venue.close()
        ex.server.stop()


def test_10006_is_backed_off_with_jitter_and_the_order_placed(
    faulty: tuple[Exchange, Faults],
) -> None:
    ex, faults = faulty
    h = Harness(ex, retry=RetryPolicy(attempts=4, base_s=0.1, cap_s=1.0))
    try:
        faults.answer(CREATE, 10006, times=2)
        order = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: order.status is OrderStatus.ACCEPTED)
        tries = [s for s in faults.seen if s.path == CREATE]
        assert [s.code for s in tries] == [10006, 10006, 0]
        b0, b1 = h.venue.guard.backoffs
        assert 0.05 <= b0 <= 0.1 and 0.1 <= b1 <= 0.2
        assert tries[1].at - tries[0].at >= b0 - 0.01 and tries[2].at - tries[1].at >= b1 - 0.01
    finally:
        h.venue.close()


def test_the_circuit_opens_on_failures_and_closes_after_a_probe(
    faulty: tuple[Exchange, Faults],
) -> None:
    ex, faults = faulty
    # REST only: with the private stream healthy no poll would go out to fail
    h = Harness(ex, breaker=CircuitBreaker(threshold=3, cooldown_s=0.5), stream=False)
    try:
        working = h.submit(limit(OrderSide.BUY, "0.01", 30000))
        h.wait(lambda: working.status is OrderStatus.ACCEPTED)
        faults.down = True  # every request answers 503: the polls fail
        h.wait(lambda: h.venue.guard.breaker.is_open)
        time.sleep(0.1)  # the retries in flight end
        opened = len(faults.seen)
        denied = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: denied.is_terminal)
        assert h.of(denied, OrderRejected)[0].reason == CIRCUIT_OPEN
        time.sleep(0.6)
        assert h.venue.guard.breaker.is_open  # a failed probe keeps it open
        healed = len(faults.seen)
        faults.down = False
        h.wait(lambda: not h.venue.guard.breaker.is_open)
        # while open only probes (the server time) went out, and a probe closed it
        assert {s.path for s in faults.seen[opened : healed + 1]} == {"/v5/market/time"}
        assert faults.seen[healed].code == 0
        after = h.submit(market(OrderSide.BUY, "0.01"))
        h.wait(lambda: after.status is OrderStatus.ACCEPTED)
    finally:
        h.venue.close()


@pytest.mark.parametrize("offset_ms", [30_000, -30_000])
def test_the_clock_skew_is_corrected(frame: pd.DataFrame, offset_ms: int) -> None:
    ex = Exchange(frame, faults=True, clock=lambda: int(time.time() * 1000) + offset_ms)
    assert ex.faults is not None
    try:
        # plain ccxt signs with our clock: the exchange refuses it (10002)
        async def balance() -> None:
            client = ccxt_async.bybit(ex.config())
            try:
                await client.fetch_balance()
            finally:
                await client.close()

        with pytest.raises(ccxt.InvalidNonce):
            asyncio.run(balance())
        h = Harness(ex)
        try:
            assert h.venue.guard.skew.offset_ms is not None
            assert abs(h.venue.guard.skew.offset_ms - offset_ms) < 500
            order = h.submit(market(OrderSide.BUY, "0.01"))
            h.wait(lambda: order.status is OrderStatus.ACCEPTED)
            ex.state.advance()
            h.wait(lambda: order.status is OrderStatus.FILLED)
        finally:
            h.venue.close()
        answered = [s.code for s in ex.faults.seen]
        assert 0 in answered and answered.count(10002) == 1  # only plain ccxt's
    finally:
        ex.server.stop()


def test_a_key_that_can_withdraw_is_refused(faulty: tuple[Exchange, Faults]) -> None:
    ex, faults = faulty

    def may_withdraw(answer: dict[str, Any]) -> None:
        answer["result"]["permissions"]["Wallet"] = ["AccountTransfer", "Withdraw"]

    faults.rewrite("/v5/user/query-api", may_withdraw)
    with pytest.raises(ValueError, match="withdraw"):
        Harness(ex)


def test_sized_orders_are_sized_at_submission(exchange: Exchange, harness: Harness) -> None:
    from sapphire.engine.sizing import QuantitySizer

    state = exchange.state
    last = state.last(state.markets[("linear", "BTCUSDT")])
    order = harness.submit(market(OrderSide.BUY, "1"), QuantitySizer("notional", 1000, "0.001"))
    harness.wait(lambda: order.status is OrderStatus.ACCEPTED)
    (updated,) = harness.of(order, OrderUpdated)
    expected = (Decimal(1000) / last).quantize(Decimal("0.001"), rounding="ROUND_FLOOR")
    assert updated.quantity == expected == order.quantity


# ---------------------------------------------------------------------- the node
class BuyThenSell(EventStrategy):
    """Buy 0.01 at the first bar, sell it at the third."""

    def __init__(self) -> None:
        super().__init__("bts")
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.submit_order(self.market(PERP, "BUY", "0.01"))
        elif self.bars == 3:
            self.submit_order(self.market(PERP, "SELL", "0.01", reduce_only=True))


def test_build_node_runs_a_strategy_live_through_the_venue(
    exchange: Exchange, harness: Harness
) -> None:
    """The one builder, mode "live": the venue and a wall clock are all that differ."""
    venue = harness.venue
    setup = build_node(
        RunConfig(cash=100_000),
        mode="live",
        venue=venue,
        instrument_id=PERP,
        strategy=BuyThenSell(),
        clock=WallClock(),
        run_id="live1",
    )
    node = setup.node
    replay = exchange.state.replay
    tf_ns = replay.timeframe_ms * 1_000_000
    fills = []
    for _ in range(5):
        i = replay.position
        exchange.state.advance()  # the exchange matches the bar's orders ...
        time.sleep(0.3)  # ... the venue polls the outcome ...
        bar = Bar(
            instrument_id=PERP,
            ts_ns=int(replay.time_ms[i]) * 1_000_000,
            open=float(replay.open[i]),
            high=float(replay.high[i]),
            low=float(replay.low[i]),
            close=float(replay.close[i]),
            volume=float(replay.turnover[i]),
        )
        node.process_bar(bar, tf_ns)  # ... and the node takes the events at the bar
        fills.append(float(replay.open[i]))
        deadline = time.monotonic() + 5  # what the strategy sent reaches the exchange
        while any(venue.order_state(c) is OrderState.SENDING for c in node.orders):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    orders = sorted(node.orders.values(), key=lambda o: str(o.client_order_id))
    assert [str(o.client_order_id) for o in orders] == ["live1-bts-1", "live1-bts-2"]
    assert all(o.status is OrderStatus.FILLED for o in orders)
    # each filled at the open of the bar after the one it was sent at, on the exchange
    assert [o.avg_px for o in orders] == [Decimal(str(fills[1])), Decimal(str(fills[3]))]
    assert {r.link_id for r in exchange.state.orders.values()} == {"live1-bts-1", "live1-bts-2"}
    assert node.portfolio.net_quantity(PERP) == 0
    assert exchange.state.position_qty(exchange.state.markets[("linear", "BTCUSDT")]) == 0
