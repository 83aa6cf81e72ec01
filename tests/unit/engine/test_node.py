"""The trading node: strategy callbacks, deterministic ids, pre-trade risk,
multi-instrument/multi-strategy positions, trade ticks (order emulation: test_emulation;
crash recovery: test_recovery; the bar step: test_bars)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from sapphire.domain import (
    Bar,
    ContractType,
    Instrument,
    InstrumentId,
    Order,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    RiskEvent,
    TradeId,
    TradeTick,
)
from sapphire.engine import BarFeed, EventStrategy, TimeEvent, TradingNode
from sapphire.indicators import SMA
from sapphire.risk import RiskConfig, RiskEngine
from sapphire.sim.venue import SimulatedVenue

BTC = InstrumentId("BTC/USDT:USDT", "SIM")
ETH = InstrumentId("ETH/USDT:USDT", "SIM")
MIN = 60_000_000_000


def inst(iid: InstrumentId, base: str) -> Instrument:
    return Instrument(
        iid, base, "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.01"),
        lot_size=Decimal("0.001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0005"),
    )  # fmt: skip


def feed(iid: InstrumentId, closes: list[float], start: int = 0) -> BarFeed:
    c = np.asarray(closes, dtype=float)
    o = np.concatenate(([c[0]], c[:-1]))
    return BarFeed(
        iid, start + np.arange(len(c), dtype=np.int64) * MIN, o, np.maximum(o, c) + 0.5,
        np.minimum(o, c) - 0.5, c, np.ones(len(c)), MIN,
    )  # fmt: skip


def node_for(*instruments: Instrument, **kw: Any) -> TradingNode:
    venue = SimulatedVenue(list(instruments), cash=100_000, native_trailing=kw.pop("native", True))
    return TradingNode(venue, run_id="t", **kw)


class SmaTrader(EventStrategy):
    """Buys when the close is above its 3-bar SMA, sells back below it."""

    def __init__(self, iid: InstrumentId, name: str = "sma", qty: str = "1") -> None:
        super().__init__(name)
        self.iid, self.qty = iid, Decimal(qty)
        self.sma = SMA(3)
        self.calls: list[str] = []
        self.fills: list[OrderFilled] = []

    def on_start(self) -> None:
        self.calls.append("start")
        self.set_timer("tick", 5 * MIN)

    def on_bar(self, bar: Bar) -> None:
        self.calls.append("bar")
        avg = self.sma.update(bar.close)
        if avg != avg:
            return
        pos = self.position(self.iid)
        if pos == 0 and bar.close > avg:
            self.submit_order(self.market(self.iid, "BUY", self.qty))
        elif pos > 0 and bar.close < avg:
            self.submit_order(self.market(self.iid, "SELL", pos, reduce_only=True))

    def on_fill(self, order: Order, fill: OrderFilled) -> None:
        self.calls.append("fill")
        self.fills.append(fill)

    def on_order_update(self, order: Order, event: OrderEvent) -> None:
        self.calls.append(type(event).__name__)

    def on_timer(self, event: TimeEvent) -> None:
        self.calls.append(f"timer:{event.name}")

    def on_stop(self) -> None:
        self.calls.append("stop")


CLOSES = [100, 101, 102, 103, 104, 103, 101, 99, 98, 99, 101, 103, 104, 102, 100, 98.0]


def test_callbacks_streaming_indicator_and_fills_at_the_next_open() -> None:
    node = node_for(inst(BTC, "BTC"))
    strat = SmaTrader(BTC)
    node.add_strategy(strat, bars=[BTC])
    node.run_bars([feed(BTC, CLOSES)])
    node.stop()
    assert strat.calls[0] == "start" and strat.calls[-1] == "stop"
    assert strat.calls.count("bar") == len(CLOSES)
    assert "timer:tick" in strat.calls and "OrderAccepted" in strat.calls
    assert len(strat.fills) >= 2
    # every fill is at the open of the bar after the decision
    f = feed(BTC, CLOSES)
    for fill in strat.fills:
        i = int(np.searchsorted(f.time, fill.ts_ns))
        assert float(fill.last_px) == f.open[i]
    # the portfolio books them: the strategy is flat at the end, cash moved by fees+pnl
    assert strat.position(BTC) == node.portfolio.net_quantity(BTC)
    assert node.portfolio.account.balance("USDT") == node.venue.balance()


def test_client_order_ids_are_deterministic() -> None:
    runs = []
    for _ in range(2):
        node = node_for(inst(BTC, "BTC"))
        strat = SmaTrader(BTC)
        node.add_strategy(strat, bars=[BTC])
        node.run_bars([feed(BTC, CLOSES)])
        runs.append(list(node.orders))
    assert runs[0] == runs[1]
    assert runs[0][:2] == ["t-sma-1", "t-sma-2"]


def test_risk_denial_is_an_event_with_its_reason() -> None:
    node = node_for(inst(BTC, "BTC"), risk=RiskEngine(RiskConfig(max_notional_per_order=50)))
    strat = SmaTrader(BTC)
    node.add_strategy(strat, bars=[BTC])
    denied: list[OrderDenied] = []
    alerts: list[RiskEvent] = []
    node.bus.subscribe(OrderDenied, denied.append)
    node.bus.subscribe(RiskEvent, alerts.append)
    node.run_bars([feed(BTC, CLOSES)])
    assert denied and "exceeds max_notional_per_order 50" in denied[0].reason
    assert alerts[0].kind == "pre_trade" and alerts[0].reason == denied[0].reason
    assert "OrderDenied" in strat.calls and strat.fills == []
    assert all(o.status.name == "REJECTED" for o in node.orders.values())


def test_two_instruments_two_strategies_keep_their_own_positions() -> None:
    node = node_for(inst(BTC, "BTC"), inst(ETH, "ETH"))
    a = SmaTrader(BTC, "a", qty="1")
    b = SmaTrader(ETH, "b", qty="3")
    c = SmaTrader(BTC, "c", qty="2")
    node.add_strategy(a, bars=[BTC])
    node.add_strategy(b, bars=[ETH])
    node.add_strategy(c, bars=[BTC])
    eth = [x * 0.05 + 10 for x in reversed(CLOSES)]
    node.run_bars([feed(BTC, CLOSES), feed(ETH, eth)])
    assert a.fills and b.fills and c.fills
    assert all(f.client_order_id.startswith("t-a-") for f in a.fills)
    assert all(f.client_order_id.startswith("t-b-") for f in b.fills)
    pnl = node.portfolio.pnl_by_strategy({BTC: Decimal("98"), ETH: Decimal(str(eth[-1]))})
    assert set(pnl) == {"a", "b", "c"}
    # c trades twice a's size on the same signals
    assert c.position(BTC) == 2 * a.position(BTC)
    assert node.portfolio.net_quantity(BTC) == a.position(BTC) + c.position(BTC)
    with pytest.raises(ValueError, match="already in this node"):
        node.add_strategy(SmaTrader(BTC, "a"))


def test_trade_ticks_drive_strategies_and_matching() -> None:
    class TickTrader(EventStrategy):
        def __init__(self) -> None:
            super().__init__("ticks")
            self.fills: list[OrderFilled] = []

        def on_trade_tick(self, tick: TradeTick) -> None:
            if tick.trade_id == "1":
                self.submit_order(self.market(BTC, "BUY", "0.5"))
                self.submit_order(self.limit(BTC, "SELL", "0.5", "101.5"))

        def on_fill(self, order: Order, fill: OrderFilled) -> None:
            self.fills.append(fill)

    node = node_for(inst(BTC, "BTC"))
    strat = TickTrader()
    node.add_strategy(strat, trade_ticks=[BTC])
    for k, px in enumerate([100.0, 100.5, 101.0, 102.0], start=1):
        node.process_trade_tick(
            TradeTick(instrument_id=BTC, ts_ns=k, price=px, size=1.0, aggressor_side=None,
                      trade_id=TradeId(str(k)))
        )  # fmt: skip
    assert [f.last_px for f in strat.fills] == [Decimal("100.5"), Decimal("101.5")]
    assert strat.position(BTC) == 0


def test_paper_mode_feeds_bars_one_by_one_on_a_wall_clock() -> None:
    from sapphire.engine import WallClock

    venue = SimulatedVenue([inst(BTC, "BTC")], cash=100_000)
    node = TradingNode(venue, clock=WallClock(), run_id="p")
    strat = SmaTrader(BTC)
    node.add_strategy(strat, bars=[BTC])
    node.start()
    f = feed(BTC, CLOSES)
    for i in range(len(f)):
        bar = Bar(
            instrument_id=BTC, ts_ns=int(f.time[i]), open=f.open[i], high=f.high[i],
            low=f.low[i], close=f.close[i], volume=1.0,
        )  # fmt: skip
        node.process_bar(bar, MIN, funding_rate=0.0001)
    node.stop()
    # the same decisions as the replay: fills at the next bar's open
    replay = node_for(inst(BTC, "BTC"))
    twin = SmaTrader(BTC)
    replay.add_strategy(twin, bars=[BTC])
    replay.run_bars([feed(BTC, CLOSES)])
    assert [f.last_px for f in strat.fills] == [f.last_px for f in twin.fills]
    # funding was paid on the open position in the paper run only
    assert node.portfolio.account.balance("USDT") != replay.portfolio.account.balance("USDT")
    assert node.portfolio.account.balance("USDT") == venue.balance()
