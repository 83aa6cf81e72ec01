"""The node trading against `MarketVenue`: matching from real trade ticks and L2 books,
latency, and the liquidation of a leveraged perpetual, with the node's books always
equal to the venue's."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderBook,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderStatus,
    TradeId,
    TradeTick,
)
from sapphire.engine import EventStrategy, TradingNode
from sapphire.sim.book import L2Book
from sapphire.sim.exchange import MarketVenue
from sapphire.sim.liquidation import Liquidation, LiquidationRule
from sapphire.sim.matching import vwap
from sapphire.sim.models import FixedLatency
from sapphire.sim.replay import read_binance_trades, read_bybit_orderbook

DATA = Path(__file__).resolve().parents[2] / "data"
D = Decimal
SPOT = InstrumentId("BTCUSDT", "BINANCE")
SPOT_INST = Instrument(
    SPOT, "BTC", "USDT", "USDT", ContractType.SPOT, D("0.01"), D("0.000001"),
    maker_fee=D("0.001"), taker_fee=D("0.001"),
)  # fmt: skip
XRP = InstrumentId("XRPUSDT", "BYBIT")
XRP_INST = Instrument(
    XRP, "XRP", "USDT", "USDT", ContractType.PERPETUAL, D("0.0001"), D("1"),
    maker_fee=D("0.0002"), taker_fee=D("0.00055"),
)  # fmt: skip
PERP = InstrumentId("BTCUSDT", "SIM")
PERP_INST = Instrument(
    PERP, "BTC", "USDT", "USDT", ContractType.PERPETUAL, D("0.1"), D("0.001"),
    maker_fee=D("0.0002"), taker_fee=D("0.0005"),
)  # fmt: skip


class Trader(EventStrategy):
    """Runs `act(self, n)` on the n-th market-data event; records what it is told."""

    def __init__(self, act: Callable[[Trader, int], None]) -> None:
        super().__init__("trader")
        self.act = act
        self.n = 0
        self.fills: list[tuple[int, OrderFilled]] = []  # (node clock, fill)
        self.updates: list[OrderEvent] = []

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.act(self, self.n)
        self.n += 1

    def on_order_book(self, book: OrderBook) -> None:
        self.act(self, self.n)
        self.n += 1

    def on_fill(self, order: Order, fill: OrderFilled) -> None:
        self.fills.append((self.now_ns(), fill))

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        self.updates.append(event)


def node_with(
    venue: MarketVenue, act: Callable[[Trader, int], None], **subs: object
) -> tuple[TradingNode, Trader]:
    node = TradingNode(venue, run_id="r")
    trader = Trader(act)
    node.add_strategy(trader, **subs)  # type: ignore[arg-type]
    node.start()
    return node, trader


def check_books(node: TradingNode, venue: MarketVenue) -> None:
    """The node's account equals the venue's, and cash + marked positions = equity."""
    account = node.portfolio.account
    assert account.balances == {k: v for k, v in venue.account.balances.items() if v}
    for iid in venue.instruments:
        assert node.portfolio.net_quantity(iid) == venue.position(iid)
    cash = account.balance(venue.currency)
    marked = D(0)
    for iid, inst in venue.instruments.items():
        qty = venue.position(iid)
        if qty:
            pos = node.portfolio.position(node.strategies[0].strategy_id, iid)
            assert pos is not None
            if inst.contract_type is ContractType.SPOT:
                marked += qty * venue.marks[iid]  # the base currency held
            else:
                marked += pos.unrealized_pnl(venue.marks[iid])
    assert cash + marked == venue.equity() == account.equity(venue.marks)


def test_strategy_limit_rests_then_fills_partially_and_fully_on_real_trades() -> None:
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", SPOT)
    venue = MarketVenue([SPOT_INST], cash=100_000)

    def act(s: Trader, n: int) -> None:
        if n == 1000:
            s.submit_order(s.limit(SPOT, "BUY", "0.5", "39516.16"))

    node, trader = node_with(venue, act, trade_ticks=[SPOT])
    statuses = []
    for tick in ticks:
        node.process_trade_tick(tick)
        statuses += [o.status for o in node.orders.values()]
        check_books(node, venue)
    (order,) = node.orders.values()
    assert order.status is OrderStatus.FILLED
    assert OrderStatus.PARTIALLY_FILLED in statuses
    fills = [f for _, f in trader.fills]
    assert [f.last_qty for f in fills] == [
        D("0.037071"), D("0.046336"), D("0.118797"), D("0.012648"), D("0.025147"),
        D("0.260001"),
    ]  # fmt: skip
    at = (1175, 1178, 1179, 1180, 1181, 1182)
    assert [clock for clock, _ in trader.fills] == [ticks[i].ts_ns for i in at]
    assert all(f.last_px == D("39516.16") and f.liquidity is LiquiditySide.MAKER for f in fills)
    assert order.avg_px == D("39516.16")
    assert node.portfolio.net_quantity(SPOT) == D("0.5")


def test_strategy_market_order_walks_the_real_bybit_book() -> None:
    updates = read_bybit_orderbook(DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip", XRP)
    venue = MarketVenue([XRP_INST], cash=100_000)

    def act(s: Trader, n: int) -> None:
        if n == len(updates) - 1:
            s.submit_order(s.market(XRP, "BUY", "30000"))

    node, trader = node_with(venue, act, order_books=[XRP])
    book = L2Book(XRP)
    for update in updates:
        book.apply_update(update)
        node.process_order_book(book.to_order_book())
        check_books(node, venue)
    assert node.clock.now_ns() == updates[-1].ts_ns  # book time moved the clock
    fills = [f for _, f in trader.fills]
    assert [(f.last_px, f.last_qty) for f in fills] == [
        (D("1.9538"), D("6702")),
        (D("1.9539"), D("18558")),
        (D("1.9540"), D("4740")),
    ]
    cost = D("6702") * D("1.9538") + D("18558") * D("1.9539") + D("4740") * D("1.9540")
    (order,) = node.orders.values()
    assert order.avg_px == vwap(fills) == cost / 30000
    assert node.portfolio.account.balance("USDT") == D(100_000) - cost * D("0.00055")


def test_latency_shifts_when_and_at_what_price_the_strategy_fills() -> None:
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", SPOT)

    def run(latency: FixedLatency | None) -> tuple[int, OrderFilled]:
        venue = MarketVenue([SPOT_INST], cash=100_000, latency=latency)

        def act(s: Trader, n: int) -> None:
            if n == 90:
                s.submit_order(s.market(SPOT, "BUY", "0.01"))

        node, trader = node_with(venue, act, trade_ticks=[SPOT])
        for tick in ticks[:200]:
            node.process_trade_tick(tick)
            if latency is None:  # with latency the node learns of fills later
                check_books(node, venue)
        assert node.portfolio.net_quantity(SPOT) == D("0.01")
        check_books(node, venue)
        (seen,) = trader.fills
        return seen

    seen0, fill0 = run(None)
    assert (seen0, fill0.ts_ns, fill0.last_px) == (ticks[90].ts_ns, ticks[90].ts_ns, D("39449.07"))
    seen, fill = run(FixedLatency(submit_ns=50_000_000, report_ns=20_000_000))
    assert fill.ts_ns == ticks[90].ts_ns + 50_000_000  # matched on arrival ...
    assert fill.last_px == D("39449.28")  # ... at the price of that moment
    assert seen == ticks[96].ts_ns  # the report reached the node with tick 96
    assert fill.last_px != fill0.last_px and seen > seen0


def test_leveraged_perpetual_is_liquidated_by_a_hand_made_path() -> None:
    rule = LiquidationRule(maintenance_margin_rate=D("0.005"), liquidation_fee_rate=D("0.001"))
    venue = MarketVenue([PERP_INST], cash=1_000, leverage=20, liquidation=rule)
    path = [20000.0, 19000.0, 18500.0, 18100.6, 18100.5, 17000.0]

    def act(s: Trader, n: int) -> None:
        if n == 0:
            s.submit_order(s.market(PERP, "BUY", "0.5"))  # 10x on 1,000
            s.submit_order(s.limit(PERP, "SELL", "0.5", "25000", reduce_only=True))

    node, trader = node_with(venue, act, trade_ticks=[PERP])
    seen: list[Liquidation] = []
    node.bus.subscribe(Liquidation, seen.append)
    for ts, px in enumerate(path):
        node.process_trade_tick(TradeTick(PERP, ts, px, 1.0, OrderSide.SELL, TradeId(f"t{ts}")))
        check_books(node, venue)
        if ts < 4:
            assert node.portfolio.net_quantity(PERP) == D("0.5")
    (liq,) = seen
    assert (liq.ts_ns, liq.price, liq.quantity) == (4, D("18100.5"), D("0.5"))
    assert liq.price < rule.liquidation_price(D("0.5"), D("20000"), D("995")) < D("18100.6")
    assert (liq.fee, liq.liquidation_fee) == (D("4.525125"), D("9.05025"))
    assert "below the maintenance margin" in liq.reason
    take_profit = next(o for o in node.orders.values() if o.price == D("25000"))
    assert take_profit.status is OrderStatus.CANCELED
    assert any(isinstance(e, OrderCanceled) for e in trader.updates)
    assert node.portfolio.net_quantity(PERP) == 0
    # 1000 - entry fee 5 - loss 949.75 - taker 4.525125 - liquidation fee 9.05025
    assert node.portfolio.account.balance("USDT") == D("31.674625") == venue.balance()
    pos = node.portfolio.position(trader.strategy_id, PERP)
    assert pos is not None and pos.realized_pnl == D("-949.75")
