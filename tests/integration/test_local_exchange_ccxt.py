"""Unmodified ccxt (async and sync) trades against the local Bybit exchange.

The exchange runs with uvicorn on a free local port; ccxt reaches it only because its
`urls` are overridden (every REST and WebSocket address points here) and a guard makes
any name lookup other than the loopback fail, so nothing can reach bybit.com. The replay
is stepped by hand (`state.advance()`), so every fill price is known: it is read from
the replayed bars.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pandas as pd
import pytest
from local_exchange import LINEAR, SPOT, Exchange, frame, no_internet, urls_are_local

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = Exchange(frame)
    yield ex
    ex.server.stop()


def run(ex: Exchange, body: Callable[[Any], Coroutine[Any, Any, Any]], **config: Any) -> Any:
    """Run `body(client)` with an async ccxt client of `ex`, closed afterwards."""

    async def go() -> Any:
        client = ccxt_async.bybit(ex.config(**config))
        for key in ("api", "test", "demotrading"):
            assert urls_are_local(client.urls[key], ex.url) == []
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(go())


def test_ccxt_loads_the_markets_and_reads_market_data(exchange: Exchange) -> None:
    replay = exchange.state.replay

    async def body(c: Any) -> None:
        markets = await c.load_markets()
        assert sorted(markets) == [SPOT, LINEAR]
        assert markets[LINEAR]["swap"] and markets[LINEAR]["linear"]
        assert markets[LINEAR]["precision"] == {
            "amount": 0.001,
            "price": 0.1,
            "cost": None,
            "base": None,
            "quote": None,
        } or (
            markets[LINEAR]["precision"]["amount"] == 0.001
            and markets[LINEAR]["precision"]["price"] == 0.1
        )
        assert markets[SPOT]["spot"] and markets[SPOT]["precision"]["price"] == 0.01
        assert abs(await c.fetch_time() - time.time() * 1000) < 5_000
        ticker = await c.fetch_ticker(LINEAR)
        assert ticker["last"] == replay.close[replay.position - 1]
        assert ticker["bid"] < ticker["last"] < ticker["ask"]
        tickers = await c.fetch_tickers([SPOT])
        assert tickers[SPOT]["last"] == ticker["last"]
        book = await c.fetch_order_book(LINEAR, limit=5)
        assert len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0]
        candles = await c.fetch_ohlcv(LINEAR, "1m", limit=3)
        last = replay.position - 1
        assert candles[-1][:5] == [
            int(replay.time_ms[last]), replay.open[last], replay.high[last], replay.low[last],
            replay.close[last],
        ]  # fmt: skip
        assert [row[0] for row in candles] == sorted(row[0] for row in candles)
        hourly = await c.fetch_ohlcv(LINEAR, "1h", limit=2)
        assert hourly[-1][4] == replay.close[last] and hourly[0][0] + 3_600_000 == hourly[1][0]
        trades = await c.fetch_trades(SPOT, limit=2)
        assert [t["price"] for t in trades] == [replay.close[last - 1], replay.close[last]]

    run(exchange, body)


def test_a_market_order_fills_at_the_next_open_and_opens_a_position(exchange: Exchange) -> None:
    bar = exchange.next_bar()
    fill = Decimal(str(bar["open"]))
    fee = Decimal("0.01") * fill * Decimal("0.00055")

    async def body(c: Any) -> None:
        await c.load_markets()
        order = await c.create_order(
            LINEAR, "market", "buy", 0.01, params={"clientOrderId": "entry-1"}
        )
        assert order["clientOrderId"] == "entry-1"
        before = await c.fetch_order(order["id"], LINEAR)
        assert before["status"] == "open" and before["filled"] == 0
        exchange.state.advance()
        after = await c.fetch_order(order["id"], LINEAR)
        assert after["status"] == "closed" and after["filled"] == 0.01
        assert after["average"] == float(fill)
        assert Decimal(str(after["fee"]["cost"])) == fee
        (closed,) = await c.fetch_closed_orders(LINEAR)
        assert (closed["id"], closed["clientOrderId"]) == (order["id"], "entry-1")
        trades = await c.fetch_my_trades(LINEAR)
        assert [(t["order"], t["price"], t["amount"]) for t in trades] == [
            (order["id"], float(fill), 0.01)
        ]
        (position,) = await c.fetch_positions([LINEAR])
        assert position["side"] == "long" and position["contracts"] == 0.01
        assert position["entryPrice"] == float(fill)
        balance = await c.fetch_balance()
        assert Decimal(str(balance["USDT"]["total"])) == Decimal(100_000) - fee
        closing = await c.create_order(LINEAR, "market", "sell", 0.01, params={"reduceOnly": True})
        exchange.state.advance()
        assert (await c.fetch_order(closing["id"], LINEAR))["status"] == "closed"
        (flat,) = await c.fetch_positions([LINEAR])
        assert flat["contracts"] == 0

    run(exchange, body)


def test_limit_orders_are_amended_canceled_and_listed(exchange: Exchange) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        low = await c.create_order(
            LINEAR, "limit", "buy", 0.01, 30000, params={"clientOrderId": "lo"}
        )
        other = await c.create_order(LINEAR, "limit", "sell", 0.02, 90000)
        (open_low, open_other) = sorted(await c.fetch_open_orders(LINEAR), key=lambda o: o["price"])
        assert (open_low["id"], open_low["price"], open_low["status"]) == (low["id"], 30000, "open")
        assert open_other["id"] == other["id"]
        await c.edit_order(low["id"], LINEAR, "limit", "buy", 0.03, 30100)
        amended = await c.fetch_order(low["id"], LINEAR)
        assert (amended["price"], amended["amount"]) == (30100, 0.03)
        await c.cancel_order(low["id"], LINEAR)
        assert (await c.fetch_order(low["id"], LINEAR))["status"] == "canceled"
        canceled = await c.cancel_all_orders(LINEAR)
        assert [o["id"] for o in canceled] == [other["id"]]
        assert await c.fetch_open_orders(LINEAR) == []
        assert await c.fetch_closed_orders(LINEAR) == []  # nothing filled
        gone = await c.fetch_canceled_orders(LINEAR)
        assert sorted(o["id"] for o in gone) == sorted([low["id"], other["id"]])

    run(exchange, body)


def test_a_resting_limit_order_fills_at_its_price_as_a_maker(exchange: Exchange) -> None:
    state = exchange.state
    replay = state.replay
    # the first coming bar whose low is below the last close: a buy limit there fills
    i = replay.position
    while replay.low[i] >= replay.close[replay.position - 1] - 1:
        i += 1
    price = replay.close[replay.position - 1] - 1

    async def body(c: Any) -> None:
        await c.load_markets()
        order = await c.create_order(LINEAR, "limit", "buy", 0.01, price)
        while state.replay.position <= i:
            state.advance()
        done = await c.fetch_order(order["id"], LINEAR)
        assert done["status"] == "closed" and done["average"] == price
        (trade,) = await c.fetch_my_trades(LINEAR)
        assert trade["takerOrMaker"] == "maker"
        assert Decimal(str(trade["fee"]["cost"])) == Decimal(str(price)) * Decimal(
            "0.01"
        ) * Decimal("0.0002")

    run(exchange, body)


def test_a_stop_triggers_and_reduce_only_closes_the_position(exchange: Exchange) -> None:
    state = exchange.state
    replay = state.replay

    async def body(c: Any) -> None:
        await c.load_markets()
        await c.create_order(LINEAR, "market", "buy", 0.01)
        state.advance()
        last = replay.close[replay.position - 1]
        i = replay.position
        while replay.low[i] > last - 5:
            i += 1
        trigger = last - 5
        stop = await c.create_order(
            LINEAR, "market", "sell", 0.01,
            params={"triggerPrice": trigger, "triggerDirection": "descending", "reduceOnly": True},
        )  # fmt: skip
        waiting = await c.fetch_order(stop["id"], LINEAR)
        assert waiting["status"] == "open" and waiting["triggerPrice"] == trigger
        assert waiting["info"]["orderStatus"] == "Untriggered"
        while replay.position <= i:
            state.advance()
        fired = await c.fetch_order(stop["id"], LINEAR)
        expected = min(trigger, replay.open[i])  # a bar opening below the trigger fills there
        assert fired["status"] == "closed" and fired["average"] == expected
        (flat,) = await c.fetch_positions([LINEAR])
        assert flat["contracts"] == 0

    run(exchange, body)


def test_post_only_ioc_and_fok_orders(exchange: Exchange) -> None:
    state = exchange.state

    async def body(c: Any) -> None:
        await c.load_markets()
        ticker = await c.fetch_ticker(LINEAR)
        taker = await c.create_order(
            LINEAR, "limit", "buy", 0.01, ticker["ask"], params={"postOnly": True}
        )
        refused = await c.fetch_order(taker["id"], LINEAR)
        assert refused["status"] == "canceled"
        assert refused["info"]["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
        maker = await c.create_order(
            LINEAR, "limit", "buy", 0.01, ticker["bid"] - 500, params={"postOnly": True}
        )
        assert (await c.fetch_order(maker["id"], LINEAR))["status"] == "open"
        bar = exchange.next_bar()
        far = await c.create_order(
            LINEAR, "limit", "buy", 0.01, bar["open"] - 1000, params={"timeInForce": "IOC"}
        )
        through = await c.create_order(
            LINEAR, "limit", "buy", 0.02, bar["open"] + 100, params={"timeInForce": "FOK"}
        )
        state.advance()
        missed = await c.fetch_order(far["id"], LINEAR)
        assert (missed["status"], missed["filled"]) == ("canceled", 0)
        filled = await c.fetch_order(through["id"], LINEAR)
        assert (filled["status"], filled["filled"], filled["average"]) == (
            "closed",
            0.02,
            bar["open"],
        )

    run(exchange, body)


def test_spot_trades_move_the_btc_balance(exchange: Exchange) -> None:
    state = exchange.state

    async def body(c: Any) -> None:
        await c.load_markets()
        bar = exchange.next_bar()
        buy = await c.create_order(SPOT, "market", "buy", 0.5)
        state.advance()
        done = await c.fetch_order(buy["id"], SPOT)
        assert (
            done["status"] == "closed" and done["filled"] == 0.5 and done["average"] == bar["open"]
        )
        balance = await c.fetch_balance()
        cost = Decimal("0.5") * Decimal(str(bar["open"]))
        assert balance["BTC"]["total"] == 0.5
        assert Decimal(str(balance["USDT"]["total"])) == Decimal(100_000) - cost * Decimal("1.001")
        sell = await c.create_order(SPOT, "limit", "sell", 0.2, 90000)
        locked = await c.fetch_balance()
        assert (locked["BTC"]["free"], locked["BTC"]["used"]) == (0.3, 0.2)
        with pytest.raises(ccxt.InsufficientFunds):
            await c.create_order(SPOT, "limit", "sell", 0.4, 90000)
        await c.cancel_order(sell["id"], SPOT)

    run(exchange, body)


def test_errors_reach_ccxt_as_its_exceptions(exchange: Exchange) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        with pytest.raises(ccxt.OrderNotFound):
            await c.fetch_order("00000000-0000-0000-0000-000000000000", LINEAR)
        with pytest.raises(ccxt.OrderNotFound):
            await c.cancel_order("00000000-0000-0000-0000-000000000000", LINEAR)
        with pytest.raises(ccxt.InsufficientFunds):
            await c.create_order(LINEAR, "limit", "buy", 100, 40000)
        await c.create_order(LINEAR, "limit", "buy", 0.01, 30000, params={"clientOrderId": "dup"})
        with pytest.raises(ccxt.InvalidOrder, match="duplicate"):
            await c.create_order(
                LINEAR, "limit", "buy", 0.01, 30000, params={"clientOrderId": "dup"}
            )
        with pytest.raises(ccxt.InvalidOrder):  # nothing to reduce
            await c.create_order(LINEAR, "market", "sell", 0.01, params={"reduceOnly": True})
        with pytest.raises(ccxt.BadRequest, match="positionIdx"):  # hedge mode is not offered
            await c.create_order(LINEAR, "limit", "buy", 0.01, 30000, params={"positionIdx": 1})

    run(exchange, body)

    async def balance(c: Any) -> None:
        await c.fetch_balance()

    with pytest.raises(ccxt.AuthenticationError):
        run(exchange, balance, secret="not-the-secret")
    with pytest.raises(ccxt.AuthenticationError):
        run(exchange, balance, apiKey="unknown-key")
    stale = exchange.config()["options"] | {"timeDifference": 10_000}  # signs 10 s in the past
    with pytest.raises(ccxt.InvalidNonce):
        run(exchange, balance, options=stale)


def test_leverage_and_position_mode(exchange: Exchange) -> None:
    async def body(c: Any) -> None:
        await c.load_markets()
        await c.set_leverage(20, LINEAR)
        assert exchange.state.leverage == 20
        with pytest.raises(ccxt.BadRequest):  # 110043: not modified
            await c.set_leverage(20, LINEAR)
        with pytest.raises(ccxt.NoChange):  # already one-way
            await c.set_position_mode(False, LINEAR)
        with pytest.raises(ccxt.BadRequest, match="one-way"):
            await c.set_position_mode(True, LINEAR)
        await c.create_order(LINEAR, "market", "buy", 0.1)
        exchange.state.advance()
        (position,) = await c.fetch_positions([LINEAR])
        assert position["leverage"] == 20
        # the initial margin of the position valued at the mark
        assert position["initialMargin"] == pytest.approx(0.1 * position["markPrice"] / 20)

    run(exchange, body)


def test_the_rate_limit_answers_10006(frame: pd.DataFrame) -> None:
    ex = Exchange(frame, limits={"order": 10, "spot-order": 20, "query": 2, "position": 10})
    try:

        async def body(c: Any) -> None:
            for _ in range(6):
                await c.fetch_balance()

        with pytest.raises(ccxt.RateLimitExceeded):
            run(ex, body, enableRateLimit=False)
    finally:
        ex.server.stop()


def test_sync_ccxt_places_and_reads_an_order(exchange: Exchange) -> None:
    client = ccxt.bybit(exchange.config())
    assert urls_are_local(client.urls["api"], exchange.url) == []
    client.load_markets()
    order = client.create_order(
        LINEAR, "limit", "sell", 0.01, 90000, params={"clientOrderId": "sync-1"}
    )
    (listed,) = client.fetch_open_orders(LINEAR)
    assert (listed["id"], listed["clientOrderId"], listed["side"]) == (
        order["id"],
        "sync-1",
        "sell",
    )
    client.cancel_order(order["id"], LINEAR)
    assert client.fetch_order(order["id"], LINEAR)["status"] == "canceled"
    assert client.fetch_balance()["USDT"]["total"] == 100_000
    assert client.last_request_url.startswith(exchange.url)
