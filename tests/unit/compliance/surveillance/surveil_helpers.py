"""Synthetic order streams for the surveillance tests: orders driven through the real
order state machine, their events kept in the order they happened, ready to feed the
monitor, to run in batch, or to record in a store."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count

from sapphire.compliance.surveillance import Alert, SurveillanceConfig, surveil_events
from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    OrderType,
    OrderUpdated,
    StrategyId,
    TimeInForce,
    TradeId,
    VenueOrderId,
)
from sapphire.store import Store

BUY, SELL = OrderSide.BUY, OrderSide.SELL
MAKER, TAKER = LiquiditySide.MAKER, LiquiditySide.TAKER
IID = InstrumentId("BTC-PERP", "SIM")
#: 2022-01-03 10:00:00 UTC: times in a tape are seconds after it
T0 = int(datetime(2022, 1, 3, 10, tzinfo=UTC).timestamp()) * 1_000_000_000
NS = 1_000_000_000


def at(seconds: float) -> int:
    """T0 + `seconds`, in int ns."""
    return T0 + round(seconds * NS)


class Tape:
    """Orders of one or more runs and strategies, built event by event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, OrderEvent]] = []
        self.orders: dict[str, tuple[str, Order]] = {}
        self._trades = count(1)

    def _apply(self, cid: str, event: OrderEvent) -> None:
        run, order = self.orders[cid]
        order.apply(event)
        self.events.append((run, event))

    def _new(
        self, cid: str, side: OrderSide, qty: str, t: float, *, price: str | None,
        run: str, strategy: str, iid: InstrumentId, tif: TimeInForce,
    ) -> None:  # fmt: skip
        kind = OrderType.MARKET if price is None else OrderType.LIMIT
        order = Order(
            ClientOrderId(cid), StrategyId(strategy), iid, side, kind, Decimal(qty),
            ts_init=at(t), price=None if price is None else Decimal(price), time_in_force=tif,
        )  # fmt: skip
        self.orders[cid] = (run, order)
        self.events.append((run, order.init_event))
        self._apply(cid, OrderSubmitted(ts_ns=at(t), client_order_id=ClientOrderId(cid)))
        self._apply(
            cid,
            OrderAccepted(
                ts_ns=at(t), client_order_id=ClientOrderId(cid), venue_order_id=VenueOrderId(cid)
            ),
        )

    def limit(
        self, cid: str, side: OrderSide, qty: str, price: str, t: float, *, run: str = "r1",
        strategy: str = "s1", iid: InstrumentId = IID, tif: TimeInForce = TimeInForce.GTC,
    ) -> str:  # fmt: skip
        """A limit order placed and accepted at `t`."""
        self._new(cid, side, qty, t, price=price, run=run, strategy=strategy, iid=iid, tif=tif)
        return cid

    def market(
        self, cid: str, side: OrderSide, qty: str, price: str, t: float, *, run: str = "r1",
        strategy: str = "s1", iid: InstrumentId = IID, trade_id: str | None = None,
    ) -> str:  # fmt: skip
        """A market order placed at `t` and filled there at `price` (TAKER)."""
        self._new(
            cid, side, qty, t, price=None, run=run, strategy=strategy, iid=iid,
            tif=TimeInForce.GTC,
        )  # fmt: skip
        self.fill(cid, t, price, qty, TAKER, trade_id=trade_id)
        return cid

    def fill(
        self, cid: str, t: float, price: str, qty: str | None = None,
        liquidity: LiquiditySide = MAKER, *, trade_id: str | None = None,
    ) -> None:  # fmt: skip
        """An execution of `cid` (its whole rest by default)."""
        order = self.orders[cid][1]
        self._apply(
            cid,
            OrderFilled(
                ts_ns=at(t), client_order_id=ClientOrderId(cid),
                trade_id=TradeId(trade_id or f"T{next(self._trades)}"),
                last_qty=Decimal(qty) if qty is not None else order.leaves_qty,
                last_px=Decimal(price), liquidity=liquidity, fee=Decimal(0), fee_currency="USD",
            ),
        )  # fmt: skip

    def cancel(self, cid: str, t: float) -> None:
        """A cancel requested and confirmed at `t`."""
        self._apply(cid, OrderCancelRequested(ts_ns=at(t), client_order_id=ClientOrderId(cid)))
        self._apply(cid, OrderCanceled(ts_ns=at(t), client_order_id=ClientOrderId(cid)))

    def amend(self, cid: str, t: float, price: str) -> None:
        self._apply(
            cid, OrderUpdated(ts_ns=at(t), client_order_id=ClientOrderId(cid), price=Decimal(price))
        )

    def alerts(self, config: SurveillanceConfig | None = None) -> list[Alert]:
        """The batch run over the tape."""
        return surveil_events(self.events, config)

    def arrivals(self, seed: int) -> list[tuple[str, OrderEvent]]:
        """The events as a node might deliver them: the same moments in time order, but
        the orders within a moment interleaved at random (each order's events in order)."""
        rng = random.Random(seed)
        moments: dict[int, list[list[tuple[str, OrderEvent]]]] = {}
        for run, event in self.events:
            per_order = moments.setdefault(event.ts_ns, [])
            lane = next((lane for lane in per_order if lane[0][1].client_order_id ==
                         event.client_order_id), None)  # fmt: skip
            if lane is None:
                per_order.append([(run, event)])
            else:
                lane.append((run, event))
        out: list[tuple[str, OrderEvent]] = []
        for ts in sorted(moments):
            lanes = [list(lane) for lane in moments[ts]]
            while lanes:
                lane = rng.choice(lanes)
                out.append(lane.pop(0))
                if not lane:
                    lanes.remove(lane)
        return out

    def record(self, store: Store, mode: str = "paper") -> None:
        """Store every order of the tape under its run."""
        runs: dict[str, list[Order]] = {}
        for run, order in self.orders.values():
            runs.setdefault(run, []).append(order)
        for run, orders in runs.items():
            strategies = sorted({str(o.strategy_id) for o in orders})
            store.start_run(run, mode, min(o.ts_init for o in orders), strategy_ids=strategies)
            for order in orders:
                store.record_order_event(order, order.events[-1], run_id=run)


def only(alerts: Sequence[Alert]) -> Alert:
    """The one alert (fails naming them all otherwise)."""
    assert len(alerts) == 1, [a.explanation for a in alerts]
    return alerts[0]
