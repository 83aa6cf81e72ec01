"""Shared builders for the store tests (SQLite unit tests and the PostgreSQL integration
test run the same round trips)."""

from __future__ import annotations

from decimal import Decimal

from sapphire.domain import (
    AccountBalance,
    AccountId,
    AccountState,
    ClientOrderId,
    ContingencyType,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    OrderUpdated,
    PositionSide,
    RiskEvent,
    StrategyId,
    TimeInForce,
    TradeId,
    TradingState,
    TradingStateChanged,
    TrailingOffsetType,
    VenueOrderId,
)
from sapphire.portfolio import Account, Portfolio, Position
from sapphire.store import Store

# 28 significant digits, and values a float would change.
D28 = Decimal("1234567890.123456789012345678")
TINY28 = Decimal("0.0000000001234567890123456789")
POINT3 = Decimal("0.1") + Decimal("0.2")  # exactly 0.3 in Decimal, not in binary
BTC = InstrumentId("BTC/USDT:USDT", "BYBIT")
ETH = InstrumentId("ETHUSDT", "BYBIT")
S1 = StrategyId("sma-1")
S2 = StrategyId("mom-2")


def exact(a: object, b: object) -> bool:
    """Equal *and* written the same (Decimal("0.30") == Decimal("0.3") but is not exact)."""
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a.as_tuple() == b.as_tuple()
    return a == b


def instrument(min_qty: Decimal | None = Decimal("0.001")) -> Instrument:
    return Instrument(
        BTC,
        "BTC",
        "USDT",
        "USDT",
        ContractType.PERPETUAL,
        Decimal("0.10"),
        Decimal("0.001"),
        maker_fee=Decimal("-0.00025"),
        taker_fee=Decimal("0.00075"),
        min_qty=min_qty,
        max_qty=Decimal("1000.000"),
        min_notional=Decimal("5"),
        max_notional=None,
        multiplier=Decimal("1"),
    )


