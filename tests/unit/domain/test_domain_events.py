"""Events and market data: validation, immutability, conversion, order book deltas."""

from __future__ import annotations

import dataclasses
import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from order_helpers import COID, IID, SID

from sapphire.domain import (
    AccountBalance,
    AccountId,
    AccountState,
    Bar,
    LiquiditySide,
    OrderAccepted,
    OrderBook,
    OrderBookDelta,
    OrderDenied,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    OrderUpdated,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    PositionSide,
    RiskEvent,
    StrategyId,
    TradeId,
    TradeTick,
    TradingState,
    TradingStateChanged,
    VenueOrderId,
)

D = Decimal


def fill(**kw: object) -> OrderFilled:
    fields: dict[str, object] = {
        "ts_ns": 5, "client_order_id": COID, "trade_id": TradeId("t1"), "last_qty": D(1),
        "last_px": D(100), "liquidity": LiquiditySide.TAKER, "fee": D("0.05"),
        "fee_currency": "USDT",
    }  # fmt: skip
    fields.update(kw)
    return OrderFilled(**fields)  # type: ignore[arg-type]


def test_events_are_frozen_slotted_and_picklable() -> None:
    ev = fill()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.last_qty = D(2)  # type: ignore[misc]
    assert not hasattr(ev, "__dict__")
    assert pickle.loads(pickle.dumps(ev)) == ev
    assert hash(ev) == hash(pickle.loads(pickle.dumps(ev)))


def test_event_ids_are_unique_unless_given() -> None:
    a, b = (
        OrderSubmitted(ts_ns=1, client_order_id=COID),
        OrderSubmitted(ts_ns=1, client_order_id=COID),
    )
    assert a.event_id != b.event_id and a != b
    c = OrderSubmitted(ts_ns=1, client_order_id=COID, event_id="e-1")
    assert c == OrderSubmitted(ts_ns=1, client_order_id=COID, event_id="e-1")
    with pytest.raises(ValueError, match="event_id"):
        OrderSubmitted(ts_ns=1, client_order_id=COID, event_id="")


