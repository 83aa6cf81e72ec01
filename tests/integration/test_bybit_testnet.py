"""A smoke test against the real Bybit testnet: load the markets, read the balance, place
a limit order far from the market and cancel it, through `BybitVenue`.

It runs only when `BYBIT_TESTNET_API_KEY` and `BYBIT_TESTNET_API_SECRET` are set (a
testnet key, made at testnet.bybit.com); otherwise it is skipped, saying so. This is the
one test that may reach the internet, and the one allowed skip (also under CI=true).
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

import pytest

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    Order,
    OrderCanceled,
    OrderEvent,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    StrategyId,
)
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.live import BybitVenue
from sapphire.venues.market_data import KlinePoller

SYMBOL = "BTC/USDT:USDT"
KEYS = ("BYBIT_TESTNET_API_KEY", "BYBIT_TESTNET_API_SECRET")

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(k) for k in KEYS),
    reason="BYBIT_TESTNET_API_KEY / BYBIT_TESTNET_API_SECRET are not set: no Bybit testnet "
    "smoke test (set them to a testnet key to run it)",
)


def test_testnet_markets_balance_and_a_far_limit_order_placed_then_cancelled() -> None:
    conn = BybitConnection(BybitEnvironment.TESTNET)
    iid = InstrumentId(SYMBOL, "BYBIT")
    source = KlinePoller(conn, SYMBOL, "1m", iid)
    try:
        last = source.history(5)
        assert len(last) == 5
        price = Decimal(str(last[-1].close)) * Decimal("0.5")
    finally:
        source.close()
    venue = BybitVenue(conn, [SYMBOL]).start()
    try:
        inst = venue.instruments[iid]
        assert venue.balance() >= 0
        wallet, sizes = venue.account()
        assert wallet >= 0 and SYMBOL in sizes
        events: list[OrderEvent] = []
        cid = ClientOrderId(f"smoke-{int(time.time())}")
        order = Order.limit(
            cid, StrategyId("s"), iid, OrderSide.BUY, inst.min_qty or inst.lot_size,
            (price // inst.tick_size) * inst.tick_size, ts_init=0,
        )  # fmt: skip
        order.apply(OrderSubmitted(ts_ns=1, client_order_id=cid))

        def apply(event: OrderEvent) -> None:
            events.append(event)
            order.apply(event)

        venue.on_event = apply
        venue.submit_order(order)
        deadline = time.monotonic() + 20
        while order.status is not OrderStatus.ACCEPTED:
            venue.drain()
            assert order.status is not OrderStatus.REJECTED, venue.reasons
            assert time.monotonic() < deadline, events
            time.sleep(0.1)
        assert venue.cancel_order(str(cid))
        while not any(isinstance(e, OrderCanceled) for e in events):
            venue.drain()
            assert time.monotonic() < deadline + 20, events
            time.sleep(0.1)
        assert order.status is OrderStatus.CANCELED
    finally:
        venue.close()
