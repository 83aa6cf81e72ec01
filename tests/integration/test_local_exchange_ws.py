"""Unmodified ccxt.pro reads the local Bybit exchange's WebSocket streams.

Every REST and WebSocket URL of the client points at the local server and `no_internet`
makes any other name lookup fail. The replay is stepped by hand (`state.advance()`),
after the test has waited until the server holds the subscription, so each update is
the one of a known bar.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.pro as ccxtpro
import pandas as pd
import pytest
from local_exchange import LINEAR, SPOT, Exchange, frame, no_internet, urls_are_local

__all__ = ["frame", "no_internet"]  # fixtures pytest finds here


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = Exchange(frame)
    yield ex
    ex.server.stop()


def pro_config(ex: Exchange) -> dict[str, Any]:
    """`ex.config()` plus the one WebSocket URL only ccxt.pro holds (the non-unified spot
    account's private stream), so that every URL is local."""
    config = ex.config()
    for urls in config["urls"].values():
        spot = urls["ws"]["private"]["spot"]
        spot["nonUnified"] = spot["unified"]
    return config


def run(ex: Exchange, body: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run `body(client)` with a ccxt.pro client of `ex` (every URL local), closed after."""

    async def go() -> Any:
        client = ccxtpro.bybit(pro_config(ex))
        for key in ("api", "test", "demotrading"):
            assert urls_are_local(client.urls[key], ex.url) == []
        try:
            await client.load_markets()
            return await asyncio.wait_for(body(client), timeout=30)
        finally:
            await client.close()

    return asyncio.run(go())


async def subscribed(ex: Exchange, *topics: str) -> None:
    """Wait until the server holds each of `topics`."""
    hub = ex.server.server.config.app.state.streams
    for _ in range(500):
        await asyncio.sleep(0.01)  # also lets the watching tasks reach their futures
        if all(hub.subscribed(t) for t in topics):
            return
    raise AssertionError(f"the server never held {topics}")


def test_the_streamed_book_follows_the_rest_book(exchange: Exchange) -> None:
    replay = exchange.state.replay

    async def body(c: Any) -> None:
        first = await c.watch_order_book(LINEAR, 50)  # ccxt updates this book in place
        snapshot = ([list(b) for b in first["bids"]], [list(a) for a in first["asks"]])
        rest = await c.fetch_order_book(LINEAR, 50)
        assert snapshot == (rest["bids"], rest["asks"])
        for _ in range(3):
            exchange.state.advance()
        book = first
        while book["timestamp"] != replay.now_ms:  # the three deltas, applied in turn
            book = await c.watch_order_book(LINEAR, 50)
        rest = await c.fetch_order_book(LINEAR, 50)
        assert (book["bids"], book["asks"]) == (rest["bids"], rest["asks"])
        assert (rest["bids"], rest["asks"]) != snapshot  # the deltas moved it
        top = await c.watch_order_book(SPOT, 1)
        spot = await c.fetch_order_book(SPOT, 1)
        assert (top["bids"], top["asks"]) == (spot["bids"], spot["asks"])

    run(exchange, body)


def test_trades_ticker_and_candles_stream_each_bar(exchange: Exchange) -> None:
    replay = exchange.state.replay

    async def body(c: Any) -> None:
        ticker = await c.watch_ticker(LINEAR)
        assert ticker["last"] == replay.close[replay.position - 1]
        spot_ticker = await c.watch_ticker(SPOT)
        assert spot_ticker["last"] == ticker["last"]
        trades = asyncio.create_task(c.watch_trades(LINEAR))
        candles = asyncio.create_task(c.watch_ohlcv(LINEAR, "1m"))
        delta = asyncio.create_task(c.watch_ticker(LINEAR))
        await subscribed(exchange, "publicTrade.BTCUSDT", "kline.1.BTCUSDT")
        bar = exchange.next_bar()
        i = replay.position
        exchange.state.advance()
        (trade,) = await trades
        assert (trade["price"], trade["side"]) == (
            bar["close"],
            "buy" if bar["close"] >= bar["open"] else "sell",
        )
        assert trade["timestamp"] == int(replay.time_ms[i]) + 59_999
        (candle,) = await candles
        assert candle[:5] == [int(replay.time_ms[i]), bar["open"], bar["high"], bar["low"],
                              bar["close"]]  # fmt: skip
        moved = await delta  # merged into the snapshot
        assert moved["last"] == bar["close"]
        assert moved["info"]["markPrice"] == moved["info"]["lastPrice"]
        rest = await c.fetch_ticker(LINEAR)
        assert (moved["bid"], moved["ask"], moved["high"]) == (
            rest["bid"], rest["ask"], rest["high"]
        )  # fmt: skip

    run(exchange, body)


def test_private_streams_report_a_rest_order_and_its_fill(exchange: Exchange) -> None:
    state = exchange.state

    async def body(c: Any) -> None:
        orders = asyncio.create_task(c.watch_orders(LINEAR))
        fills = asyncio.create_task(c.watch_my_trades(LINEAR))
        balance = asyncio.create_task(c.watch_balance())
        await subscribed(exchange, "order", "execution", "wallet")
        positions = await c.watch_positions([LINEAR])  # the REST snapshot first
        assert [p["contracts"] for p in positions] in ([], [0], [0, 0])
        positions = asyncio.create_task(c.watch_positions([LINEAR]))
        await subscribed(exchange, "position")
        placed = await c.create_order(LINEAR, "market", "buy", 0.01, params={"clientOrderId": "w1"})
        (new,) = await orders
        assert (new["id"], new["clientOrderId"], new["status"]) == (placed["id"], "w1", "open")
        filled = asyncio.create_task(c.watch_orders(LINEAR))
        await subscribed(exchange, "order")
        fill = Decimal(str(exchange.next_bar()["open"]))
        state.advance()
        (trade,) = await fills
        assert (trade["order"], trade["price"]) == (placed["id"], float(fill))
        assert trade["amount"] == 0.01
        assert Decimal(str(trade["fee"]["cost"])) == Decimal("0.01") * fill * Decimal("0.00055")
        (position,) = await positions
        assert (position["side"], position["contracts"], position["entryPrice"]) == (
            "long", 0.01, float(fill)
        )  # fmt: skip
        streamed = await balance  # the account at the fill (marked at the last close)
        (usdt,) = streamed["info"][0]["coin"]
        assert Decimal(usdt["walletBalance"]) == 100_000 - Decimal(str(trade["fee"]["cost"]))
        assert streamed["USDT"]["total"] == float(usdt["equity"])
        done = await filled
        assert done[-1]["status"] == "closed" and done[-1]["average"] == float(fill)

    run(exchange, body)


def test_orders_placed_amended_and_canceled_on_the_trade_stream(exchange: Exchange) -> None:
    async def body(c: Any) -> None:
        placed = await c.create_order_ws(
            LINEAR, "limit", "buy", 0.01, 30000, params={"clientOrderId": "ws-1"}
        )
        assert placed["clientOrderId"] == "ws-1"
        resting = await c.fetch_order(placed["id"], LINEAR)
        assert (resting["status"], resting["price"], resting["amount"]) == ("open", 30000, 0.01)
        await c.edit_order_ws(placed["id"], LINEAR, "limit", "buy", 0.02, 30100)
        amended = await c.fetch_order(placed["id"], LINEAR)
        assert (amended["price"], amended["amount"]) == (30100, 0.02)
        await c.cancel_order_ws(placed["id"], LINEAR)
        assert (await c.fetch_order(placed["id"], LINEAR))["status"] == "canceled"
        with pytest.raises(ccxt.InsufficientFunds):  # the REST check, through the stream
            await c.create_order_ws(LINEAR, "limit", "buy", 100, 40000)
        with pytest.raises(ccxt.OrderNotFound):
            await c.cancel_order_ws(placed["id"], LINEAR)
        assert [o["id"] for o in await c.fetch_canceled_orders(LINEAR)] == [placed["id"]]

    run(exchange, body)