class Recorder:
    """Applies events to an order and records each one, as the node will."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.ts = 1_700_000_000_000_000_000

    def tick(self) -> int:
        self.ts += 1_000_000
        return self.ts

    def apply(self, order: Order, event: OrderEvent) -> None:
        order.apply(event)
        self.store.record_order_event(order, event, run_id=self.run_id)

    def submit_accept(self, order: Order) -> None:
        coid = order.client_order_id
        self.apply(order, OrderSubmitted(ts_ns=self.tick(), client_order_id=coid))
        venue_id = VenueOrderId(f"v-{coid}")
        self.apply(
            order, OrderAccepted(ts_ns=self.tick(), client_order_id=coid, venue_order_id=venue_id)
        )

    def fill(self, order: Order, qty: Decimal, px: Decimal, trade: str) -> OrderFilled:
        event = OrderFilled(
            ts_ns=self.tick(),
            client_order_id=order.client_order_id,
            trade_id=TradeId(trade),
            last_qty=qty,
            last_px=px,
            liquidity=LiquiditySide.TAKER,
            fee=TINY28,
            fee_currency="USDT",
        )
        self.apply(order, event)
        return event


def sample_orders(rec: Recorder, run_id: str) -> dict[str, Order]:
    """Orders in every interesting state, with 28-digit quantities and prices."""
    ts = rec.tick()
    cid = f"{run_id}-{S1}-"
    filled = Order.limit(
        ClientOrderId(cid + "1"), S1, BTC, OrderSide.BUY, D28, Decimal("100.10"), ts_init=ts
    )
    rec.store.record_order_event(filled, filled.init_event, run_id=run_id)
    rec.submit_accept(filled)
    rec.fill(filled, POINT3, Decimal("100.1"), "t-1")
    rec.fill(filled, D28 - POINT3, Decimal("99.999999999999999999999999"), "t-2")

    partial = Order.stop_limit(
        ClientOrderId(cid + "2"), S1, BTC, OrderSide.SELL, Decimal("2.000"),
        Decimal("90.0"), Decimal("91.0"), ts_init=rec.tick(), reduce_only=True,
        contingency_type=ContingencyType.OCO, linked_order_ids=[ClientOrderId(cid + "3")],
    )  # fmt: skip
    rec.submit_accept(partial)
    rec.fill(partial, Decimal("0.500"), Decimal("90.0"), "t-3")
    rec.apply(
        partial,
        OrderUpdated(
            ts_ns=rec.tick(), client_order_id=partial.client_order_id, price=Decimal("89.9")
        ),
    )

    pending = Order.trailing_stop(
        ClientOrderId(cid + "3"), S1, BTC, OrderSide.SELL, Decimal("2.000"),
        Decimal("1.5"), ts_init=rec.tick(), trailing_offset_type=TrailingOffsetType.PERCENT,
        time_in_force=TimeInForce.GTD, expire_time_ns=rec.ts + 10**12,
        contingency_type=ContingencyType.OCO, linked_order_ids=[ClientOrderId(cid + "2")],
    )  # fmt: skip
    rec.submit_accept(pending)
    coid = pending.client_order_id
    rec.apply(pending, OrderCancelRequested(ts_ns=rec.tick(), client_order_id=coid))
    rec.apply(pending, OrderCancelRejected(ts_ns=rec.tick(), client_order_id=coid, reason="busy"))
    rec.apply(pending, OrderCancelRequested(ts_ns=rec.tick(), client_order_id=coid))

    canceled = Order.market(
        ClientOrderId(f"{run_id}-{S2}-1"), S2, ETH, OrderSide.BUY, Decimal("1"),
        ts_init=rec.tick(),
    )  # fmt: skip
    rec.submit_accept(canceled)
    rec.apply(canceled, OrderCanceled(ts_ns=rec.tick(), client_order_id=canceled.client_order_id))
    return {"filled": filled, "partial": partial, "pending": pending, "canceled": canceled}


def sample_portfolio() -> Portfolio:
    """A portfolio with positions in two strategies after a few fills (28-digit prices)."""
    portfolio = Portfolio(
        Account("USDT", {"USDT": Decimal("10000.000000000000000000000001")}),
        [instrument()],
    )
    portfolio.apply_fill(S1, BTC, OrderSide.BUY, Decimal("0.3"), D28, TINY28, 10)
    portfolio.apply_fill(S1, BTC, OrderSide.SELL, Decimal("0.1"), D28 + 1, TINY28, 20)
    portfolio.apply_fill(S2, BTC, OrderSide.SELL, Decimal("0.05"), Decimal("100.1"), 0, 30)
    return portfolio


def sample_position() -> Position:
    position = Position(BTC, S1)
    position.apply_fill(OrderSide.BUY, Decimal("0.3"), Decimal("100.1"), TINY28, 5)
    position.apply_fill(OrderSide.SELL, Decimal("0.1"), D28, Decimal("0.01"), 6)
    position.apply_funding(Decimal("0.0001"), Decimal("100.2"), 7)
    return position


def sample_account_state(ts_ns: int) -> AccountState:
    return AccountState(
        ts_ns=ts_ns,
        account_id=AccountId("BYBIT-main"),
        balances=(
            AccountBalance("USDT", D28, POINT3),
            AccountBalance("BTC", TINY28),
        ),
        base_currency="USDT",
        reported=True,
    )


def sample_risk_events(ts_ns: int) -> list[RiskEvent | TradingStateChanged]:
    return [
        RiskEvent(
            ts_ns=ts_ns,
            kind="drawdown",
            reason="drawdown 26% above the limit 25%",
            detail={"drawdown": Decimal("0.26"), "limit": Decimal("0.25"), "window": [1, 2]},
        ),
        TradingStateChanged(
            ts_ns=ts_ns + 1,
            state=TradingState.REDUCING,
            previous=TradingState.ACTIVE,
            reason="drawdown",
        ),
        RiskEvent(
            ts_ns=ts_ns + 2, kind="pre_trade", reason="max open orders 5 reached", strategy_id=S1
        ),
        TradingStateChanged(
            ts_ns=ts_ns + 3, state=TradingState.HALTED, reason="kill switch", strategy_id=S2
        ),
    ]


def assert_round_trip(store: Store, run_id: str) -> None:
    """Record every entity, read it back, and require exact equality."""
    inst = instrument()
    store.save_instrument(inst)
    store.save_instrument(instrument(min_qty=None))  # an upsert replaces it
    got = store.instrument(BTC)
    assert got == instrument(min_qty=None)
    assert exact(got.tick_size, Decimal("0.10")) and exact(got.maker_fee, Decimal("-0.00025"))

    store.start_run(run_id, "paper", 1, [S1, S2], {"fee": Decimal("0.0005"), "speed": "100x"})
    rec = Recorder(store, run_id)
    orders = sample_orders(rec, run_id)

    for order in orders.values():
        rebuilt = store.order(order.client_order_id)
        assert rebuilt == order
        assert [e.event_id for e in store.order_events(order.client_order_id)] == [
            e.event_id for e in order.events
        ]
        assert exact(rebuilt.quantity, order.quantity)
        if order.avg_px is not None:
            assert rebuilt.avg_px is not None and exact(rebuilt.avg_px, order.avg_px)
    assert exact(store.order(orders["filled"].client_order_id).filled_qty, D28)

    open_ids = [o.client_order_id for o in store.open_orders(run_id)]
    assert open_ids == [orders["partial"].client_order_id, orders["pending"].client_order_id]
    assert store.open_orders(run_id, S2) == []
    assert len(store.orders(run_id)) == 4
    assert len(store.client_order_ids(run_id, S1)) == 3

    fills = store.fills(run_id)
    assert [f.trade_id for f in fills] == ["t-1", "t-2", "t-3"]
    assert exact(fills[0].last_qty, POINT3) and exact(fills[1].last_qty, D28 - POINT3)
    assert exact(fills[1].last_px, Decimal("99.999999999999999999999999"))
    assert all(exact(f.fee, TINY28) for f in fills)
    assert fills[2].side is OrderSide.SELL and fills[2].venue_order_id == VenueOrderId(
        f"v-{orders['partial'].client_order_id}"
    )
    assert [f.trade_id for f in store.fills(run_id, start_ns=fills[1].ts_ns)] == ["t-2", "t-3"]

    position = sample_position()
    store.save_position(position, run_id=run_id)
    leg = Position(BTC, None, leg=PositionSide.SHORT, multiplier=Decimal("0.001"))
    leg.apply_fill(OrderSide.SELL, D28, Decimal("3000.5"), POINT3, 8)
    store.save_position(leg, run_id=run_id)
    store.save_position(leg, run_id=run_id)  # an upsert, not a second row
    states = store.positions(run_id)
    assert [(p.strategy_id, p.leg) for p in states] == [(None, PositionSide.SHORT), (S1, None)]
    for state, original in zip(states, [leg, position], strict=True):
        for name in state.__slots__:
            assert exact(getattr(state, name), getattr(original, name)), name
    closed = Position(ETH, S2)
    closed.apply_fill(OrderSide.BUY, Decimal("1"), Decimal("10"), 0, 1)
    closed.apply_fill(OrderSide.SELL, Decimal("1"), Decimal("11"), 0, 2)
    store.save_position(closed, run_id=run_id)
    assert len(store.positions(run_id)) == 3
    assert [p.instrument_id for p in store.positions(run_id, open_only=True)] == [BTC, BTC]

    account = sample_account_state(rec.tick())
    store.save_balances(account, run_id=run_id)
    assert store.balances(run_id) == {account.account_id: account}
    stored = store.balances(run_id)[account.account_id]
    assert exact(stored.balances[0].total, D28) and exact(stored.balances[0].locked, POINT3)

    snapshot = sample_portfolio().snapshot(rec.tick(), {BTC: D28})
    store.save_equity_snapshot(snapshot, run_id=run_id)
    (back,) = store.equity_snapshots(run_id)
    for name in ("ts_ns", "currency", "equity", "balance", "unrealized_pnl", "margin_used",
                 "gross_exposure", "net_exposure"):  # fmt: skip
        assert exact(getattr(back, name), getattr(snapshot, name)), name
    assert set(back.strategies) == set(snapshot.strategies) == {S1, S2}
    for sid, pnl in snapshot.strategies.items():
        for name in ("strategy_id", "currency", "realized", "unrealized", "fees", "funding"):
            assert exact(getattr(back.strategies[sid], name), getattr(pnl, name)), name
        assert back.strategies[sid].total == pnl.total

    events = sample_risk_events(rec.tick())
    for event in events:
        store.record_risk_event(event, run_id=run_id)
    store.record_risk_event(events[0], run_id=run_id)  # a retry is not a second event
    assert store.risk_events(run_id) == events
    assert store.trading_state(run_id) is TradingState.REDUCING
    assert store.trading_state(run_id, S2) is TradingState.HALTED
    assert store.trading_state(run_id, S1) is TradingState.ACTIVE

    info = store.finish_run(run_id, rec.tick())
    assert info.status == "FINISHED" and info.config == {"fee": Decimal("0.0005"), "speed": "100x"}
    assert exact(info.config["fee"], Decimal("0.0005"))
    assert [r.run_id for r in store.runs()] == [run_id]
