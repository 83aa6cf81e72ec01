"""Crash safety: a writer killed with SIGKILL loses nothing it was told was committed, and
leaves no half-written transaction behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sapphire.store import Store

WRITER = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    from sapphire.domain import (ClientOrderId, InstrumentId, LiquiditySide, Order,
        OrderAccepted, OrderFilled, OrderSide, OrderSubmitted, StrategyId, TradeId,
        VenueOrderId)
    from sapphire.store import Store

    store = Store(sys.argv[1])
    store.start_run("crash", "paper", 0)
    sid, inst = StrategyId("s"), InstrumentId("BTCUSDT", "BYBIT")
    n = 0
    while True:
        n += 1
        coid = ClientOrderId(f"crash-s-{n}")
        order = Order.market(coid, sid, inst, OrderSide.BUY, Decimal("0.3"), ts_init=n)
        for event in (
            OrderSubmitted(ts_ns=n, client_order_id=coid),
            OrderAccepted(ts_ns=n, client_order_id=coid, venue_order_id=VenueOrderId(f"v{n}")),
            OrderFilled(ts_ns=n, client_order_id=coid, trade_id=TradeId(f"t{n}"),
                        last_qty=Decimal("0.1"), last_px=Decimal("100.01"),
                        liquidity=LiquiditySide.TAKER, fee=Decimal("0.0000001"),
                        fee_currency="USDT"),
        ):
            order.apply(event)
            store.record_order_event(order, event)
            print(f"{n} {len(order.events)}", flush=True)
    """
)


def test_sigkill_loses_no_committed_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    Store(url).close()  # migrate before the writer starts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout is not None
    acknowledged: dict[int, int] = {}
    for line in writer.stdout:
        n, count = map(int, line.split())
        acknowledged[n] = count
        if len(acknowledged) == 25 and count == 3:  # in the middle of order 25's life
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL

    with Store(url) as store:
        orders = {str(o.client_order_id): o for o in store.orders("crash")}
        for n, count in acknowledged.items():
            order = orders[f"crash-s-{n}"]
            assert len(order.events) >= count  # everything acknowledged is there
        for order in orders.values():  # and every stored order replays (no torn writes)
            fills = [f for f in store.fills("crash") if f.client_order_id == order.client_order_id]
            assert len(fills) == (1 if order.filled_qty else 0)
            assert order.filled_qty == sum((f.last_qty for f in fills), start=0)
