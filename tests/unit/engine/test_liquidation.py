"""Liquidations: the venue reports them as events and never changes the node's state;
the node (`TradingNode.on_liquidation`, wired to the venue by the node itself) books
them on its portfolio and publishes them."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np

from sapphire.domain import (
    Bar,
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    OrderFilled,
    OrderSide,
    StrategyId,
    TradeId,
)
from sapphire.engine import BarFeed, EventStrategy, TradingNode
from sapphire.portfolio import Account, Portfolio
from sapphire.sim.exchange import MarketVenue
from sapphire.sim.liquidation import Liquidation, LiquidationRule
from sapphire.sim.venue import SimulatedVenue

IID = InstrumentId("BTC/USDT:USDT", "SIM")
MIN = 60_000_000_000
INST = Instrument(
    IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=D("0.5"),
    lot_size=D("0.001"), maker_fee=D("0.0002"), taker_fee=D("0.0005"),
)  # fmt: skip
RULE = LiquidationRule(D("0.005"), D("0.001"))
# a 10x long of 5 at 20,000 on 10,000 cash, liquidated at the low 18,100.5 of bar 2
OHLC = [
    (20000.0, 20000.0, 20000.0, 20000.0),
    (20000.0, 20100.0, 19900.0, 20000.0),
    (19000.0, 19500.0, 18100.5, 18500.0),
    (15000.0, 15000.0, 14000.0, 14500.0),
]


class BuyFirst(EventStrategy):
    """Buys 5 on the first bar (filled at the next open), then holds."""

    def __init__(self) -> None:
        super().__init__("s")
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        if self.bars == 0:
            self.submit_order(self.market(IID, "BUY", "5"))
        self.bars += 1


def _feed() -> BarFeed:
    o, h, lo, c = (np.array(col) for col in zip(*OHLC, strict=True))
    n = len(OHLC)
    return BarFeed(IID, np.arange(n, dtype=np.int64) * MIN, o, h, lo, c, np.ones(n), MIN)


def _node() -> tuple[TradingNode, SimulatedVenue]:
    venue = SimulatedVenue([INST], cash=10_000, leverage=20, liquidation=RULE)
    node = TradingNode(venue, run_id="liq")
    node.add_strategy(BuyFirst(), bars=[IID])
    return node, venue


def test_the_node_wires_itself_to_the_venue_and_books_the_liquidation() -> None:
    node, venue = _node()
    assert venue.on_liquidation == node.on_liquidation  # nobody else has to wire it
    seen: list[object] = []
    node.bus.subscribe(object, seen.append)
    node.run_bars([_feed()])
    (liq,) = venue.liquidations
    assert (liq.quantity, liq.price, liq.ts_ns) == (D("5"), D("18100.5"), 2 * MIN)
    assert liq in seen  # published on the node's bus, then the position's close
    assert type(seen[seen.index(liq) + 1]).__name__.startswith("Position")
    assert node.portfolio.net_quantity(IID) == 0 == venue.position(IID)
    # 10,000 - entry fee 50 - loss 9,497.5 - taker and liquidation fees 135.75375
    assert node.portfolio.account.balance("USDT") == D("316.74625") == venue.balance()


def test_the_venue_only_reports_it_never_touching_the_node() -> None:
    assert not hasattr(Liquidation, "book")
    node, venue = _node()
    reported: list[Liquidation] = []
    venue.on_liquidation = reported.append  # the node no longer hears of it
    node.run_bars([_feed()])
    (liq,) = reported
    assert venue.position(IID) == 0 and venue.balance() == D("316.74625")
    # the venue liquidated its own account; the node's portfolio is as it was
    assert node.portfolio.net_quantity(IID) == D("5")
    assert node.portfolio.account.balance("USDT") == D("9950")
    node.on_liquidation(liq)
    assert node.portfolio.net_quantity(IID) == 0
    assert node.portfolio.account.balance("USDT") == venue.balance()


def test_a_liquidation_closes_each_strategy_with_a_fee_share() -> None:
    portfolio = Portfolio(Account("USDT", {"USDT": D(1000)}), [INST])
    portfolio.apply_fill(StrategyId("a"), IID, OrderSide.BUY, D("0.3"), D("100"), D(0), 0)
    portfolio.apply_fill(StrategyId("b"), IID, OrderSide.BUY, D("0.1"), D("100"), D(0), 0)
    node = TradingNode(MarketVenue([INST]), portfolio=portfolio)
    fill = OrderFilled(
        ts_ns=5, client_order_id=ClientOrderId("SIM-LIQ-1"), trade_id=TradeId("SIM-LT1"),
        last_qty=D("0.4"), last_px=D("90"), liquidity=LiquiditySide.TAKER, fee=D("0.4"),
        fee_currency="USDT",
    )  # fmt: skip
    liq = Liquidation(
        instrument_id=IID, ts_ns=5, side=OrderSide.SELL, quantity=D("0.4"), price=D("90"),
        fee=D("0.1"), liquidation_fee=D("0.3"), equity=D(0), maintenance_margin=D(1),
        reason="test", fill=fill,
    )  # fmt: skip
    published: list[object] = []
    node.bus.subscribe(object, published.append)
    node.on_liquidation(liq)
    assert len(published) == 3 and published[0] is liq  # then one close per strategy
    assert portfolio.net_quantity(IID) == 0
    pnl_a = portfolio.strategy_pnl(StrategyId("a"), {IID: D(90)})
    assert pnl_a.fees == D("0.3")  # 3/4 of the 0.4
    assert portfolio.account.balance("USDT") == D(1000) - D(4) - D("0.4")