def test_fill_converts_numbers_to_decimal() -> None:
    ev = fill(last_qty="0.5", last_px=0.1, fee=-0.01, liquidity="MAKER")
    assert (ev.last_qty, ev.last_px, ev.fee) == (D("0.5"), D("0.1"), D("-0.01"))
    assert ev.liquidity is LiquiditySide.MAKER
    assert all(isinstance(x, Decimal) for x in (ev.last_qty, ev.last_px, ev.fee))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"last_qty": D(0)}, "last_qty must be > 0"),
        ({"last_px": D(-1)}, "last_px must be > 0"),
        ({"last_px": float("nan")}, "last_px must be finite"),
        ({"fee": "x"}, "fee is not a number"),
        ({"liquidity": "BOTH"}, "liquidity must be a LiquiditySide"),
        ({"trade_id": "t1"}, "trade_id must be a TradeId"),
        ({"fee_currency": ""}, "fee_currency"),
        ({"ts_ns": -5}, "ts_ns must be >= 0"),
        ({"ts_ns": 1.0}, "ts_ns must be int"),
        ({"ts_ns": True}, "ts_ns must be int"),
        ({"client_order_id": "abc"}, "client_order_id must be a ClientOrderId"),
        ({"venue_order_id": "v"}, "venue_order_id must be a VenueOrderId"),
    ],
)
def test_fill_validation(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fill(**kw)


def test_other_order_events_validate() -> None:
    with pytest.raises(ValueError, match="reason"):
        OrderDenied(ts_ns=1, client_order_id=COID, reason=" ")
    with pytest.raises(ValueError, match="venue_order_id"):
        OrderAccepted(ts_ns=1, client_order_id=COID, venue_order_id="v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantity must be > 0"):
        OrderUpdated(ts_ns=1, client_order_id=COID, quantity=D(0))
    upd = OrderUpdated(ts_ns=1, client_order_id=COID, price="10.5")  # type: ignore[arg-type]
    assert upd.price == D("10.5") and upd.quantity is None
    assert OrderAccepted(ts_ns=1, client_order_id=COID, venue_order_id=VenueOrderId("v"))


def test_position_events_agree_with_their_quantity() -> None:
    common = {"ts_ns": 1, "strategy_id": SID, "instrument_id": IID, "realized_pnl": D(0),
              "currency": "USDT"}  # fmt: skip
    opened = PositionOpened(**common, side=PositionSide.SHORT, quantity=D(-2), avg_px=D(100))  # type: ignore[arg-type]
    assert opened.quantity == D(-2)
    PositionChanged(**common, side=PositionSide.LONG, quantity="0.5", avg_px=D(99))  # type: ignore[arg-type]
    closed = PositionClosed(**common, side=PositionSide.FLAT, quantity=D(0), avg_px=None)  # type: ignore[arg-type]
    assert closed.avg_px is None
    with pytest.raises(ValueError, match="disagrees with quantity"):
        PositionOpened(**common, side=PositionSide.LONG, quantity=D(-1), avg_px=D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PositionOpened needs a LONG or SHORT"):
        PositionOpened(**common, side=PositionSide.FLAT, quantity=D(0), avg_px=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="PositionClosed needs a FLAT"):
        PositionClosed(**common, side=PositionSide.LONG, quantity=D(1), avg_px=D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use PositionClosed"):
        PositionChanged(**common, side=PositionSide.FLAT, quantity=D(0), avg_px=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs avg_px"):
        PositionChanged(**common, side=PositionSide.LONG, quantity=D(1), avg_px=None)  # type: ignore[arg-type]


def test_account_state() -> None:
    state = AccountState(
        ts_ns=1,
        account_id=AccountId("BYBIT-main"),
        balances=[AccountBalance("USDT", D("1000.5"), D("200")), AccountBalance("BTC", "0.1")],  # type: ignore[arg-type]
        base_currency="USDT",
    )
    assert isinstance(state.balances, tuple)
    usdt = state.balance("USDT")
    assert usdt is not None and usdt.free == D("800.5")
    btc = state.balance("BTC")
    assert btc is not None and btc.total == D("0.1") and btc.locked == 0
    assert state.balance("ETH") is None
    with pytest.raises(ValueError, match="duplicate currencies"):
        AccountState(
            ts_ns=1, account_id=AccountId("a"),
            balances=(AccountBalance("USDT", D(1)), AccountBalance("USDT", D(2))),
        )  # fmt: skip
    with pytest.raises(ValueError, match="locked must be >= 0"):
        AccountBalance("USDT", D(1), D(-1))
    with pytest.raises(ValueError, match="AccountBalances"):
        AccountState(ts_ns=1, account_id=AccountId("a"), balances=(("USDT", 1),))  # type: ignore[arg-type]


def test_risk_and_trading_state_events() -> None:
    detail = {"drawdown": 0.26, "limit": 0.25}
    ev = RiskEvent(ts_ns=1, kind="drawdown", reason="drawdown 26% > 25%", detail=detail)
    detail["limit"] = 0.5
    assert ev.detail == {"drawdown": 0.26, "limit": 0.25}  # copied, not shared
    assert isinstance(hash(ev), int)
    with pytest.raises(ValueError, match="kind"):
        RiskEvent(ts_ns=1, kind="", reason="x")
    with pytest.raises(ValueError, match="detail must be a mapping"):
        RiskEvent(ts_ns=1, kind="k", reason="x", detail=[1])  # type: ignore[arg-type]
    change = TradingStateChanged(
        ts_ns=2, state="HALTED", reason="kill switch", previous=TradingState.ACTIVE,  # type: ignore[arg-type]
        strategy_id=StrategyId("s"),
    )  # fmt: skip
    assert change.state is TradingState.HALTED
    with pytest.raises(ValueError, match="TradingState"):
        TradingStateChanged(ts_ns=2, state="PAUSED", reason="x")  # type: ignore[arg-type]


# -- market data ----------------------------------------------------------------------------


def test_bar_validation() -> None:
    bar = Bar(IID, 0, 10, 12, 9, 11, 5)
    assert isinstance(bar.open, float) and bar.high == 12.0
    with pytest.raises(ValueError, match=r"high 10\.5 is below"):
        Bar(IID, 0, 10, 10.5, 9, 11, 5)
    with pytest.raises(ValueError, match=r"low 10\.5 is above"):
        Bar(IID, 0, 10, 12, 10.5, 11, 5)
    with pytest.raises(ValueError, match="volume must be >= 0"):
        Bar(IID, 0, 10, 12, 9, 11, -1)
    with pytest.raises(ValueError, match="close must be finite"):
        Bar(IID, 0, 10, 12, 9, float("nan"), 1)
    with pytest.raises(ValueError, match=r"Bar\.ts_ns"):
        Bar(IID, -1, 10, 12, 9, 11, 1)


def test_trade_tick() -> None:
    tick = TradeTick(IID, 1, 100.5, 0.2, OrderSide.SELL, TradeId("x"))
    assert tick.aggressor_side is OrderSide.SELL
    assert TradeTick(IID, 1, 100.5, 0.2, None, TradeId("x")).aggressor_side is None
    with pytest.raises(ValueError, match="size must be > 0"):
        TradeTick(IID, 1, 100.5, 0, OrderSide.BUY, TradeId("x"))


def test_order_book_snapshot() -> None:
    book = OrderBook(IID, 1, [(100, 1), (99, 2)], [(101, 1.5), (102, 3)])  # type: ignore[arg-type]
    assert (book.best_bid, book.best_ask, book.mid, book.spread) == (100.0, 101.0, 100.5, 1.0)
    empty = OrderBook(IID, 1, (), ())
    assert empty.best_bid is None and empty.mid is None and empty.spread is None
    with pytest.raises(ValueError, match="crossed"):
        OrderBook(IID, 1, ((101.0, 1.0),), ((101.0, 1.0),))
    with pytest.raises(ValueError, match="descending"):
        OrderBook(IID, 1, ((99.0, 1.0), (100.0, 1.0)), ())
    with pytest.raises(ValueError, match="ascending"):
        OrderBook(IID, 1, (), ((102.0, 1.0), (101.0, 1.0)))
    with pytest.raises(ValueError, match="size > 0"):
        OrderBook(IID, 1, ((99.0, 0.0),), ())
    with pytest.raises(ValueError, match=r"\(price, size\)"):
        OrderBook(IID, 1, ((99.0, 1.0, 2.0),), ())  # type: ignore[arg-type]


def test_order_book_delta_updates_inserts_and_removes() -> None:
    book = OrderBook(IID, 1, ((100.0, 1.0), (99.0, 2.0)), ((101.0, 1.0),))
    book = book.apply(OrderBookDelta(IID, 2, OrderSide.BUY, 99.5, 4))
    assert book.bids == ((100.0, 1.0), (99.5, 4.0), (99.0, 2.0))
    book = book.apply(OrderBookDelta(IID, 3, OrderSide.BUY, 100, 0))
    assert book.best_bid == 99.5 and book.ts_ns == 3
    book = book.apply(OrderBookDelta(IID, 4, OrderSide.SELL, 101, 7))
    assert book.asks == ((101.0, 7.0),)
    with pytest.raises(ValueError, match="crossed"):
        book.apply(OrderBookDelta(IID, 5, OrderSide.SELL, 99.5, 1))
    with pytest.raises(ValueError, match="applied to the book"):
        book.apply(OrderBookDelta(IID.parse("ETH@BYBIT"), 5, OrderSide.SELL, 110, 1))


deltas = st.lists(
    st.tuples(
        st.sampled_from(OrderSide),
        st.integers(min_value=1, max_value=40),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)


@given(deltas=deltas)
def test_order_book_matches_a_dict_model(deltas: list[tuple[OrderSide, int, int]]) -> None:
    book = OrderBook(IID, 0, (), ())
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for ts, (side, price, size) in enumerate(deltas, start=1):
        levels = bids if side is OrderSide.BUY else asks
        trial = dict(levels)
        if size:
            trial[float(price)] = float(size)
        else:
            trial.pop(float(price), None)
        new_bids, new_asks = (trial, asks) if side is OrderSide.BUY else (bids, trial)
        crossed = bool(new_bids) and bool(new_asks) and max(new_bids) >= min(new_asks)
        delta = OrderBookDelta(IID, ts, side, price, size)
        if crossed:
            with pytest.raises(ValueError, match="crossed"):
                book.apply(delta)
            continue
        book = book.apply(delta)
        bids, asks = new_bids, new_asks
        assert book.bids == tuple(sorted(bids.items(), reverse=True))
        assert book.asks == tuple(sorted(asks.items()))
