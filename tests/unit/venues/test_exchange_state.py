"""The local exchange's orders and account, driven directly (no HTTP) over known bars."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from sapphire.venues.exchange import ExchangeState, views
from sapphire.venues.exchange.errors import (
    BAD_PARAM,
    DUPLICATE_LINK_ID,
    INSUFFICIENT_CONTRACT,
    INSUFFICIENT_SPOT,
    LEVERAGE_MARGIN,
    LEVERAGE_UNCHANGED,
    ORDER_NOT_FOUND,
    REDUCE_ONLY,
    BybitError,
)
from sapphire.venues.exchange.trading import (
    amend,
    cancel,
    cancel_all,
    create,
    executions,
    history,
    realtime,
)

# bars 0-1 are history (last price 50000); bar 2 opens at 50100 and dips to 49900; bar 3
# falls to 49500
BARS = [
    (50000, 50010, 49990, 50000),
    (50000, 50020, 49980, 50000),
    (50100, 50200, 49900, 50050),
    (50050, 50060, 49500, 49600),
    (49600, 49700, 49550, 49650),
]
L = {"category": "linear", "symbol": "BTCUSDT"}
S = {"category": "spot", "symbol": "BTCUSDT"}


@pytest.fixture
def state() -> ExchangeState:
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=len(BARS), freq="1min", tz="UTC"),
            "open": [b[0] for b in BARS],
            "high": [b[1] for b in BARS],
            "low": [b[2] for b in BARS],
            "close": [b[3] for b in BARS],
            "volume": [1_000_000.0] * len(BARS),
        }
    )
    return ExchangeState(frame, history=2, clock=lambda: 1_700_000_000_000)


def order_of(state: ExchangeState, answer: dict[str, str]) -> dict[str, Any]:
    return views.order(state, state.orders[answer["orderId"]])


def refused(code: int, call: Any, *args: Any) -> str:
    with pytest.raises(BybitError) as err:
        call(*args)
    assert err.value.code == code, err.value.message
    return err.value.message


def test_a_market_order_fills_at_the_next_open_with_the_taker_fee(state: ExchangeState) -> None:
    published: list[str] = []
    state.subscribe(lambda topic, data: published.append(topic))
    answer = create(
        state, L | {"side": "Buy", "orderType": "Market", "qty": "0.1", "orderLinkId": "m1"}
    )
    assert order_of(state, answer)["orderStatus"] == "New"
    assert published == ["order"]
    state.advance()
    view = order_of(state, answer)
    assert (view["orderStatus"], view["avgPrice"], view["cumExecQty"]) == ("Filled", "50100", "0.1")
    fee = Decimal("0.1") * 50100 * Decimal("0.00055")
    assert Decimal(view["cumExecFee"]) == fee
    assert published[1:] == ["order", "execution", "position", "wallet", "order", "bar"]
    position = views.position(state, state.market("linear", "BTCUSDT"))
    assert (position["side"], position["size"], position["avgPrice"]) == ("Buy", "0.1", "50100")
    # marked at the last close 50050: 0.1 * -50
    assert position["unrealisedPnl"] == "-5"
    wallet = views.wallet(state)
    (usdt,) = wallet["coin"]
    assert Decimal(usdt["walletBalance"]) == 100_000 - fee
    im = Decimal("0.1") * 50050 / 10
    assert Decimal(usdt["availableToWithdraw"]) == 100_000 - fee - 5 - im
    (fill,) = executions(state, L)["list"]
    assert (fill["execPrice"], fill["execQty"], fill["isMaker"]) == ("50100", "0.1", False)


def test_a_resting_limit_fills_at_its_price_as_a_maker(state: ExchangeState) -> None:
    answer = create(
        state, L | {"side": "Buy", "orderType": "Limit", "qty": "0.2", "price": "49950"}
    )
    assert order_of(state, answer)["orderStatus"] == "New"
    state.advance()  # bar 2 dips to 49900
    view = order_of(state, answer)
    assert (view["orderStatus"], view["avgPrice"]) == ("Filled", "49950")
    assert Decimal(view["cumExecFee"]) == Decimal("0.2") * 49950 * Decimal("0.0002")


def test_ioc_and_fok_meet_the_next_open_only(state: ExchangeState) -> None:
    missed = create(
        state,
        L
        | {
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.1",
            "price": "50050",
            "timeInForce": "IOC",
        },
    )
    hit = create(
        state,
        L
        | {
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.1",
            "price": "50100",
            "timeInForce": "FOK",
        },
    )
    state.advance()  # opens at 50100, later trades 49900: an IOC never waits for that
    assert order_of(state, missed)["orderStatus"] == "Cancelled"
    assert order_of(state, missed)["rejectReason"] == "EC_NoImmediateQtyToFill"
    view = order_of(state, hit)
    assert (view["orderStatus"], view["avgPrice"]) == ("Filled", "50100")
    assert executions(state, L)["list"][0]["isMaker"] is False


def test_a_post_only_order_that_would_take_is_canceled_at_once(state: ExchangeState) -> None:
    # the synthetic book around the last price 50000: bid 49999.9, ask 50000.1
    taker = create(
        state,
        L
        | {
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.1",
            "price": "50000.1",
            "timeInForce": "PostOnly",
        },
    )
    maker = create(
        state,
        L
        | {
            "side": "Buy",
            "orderType": "Limit",
            "qty": "0.1",
            "price": "49000",
            "timeInForce": "PostOnly",
        },
    )
    assert order_of(state, taker)["orderStatus"] == "Cancelled"
    assert order_of(state, taker)["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    assert order_of(state, maker)["orderStatus"] == "New"


def test_a_quote_amount_spot_buy_spends_at_most_that_amount(state: ExchangeState) -> None:
    answer = create(state, S | {"side": "Buy", "orderType": "Market", "qty": "1000"})
    state.advance()
    view = order_of(state, answer)
    qty = Decimal(view["cumExecQty"])
    assert qty == (Decimal(1000) / (50100 * Decimal("1.001"))).quantize(
        Decimal("0.000001"), "ROUND_DOWN"
    )
    spent = Decimal(view["cumExecValue"]) + Decimal(view["cumExecFee"])
    assert 999 < spent <= 1000
    assert state.venue.account.balance("BTC") == qty
    sell = create(
        state, S | {"side": "Sell", "orderType": "Limit", "qty": str(qty), "price": "60000"}
    )
    assert state.locked("BTC") == qty and state.available("BTC") == 0
    cancel(state, S | {"orderId": sell["orderId"]})
    assert state.available("BTC") == qty


def test_stops_trigger_with_their_side_and_take_profits_fill_at_the_trigger(
    state: ExchangeState,
) -> None:
    create(state, L | {"side": "Buy", "orderType": "Market", "qty": "0.1"})
    state.advance()  # long 0.1 at 50100, last 50050
    stop = create(
        state,
        L
        | {
            "side": "Sell",
            "orderType": "Market",
            "qty": "0.05",
            "triggerPrice": "49800",
            "triggerDirection": 2,
            "reduceOnly": True,
        },
    )
    profit = create(
        state,
        L
        | {
            "side": "Sell",
            "orderType": "Market",
            "qty": "0.05",
            "triggerPrice": "50055",
            "triggerDirection": 1,
            "reduceOnly": True,
        },
    )
    assert order_of(state, stop)["orderStatus"] == "Untriggered"
    state.advance()  # bar 3: 50050 -> 50060 -> 49500 -> 49600
    assert (order_of(state, profit)["orderStatus"], order_of(state, profit)["avgPrice"]) == (
        "Filled",
        "50055",
    )
    assert (order_of(state, stop)["orderStatus"], order_of(state, stop)["avgPrice"]) == (
        "Filled",
        "49800",
    )
    assert state.position_qty(state.market("linear", "BTCUSDT")) == 0
    makers = {e["orderId"]: e["isMaker"] for e in executions(state, L)["list"]}
    assert (makers[profit["orderId"]], makers[stop["orderId"]]) == (True, False)


def test_a_limit_buy_triggered_on_a_fall_rests_at_the_lower_of_price_and_trigger(
    state: ExchangeState,
) -> None:
    base = L | {"side": "Buy", "orderType": "Limit", "qty": "0.1", "triggerDirection": 2}
    below = create(state, base | {"price": "49950", "triggerPrice": "49980"})
    above = create(state, base | {"price": "49990", "triggerPrice": "49960"})
    assert order_of(state, below)["orderStatus"] == "Untriggered"
    amend(state, L | {"orderId": above["orderId"], "triggerPrice": "49970"})
    state.advance()  # bar 2 dips to 49900: both fill at their level, as makers
    assert [order_of(state, a)["avgPrice"] for a in (below, above)] == ["49950", "49970"]


def test_a_trigger_already_passed_is_refused(state: ExchangeState) -> None:
    base = L | {"side": "Buy", "orderType": "Market", "qty": "0.1"}
    message = refused(
        110092, create, state, base | {"triggerPrice": "49000", "triggerDirection": 1}
    )
    assert "49000" in message and "50000" in message
    refused(110093, create, state, base | {"triggerPrice": "51000", "triggerDirection": 2})


def test_orders_the_account_cannot_pay_for_are_refused(state: ExchangeState) -> None:
    message = refused(
        INSUFFICIENT_CONTRACT,
        create,
        state,
        L | {"side": "Buy", "orderType": "Limit", "qty": "21", "price": "50000"},
    )
    assert "available 100000" in message
    create(
        state, L | {"side": "Buy", "orderType": "Limit", "qty": "19", "price": "50000"}
    )  # margin 95,000
    refused(
        INSUFFICIENT_CONTRACT,
        create,
        state,
        L | {"side": "Buy", "orderType": "Limit", "qty": "2", "price": "50000"},
    )
    refused(
        INSUFFICIENT_SPOT,
        create,
        state,
        S | {"side": "Buy", "orderType": "Limit", "qty": "0.2", "price": "50000"},
    )
    refused(
        INSUFFICIENT_SPOT,
        create,
        state,
        S | {"side": "Sell", "orderType": "Limit", "qty": "0.1", "price": "50000"},
    )


def test_reduce_only_needs_a_position_to_reduce(state: ExchangeState) -> None:
    refused(
        REDUCE_ONLY,
        create,
        state,
        L | {"side": "Sell", "orderType": "Market", "qty": "0.1", "reduceOnly": True},
    )
    create(state, L | {"side": "Sell", "orderType": "Market", "qty": "0.1"})
    state.advance()
    refused(
        REDUCE_ONLY,
        create,
        state,
        L | {"side": "Sell", "orderType": "Market", "qty": "0.1", "reduceOnly": True},
    )
    create(state, L | {"side": "Buy", "orderType": "Market", "qty": "0.1", "reduceOnly": True})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"price": "50000.05"}, "price 50000.05 is not a multiple of 0.1"),
        ({"qty": "0.0015"}, "qty 0.0015 is not a multiple of 0.001"),
        ({"qty": "-1"}, "qty '-1' must be a positive number"),
        ({"side": "buy"}, "side 'buy' must be Buy or Sell"),
        ({"symbol": "ETHUSDT"}, "symbol 'ETHUSDT' is not listed"),
        ({"category": "option"}, "category 'option'"),
        ({"timeInForce": "GTX"}, "timeInForce 'GTX'"),
        ({"orderLinkId": "has space"}, "orderLinkId 'has space'"),
        ({"category": "spot", "qty": "0.00001"}, "qty 0.00001 is below the minimum 0.000048"),
        ({"takeProfit": "60000"}, "takeProfit is not supported"),
    ],
)
def test_bad_parameters_are_10001_naming_the_value(
    state: ExchangeState, change: dict[str, str], named: str
) -> None:
    params = L | {"side": "Buy", "orderType": "Limit", "qty": "0.1", "price": "49000"} | change
    assert named in refused(BAD_PARAM, create, state, params)


def test_a_duplicate_order_link_id_is_110072(state: ExchangeState) -> None:
    params = L | {
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.1",
        "price": "49000",
        "orderLinkId": "same",
    }
    create(state, params)
    assert "same" in refused(DUPLICATE_LINK_ID, create, state, params)


def test_amend_cancel_and_queries(state: ExchangeState) -> None:
    first = create(
        state,
        L
        | {"side": "Buy", "orderType": "Limit", "qty": "0.1", "price": "40000", "orderLinkId": "a"},
    )
    second = create(
        state, L | {"side": "Sell", "orderType": "Limit", "qty": "0.1", "price": "60000"}
    )
    amend(state, L | {"orderLinkId": "a", "qty": "0.3", "price": "41000", "ignored": "x"})
    view = order_of(state, first)
    assert (view["qty"], view["price"], view["leavesQty"]) == ("0.3", "41000", "0.3")
    assert [o["orderId"] for o in realtime(state, L)["list"]] == [
        second["orderId"],
        first["orderId"],
    ]
    cancel(state, L | {"orderId": first["orderId"]})
    assert order_of(state, first)["orderStatus"] == "Cancelled"
    refused(ORDER_NOT_FOUND, cancel, state, L | {"orderId": first["orderId"]})
    refused(ORDER_NOT_FOUND, amend, state, L | {"orderId": "nope", "qty": "1"})
    assert (
        realtime(state, L | {"orderId": first["orderId"]})["list"][0]["orderStatus"] == "Cancelled"
    )
    answer = cancel_all(state, L)
    assert answer["list"] == [{"orderId": second["orderId"], "orderLinkId": ""}]
    assert realtime(state, L)["list"] == []
    assert [o["orderId"] for o in history(state, L | {"orderStatus": "Cancelled"})["list"]] == [
        second["orderId"], first["orderId"],
    ]  # fmt: skip
    assert history(state, L | {"orderStatus": "Filled"})["list"] == []


def test_a_market_order_cannot_be_canceled_before_its_fill(state: ExchangeState) -> None:
    answer = create(state, L | {"side": "Buy", "orderType": "Market", "qty": "0.1"})
    assert "fills at the next price" in refused(
        ORDER_NOT_FOUND, cancel, state, L | {"orderId": answer["orderId"]}
    )


def test_the_leverage_sets_the_initial_margin(state: ExchangeState) -> None:
    create(state, L | {"side": "Buy", "orderType": "Market", "qty": "1"})
    state.advance()  # long 1 at 50100, marked at 50050
    linear = state.market("linear", "BTCUSDT")
    assert views.position(state, linear)["positionIM"] == "5005"
    state.set_leverage(Decimal(20))
    assert views.position(state, linear)["positionIM"] == "2502.5"
    refused(LEVERAGE_UNCHANGED, state.set_leverage, Decimal(20))
    create(state, L | {"side": "Buy", "orderType": "Limit", "qty": "30", "price": "40000"})
    message = refused(LEVERAGE_MARGIN, state.set_leverage, Decimal(10))
    assert "leverage 10" in message
    assert state.leverage == 20  # unchanged after the refusal


def test_a_paced_clock_replays_bars_on_its_own(state: ExchangeState) -> None:
    clock = state.start_clock(speed=60_000)  # a 1-minute bar every millisecond
    deadline = time.monotonic() + 5
    while not state.replay.done and time.monotonic() < deadline:
        time.sleep(0.01)
    clock.stop()
    assert state.replay.done
    with pytest.raises(ValueError, match="speed=0"):
        state.start_clock(0)


def test_the_replay_ends_with_the_data(state: ExchangeState) -> None:
    assert [state.advance() for _ in range(4)] == [True, True, True, False]
    assert state.replay.last == 49650
