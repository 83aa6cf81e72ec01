"""BookMatcher: book walks, queue position, TIF, post-only, stops; events drive real Orders."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderBookDelta,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    StrategyId,
    TimeInForce,
    TradeId,
    TradeTick,
)
from sapphire.sim.book import BookUpdate
from sapphire.sim.matching import BookMatcher, vwap
from sapphire.sim.models import BpsSlippage
from sapphire.sim.replay import Replay, read_binance_trades, read_bybit_orderbook

IID = InstrumentId("BTCUSDT", "SIM")
SID = StrategyId("s1")
BUY, SELL = OrderSide.BUY, OrderSide.SELL
D = Decimal
INST = Instrument(
    IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, D("0.1"), D("0.001"),
    maker_fee=D("0.0002"), taker_fee=D("0.0005"),
)  # fmt: skip
_ids = itertools.count(1)


def _cid() -> ClientOrderId:
    return ClientOrderId(f"o{next(_ids)}")


def _sent(order: Order) -> Order:
    order.apply(OrderSubmitted(ts_ns=order.ts_init, client_order_id=order.client_order_id))
    return order


def market(side: OrderSide, qty: str, **kw: object) -> Order:
    return _sent(Order.market(_cid(), SID, IID, side, D(qty), ts_init=1, **kw))


def limit(side: OrderSide, qty: str, price: str, **kw: object) -> Order:
    return _sent(Order.limit(_cid(), SID, IID, side, D(qty), D(price), ts_init=1, **kw))


def stop(side: OrderSide, qty: str, trigger: str, price: str | None = None) -> Order:
    if price is None:
        order = Order.stop_market(_cid(), SID, IID, side, D(qty), D(trigger), ts_init=1)
    else:
        order = Order.stop_limit(_cid(), SID, IID, side, D(qty), D(price), D(trigger), ts_init=1)
    return _sent(order)


def snapshot(bids: list[tuple[float, float]], asks: list[tuple[float, float]], ts: int = 1):
    deltas = [OrderBookDelta(IID, ts, BUY, p, s) for p, s in bids]
    deltas += [OrderBookDelta(IID, ts, SELL, p, s) for p, s in asks]
    return BookUpdate(IID, ts, True, tuple(deltas), None)


def delta(side: OrderSide, price: float, size: float, ts: int):
    return BookUpdate(IID, ts, False, (OrderBookDelta(IID, ts, side, price, size),), None)


def trade(price: float, size: float, ts: int, aggressor: OrderSide | None = SELL) -> TradeTick:
    return TradeTick(IID, ts, price, size, aggressor, TradeId(f"t{ts}-{price}-{size}"))


def apply(order: Order, events: list) -> list:
    """Apply the events for `order` to it (the domain state machine checks them)."""
    mine = [e for e in events if e.client_order_id == order.client_order_id]
    for event in mine:
        order.apply(event)
    return mine


def fills(events: list) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


@pytest.fixture
def matcher() -> BookMatcher:
    m = BookMatcher(INST)
    m.on_book(snapshot([(99.5, 1.0), (99.0, 2.0)], [(100.0, 1.0), (100.5, 2.0), (101.0, 3.0)]))
    return m


# -- market orders -----------------------------------------------------------------------


def test_market_buy_walks_three_levels_with_the_exact_vwap(matcher: BookMatcher) -> None:
    order = market(BUY, "4")
    events = apply(order, matcher.submit(order, 10))
    assert isinstance(events[0], OrderAccepted)
    got = [(f.last_px, f.last_qty, f.liquidity) for f in fills(events)]
    assert got == [
        (D("100.0"), D("1"), LiquiditySide.TAKER),
        (D("100.5"), D("2"), LiquiditySide.TAKER),
        (D("101.0"), D("1"), LiquiditySide.TAKER),
    ]
    assert vwap(fills(events)) == D("100.5")  # (100 + 201 + 101) / 4
    assert order.status is OrderStatus.FILLED and order.avg_px == D("100.5")
    assert [f.fee for f in fills(events)] == [D("0.05"), D("0.1005"), D("0.0505")]
    assert {f.fee_currency for f in fills(events)} == {"USDT"}
    assert matcher.book.levels(SELL) == [(101.0, 2.0)]  # the taken liquidity is gone


def test_market_sell_larger_than_the_book_fills_partially_then_cancels(
    matcher: BookMatcher,
) -> None:
    order = market(SELL, "5")
    events = apply(order, matcher.submit(order, 10))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [
        (D("99.5"), D("1")),
        (D("99.0"), D("2")),
    ]
    assert isinstance(events[-1], OrderCanceled)
    assert order.status is OrderStatus.CANCELED and order.filled_qty == D("3")
    assert matcher.book.best_bid is None


def test_market_order_without_liquidity_is_rejected() -> None:
    m = BookMatcher(INST)
    m.on_book(snapshot([(99.0, 1.0)], []))
    order = market(BUY, "1")
    (event,) = apply(order, m.submit(order, 5))
    assert isinstance(event, OrderRejected) and "no liquidity" in event.reason
    assert order.status is OrderStatus.REJECTED


def test_recorded_update_restores_the_consumed_level(matcher: BookMatcher) -> None:
    matcher.submit(market(BUY, "1"), 10)
    assert matcher.book.best_ask == (100.5, 2.0)
    matcher.on_book(delta(SELL, 100.0, 0.7, 11))
    assert matcher.book.best_ask == (100.0, 0.7)


# -- limit orders ------------------------------------------------------------------------


def test_crossing_limit_takes_then_rests_behind_the_displayed_size(matcher: BookMatcher) -> None:
    order = limit(BUY, "5", "100.5")
    events = apply(order, matcher.submit(order, 10))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [
        (D("100.0"), D("1")),
        (D("100.5"), D("2")),
    ]
    assert order.status is OrderStatus.PARTIALLY_FILLED
    (work,) = matcher.open_orders()
    assert work.leaves_qty == D("2") and work.queue_ahead == 0
    assert matcher.book.best_ask == (101.0, 3.0)


def test_resting_limit_fills_only_after_the_queue_ahead_has_traded(matcher: BookMatcher) -> None:
    matcher.on_book(delta(BUY, 99.5, 3.0, 2))
    order = limit(BUY, "2", "99.5")
    apply(order, matcher.submit(order, 10))
    (work,) = matcher.open_orders()
    assert work.queue_ahead == D("3")
    assert apply(order, matcher.on_trade(trade(99.5, 2.0, 11))) == []
    assert work.queue_ahead == D("1")
    # a buyer lifting at our price does not trade with our bid
    assert apply(order, matcher.on_trade(trade(99.5, 5.0, 12, aggressor=BUY))) == []
    events = apply(order, matcher.on_trade(trade(99.5, 2.0, 13)))
    assert [(f.last_px, f.last_qty, f.liquidity) for f in fills(events)] == [
        (D("99.5"), D("1"), LiquiditySide.MAKER)
    ]
    assert fills(events)[0].fee == D("0.0199")  # 1 * 99.5 * 0.0002
    assert order.status is OrderStatus.PARTIALLY_FILLED
    events = apply(order, matcher.on_trade(trade(99.5, 5.0, 14)))
    assert [f.last_qty for f in fills(events)] == [D("1")]
    assert order.status is OrderStatus.FILLED and matcher.open_orders() == []


def test_two_resting_orders_share_one_trade_by_time_priority(matcher: BookMatcher) -> None:
    first, second = limit(BUY, "1", "99.4"), limit(BUY, "1", "99.4")
    apply(first, matcher.submit(first, 10))
    apply(second, matcher.submit(second, 10))
    events = matcher.on_trade(trade(99.4, 1.5, 11))
    apply(first, events)
    apply(second, events)
    assert (first.filled_qty, second.filled_qty) == (D("1"), D("0.5"))


def test_a_trade_through_the_price_fills_the_whole_order(matcher: BookMatcher) -> None:
    order = limit(BUY, "2", "99.5")
    apply(order, matcher.submit(order, 10))
    events = apply(order, matcher.on_trade(trade(99.4, 0.001, 11)))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [(D("99.5"), D("2"))]
    assert order.status is OrderStatus.FILLED


def test_a_shrinking_level_shrinks_the_queue_ahead(matcher: BookMatcher) -> None:
    order = limit(SELL, "1", "100.5")
    apply(order, matcher.submit(order, 10))
    (work,) = matcher.open_orders()
    assert work.queue_ahead == D("2")
    matcher.on_book(delta(SELL, 100.5, 0.5, 11))
    assert work.queue_ahead == D("0.5")
    matcher.on_book(delta(SELL, 100.5, 4.0, 12))  # orders joining behind us do not count
    assert work.queue_ahead == D("0.5")


def test_a_book_update_that_crosses_a_resting_order_fills_it_as_maker(
    matcher: BookMatcher,
) -> None:
    order = limit(BUY, "2", "99.6")
    apply(order, matcher.submit(order, 10))
    events = apply(order, matcher.on_book(delta(SELL, 99.6, 0.5, 11)))
    assert [(f.last_px, f.last_qty, f.liquidity) for f in fills(events)] == [
        (D("99.6"), D("0.5"), LiquiditySide.MAKER)
    ]
    assert matcher.book.best_ask == (100.0, 1.0)  # the crossing ask was used up


# -- time in force and post-only ---------------------------------------------------------


def test_fok_is_all_or_nothing(matcher: BookMatcher) -> None:
    too_big = limit(BUY, "4", "100.5", time_in_force=TimeInForce.FOK)
    events = apply(too_big, matcher.submit(too_big, 10))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled]
    assert too_big.filled_qty == 0 and too_big.status is OrderStatus.CANCELED
    assert matcher.book.levels(SELL) == [(100.0, 1.0), (100.5, 2.0), (101.0, 3.0)]
    fits = limit(BUY, "3", "100.5", time_in_force=TimeInForce.FOK)
    events = apply(fits, matcher.submit(fits, 11))
    assert sum(f.last_qty for f in fills(events)) == D("3")
    assert fits.status is OrderStatus.FILLED
    fok_market = market(SELL, "3.001", time_in_force=TimeInForce.FOK)
    events = apply(fok_market, matcher.submit(fok_market, 12))
    assert fills(events) == [] and fok_market.status is OrderStatus.CANCELED


def test_ioc_fills_what_it_can_and_cancels_the_rest(matcher: BookMatcher) -> None:
    order = limit(BUY, "5", "100.5", time_in_force=TimeInForce.IOC)
    events = apply(order, matcher.submit(order, 10))
    assert sum(f.last_qty for f in fills(events)) == D("3")
    assert isinstance(events[-1], OrderCanceled) and matcher.open_orders() == []


def test_post_only_that_would_take_is_rejected(matcher: BookMatcher) -> None:
    order = limit(BUY, "1", "100.0", post_only=True)
    (event,) = apply(order, matcher.submit(order, 10))
    assert isinstance(event, OrderRejected)
    assert "post-only BUY at 100.0 would take liquidity (best ask 100.0)" in event.reason
    maker = limit(BUY, "1", "99.9", post_only=True)
    apply(maker, matcher.submit(maker, 11))
    assert maker.status is OrderStatus.ACCEPTED and matcher.open_orders()[0].queue_ahead == 0


# -- stops -------------------------------------------------------------------------------


def test_stop_market_triggers_on_a_trade_at_the_trigger_and_walks_the_book(
    matcher: BookMatcher,
) -> None:
    order = stop(BUY, "2", "100.2")
    apply(order, matcher.submit(order, 10))
    assert apply(order, matcher.on_trade(trade(100.1, 1.0, 11, aggressor=BUY))) == []
    events = apply(order, matcher.on_trade(trade(100.2, 1.0, 12, aggressor=BUY)))
    assert [(f.last_px, f.last_qty, f.liquidity) for f in fills(events)] == [
        (D("100.0"), D("1"), LiquiditySide.TAKER),
        (D("100.5"), D("1"), LiquiditySide.TAKER),
    ]
    assert order.status is OrderStatus.FILLED


def test_stop_limit_becomes_a_resting_limit_when_triggered(matcher: BookMatcher) -> None:
    order = stop(SELL, "3", trigger="99.5", price="99.4")
    apply(order, matcher.submit(order, 10))
    events = apply(order, matcher.on_trade(trade(99.5, 0.1, 11)))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [(D("99.5"), D("1"))]
    (work,) = matcher.open_orders()
    assert work.is_resting_limit and work.leaves_qty == D("2") and work.price == D("99.4")


def test_stop_already_through_at_submit_triggers_at_once(matcher: BookMatcher) -> None:
    matcher.on_trade(trade(100.3, 1.0, 5))
    order = stop(BUY, "1", "100.2")
    events = apply(order, matcher.submit(order, 10))
    assert [f.last_px for f in fills(events)] == [D("100.0")]


# -- cancel, amend, expiry, refusals -----------------------------------------------------


def test_cancel_and_cancel_of_an_unknown_order(matcher: BookMatcher) -> None:
    order = limit(BUY, "1", "99.0")
    apply(order, matcher.submit(order, 10))
    (event,) = matcher.cancel(order.client_order_id, 11)
    assert isinstance(event, OrderCanceled) and matcher.open_orders() == []
    (event,) = matcher.cancel(order.client_order_id, 12)
    assert isinstance(event, OrderCancelRejected) and "not open" in event.reason


def test_amend_price_requeues_and_may_take(matcher: BookMatcher) -> None:
    order = limit(BUY, "2", "99.0")
    apply(order, matcher.submit(order, 10))
    events = apply(order, matcher.modify(order.client_order_id, 11, price=D("100.0")))
    assert isinstance(events[0], OrderUpdated) and order.price == D("100.0")
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [(D("100.0"), D("1"))]
    assert order.status is OrderStatus.PARTIALLY_FILLED
    with pytest.raises(ValueError, match="quantity 1"):
        matcher.modify(order.client_order_id, 12, quantity=D("1"))
    with pytest.raises(ValueError, match="not open"):
        matcher.modify(ClientOrderId("nope"), 12, price=D("99"))


def test_gtd_order_expires(matcher: BookMatcher) -> None:
    order = limit(BUY, "1", "99.0", time_in_force=TimeInForce.GTD, expire_time_ns=100)
    apply(order, matcher.submit(order, 10))
    assert matcher.expire(99) == []
    events = apply(order, matcher.on_trade(trade(99.9, 1.0, 100)))
    assert isinstance(events[0], OrderExpired) and order.status is OrderStatus.EXPIRED


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: limit(BUY, "1.0005", "99.0"), "lot size"),
        (lambda: limit(BUY, "1", "99.05"), "tick size"),
        (
            lambda: _sent(Order.trailing_stop(_cid(), SID, IID, SELL, D(1), D(5), ts_init=1)),
            "emulated by the node",
        ),
        (
            lambda: _sent(
                Order.market(_cid(), SID, InstrumentId("ETHUSDT", "SIM"), BUY, D(1), ts_init=1)
            ),
            "ETHUSDT@SIM",
        ),
    ],
)
def test_refused_orders_are_rejected_with_a_reason(matcher: BookMatcher, make, reason) -> None:
    order = make()
    (event,) = apply(order, matcher.submit(order, 10))
    assert isinstance(event, OrderRejected) and reason in event.reason


def test_duplicate_client_order_id_is_rejected(matcher: BookMatcher) -> None:
    order = limit(BUY, "1", "99.0")
    matcher.submit(order, 10)
    (event,) = matcher.submit(order, 11)
    assert isinstance(event, OrderRejected) and "duplicate" in event.reason


def test_time_cannot_run_backwards(matcher: BookMatcher) -> None:
    matcher.on_trade(trade(100.0, 1.0, 50))
    with pytest.raises(ValueError, match="backwards"):
        matcher.submit(market(BUY, "1"), 49)


def test_tick_mode_without_a_book_fills_at_the_last_trade_with_slippage() -> None:
    m = BookMatcher(INST, slippage=BpsSlippage(D("10")))
    order = market(BUY, "1")
    assert isinstance(m.submit(order, 1)[0], OrderRejected)  # no trade yet
    m.on_trade(trade(100.0, 0.5, 2))
    order = market(BUY, "3")
    events = apply(order, m.submit(order, 3))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [(D("100.1"), D("3"))]
    rest = limit(SELL, "2", "100.5")
    apply(rest, m.submit(rest, 4))
    events = apply(rest, m.on_trade(trade(100.5, 1.5, 5, aggressor=BUY)))
    assert [f.last_qty for f in fills(events)] == [D("1.5")]  # no book: nothing ahead


# -- properties --------------------------------------------------------------------------

_price = st.integers(985, 1015)
_actions = st.lists(
    st.one_of(
        st.tuples(st.just("market"), st.sampled_from([BUY, SELL]), st.integers(1, 5000)),
        st.tuples(
            st.just("limit"),
            st.sampled_from([BUY, SELL]),
            st.integers(1, 5000),
            _price,
            st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]),
        ),
        st.tuples(st.just("stop"), st.sampled_from([BUY, SELL]), st.integers(1, 5000), _price),
        st.tuples(st.just("trade"), _price, st.integers(1, 3000)),
        st.tuples(st.just("trade"), _price, st.integers(1, 3000)),
        st.tuples(st.just("book"), st.sampled_from([BUY, SELL]), _price, st.integers(0, 3000)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(_actions)
def test_fills_never_exceed_the_order_and_every_event_is_a_legal_transition(actions) -> None:
    m = BookMatcher(INST)
    m.on_book(snapshot([(99.5, 1.0), (99.0, 2.0)], [(100.0, 1.0), (100.5, 2.0)]))
    orders: list[Order] = []
    by_id: dict[str, Order] = {}
    for ts, action in enumerate(actions, start=2):
        kind = action[0]
        if kind == "market":
            new = market(action[1], str(D(action[2]) / 1000))
        elif kind == "limit":
            new = limit(action[1], str(D(action[2]) / 1000), str(D(action[3]) / 10),
                        time_in_force=action[4])  # fmt: skip
        elif kind == "stop":
            new = stop(action[1], str(D(action[2]) / 1000), str(D(action[3]) / 10))
        else:
            new = None
        if new is not None:
            orders.append(new)
            by_id[new.client_order_id] = new
            events = m.submit(new, ts)
        elif kind == "trade":
            events = m.on_trade(trade(action[1] / 10, action[2] / 1000, ts, aggressor=None))
        elif kind == "book":
            events = m.on_book(delta(action[1], action[2] / 10, action[3] / 1000, ts))
        else:
            if not orders:
                continue
            target = orders[action[1] % len(orders)]
            events = m.cancel(target.client_order_id, ts)
            if any(isinstance(e, OrderCanceled) for e in events):
                target.apply(OrderCancelRequested(ts_ns=ts, client_order_id=target.client_order_id))
            else:
                continue
        for event in events:
            by_id[event.client_order_id].apply(event)  # raises on an overfill/illegal move
        assert not m.book.is_crossed
    for order in orders:
        assert order.filled_qty <= order.quantity
        done = sum((e.last_qty for e in order.events if isinstance(e, OrderFilled)), D(0))
        assert done == order.filled_qty
        work = m.order(order.client_order_id)
        if work is not None:
            assert work.filled_qty == order.filled_qty and order.is_open
        for e in order.events:
            if isinstance(e, OrderFilled) and order.type is OrderType.LIMIT:
                assert order.price is not None
                assert e.last_px <= order.price if order.is_buy else e.last_px >= order.price


# -- real data ---------------------------------------------------------------------------

DATA = Path(__file__).parents[2] / "data"
XRP = InstrumentId("XRPUSDT", "BYBIT")
XRP_INST = Instrument(
    XRP, "XRP", "USDT", "USDT", ContractType.PERPETUAL, D("0.0001"), D("1"),
    maker_fee=D("0.0002"), taker_fee=D("0.00055"),
)  # fmt: skip


def test_market_order_walks_the_real_bybit_book() -> None:
    m = BookMatcher(XRP_INST)
    for update in read_bybit_orderbook(DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip", XRP):
        m.on_book(update)
    # final asks (read off the file): 1.9538 x 6702, 1.9539 x 18558, 1.9540 x 19825
    order = _sent(Order.market(_cid(), SID, XRP, BUY, D("30000"), ts_init=1))
    events = apply(order, m.submit(order, m.ts_ns))
    assert [(f.last_px, f.last_qty) for f in fills(events)] == [
        (D("1.9538"), D("6702")),
        (D("1.9539"), D("18558")),
        (D("1.9540"), D("4740")),
    ]
    expected = (
        D("6702") * D("1.9538") + D("18558") * D("1.9539") + D("4740") * D("1.9540")
    ) / 30000
    assert order.avg_px == expected
    assert m.book.best_ask == (1.954, 19825.0 - 4740.0)


def test_tick_mode_replay_of_real_binance_trades_fills_a_resting_bid() -> None:
    btc = InstrumentId("BTCUSDT", "BINANCE")
    inst = Instrument(
        btc, "BTC", "USDT", "USDT", ContractType.SPOT, D("0.01"), D("0.000001"),
        maker_fee=D("0.001"), taker_fee=D("0.001"),
    )  # fmt: skip
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", btc)
    m = BookMatcher(inst)
    order = _sent(Order.limit(_cid(), SID, btc, BUY, D("0.05"), D("39440.00"), ts_init=1))
    apply(order, m.submit(order, ticks[0].ts_ns))  # no trade yet: it rests, nothing ahead
    assert order.status is OrderStatus.ACCEPTED
    for event in Replay([ticks]):
        apply(order, m.on_trade(event))
    done = fills(order.events)
    assert done and all(f.last_px == D("39440.00") for f in done)
    assert all(f.liquidity is LiquiditySide.MAKER for f in done)
    # the first fill comes with the first sell-aggressor trade at or below the bid
    first = next(t for t in ticks if t.price <= 39440.0 and t.aggressor_side is SELL)
    assert done[0].ts_ns == first.ts_ns
    assert order.status is OrderStatus.FILLED
