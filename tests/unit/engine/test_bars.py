"""The one per-bar step (`sapphire.engine.bars`): a replay (`run_bars`, one feed or
merged feeds) and bars fed one at a time (`process_bar`, as paper trading does) go
through the same step: bar subscribers, then index subscribers where their `bar_mask`
is set, and funding booked at the bar it belongs to."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.domain import Bar, ContractType, Instrument, InstrumentId, OrderFilled
from sapphire.engine import BarFeed, EventStrategy, FundingPaid, TradingNode
from sapphire.engine.adapter import VectorAdapter
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy import get_strategy
from sapphire.strategy.base import Bars

IID = InstrumentId("BTC-PERP", "FTX")
ETH = InstrumentId("ETH-PERP", "FTX")
MIN = 60_000_000_000


def _inst(iid: InstrumentId, base: str) -> Instrument:
    return Instrument(
        iid, base, "USD", "USD", ContractType.PERPETUAL, tick_size=Decimal("1"),
        lot_size=Decimal("0.0001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0007"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    df = btc_df.iloc[:1500]

    def col(name: str) -> Any:
        return df[name].to_numpy(dtype=np.float64)

    return Bars(
        time=pd.DatetimeIndex(df["timestamp"]).as_unit("ns").asi8, open=col("open"),
        high=col("high"), low=col("low"), close=col("close"), volume=col("volume"),
        timeframe_ns=MIN,
    )  # fmt: skip


def _bar(iid: InstrumentId, f: BarFeed | Bars, i: int) -> Bar:
    return Bar(
        instrument_id=iid, ts_ns=int(f.time[i]), open=float(f.open[i]), high=float(f.high[i]),
        low=float(f.low[i]), close=float(f.close[i]), volume=float(f.volume[i]),
    )  # fmt: skip


class Watcher(EventStrategy):
    """A bar subscriber that logs the bars it gets (and never trades)."""

    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        super().__init__("watcher")
        self.log = log

    def on_bar(self, bar: Bar) -> None:
        self.log.append(("bar", self.node.bar_index, bar.ts_ns))


def _drive(bars: Bars, *, one_by_one: bool, watcher: bool) -> tuple[Any, ...]:
    """sma_cross with brackets on real bars, replayed or fed bar by bar with indices."""
    node = TradingNode(SimulatedVenue([_inst(IID, "BTC")], cash=100_000), run_id="a")
    log: list[tuple[Any, ...]] = []
    if watcher:
        node.add_strategy(Watcher(log), bars=[IID])
    adapter = VectorAdapter(
        get_strategy("sma_cross")(short=True), IID, bars=bars, size=0.5, stop_loss=0.004,
        take_profit=0.006,
    )  # fmt: skip
    node.add_strategy(adapter, bars=[IID])
    act = adapter.on_bar_index

    def on_bar_index(i: int) -> None:
        log.append(("index", node.bar_index, i))
        act(i)

    adapter.on_bar_index = on_bar_index  # type: ignore[method-assign]
    fills: list[tuple[Any, ...]] = []
    node.bus.subscribe(
        OrderFilled,
        lambda f: fills.append(
            (node.bar_index, f.client_order_id, f.ts_ns, f.last_px, f.last_qty, f.fee)
        ),
    )
    if one_by_one:
        node.start()
        for i in range(len(bars)):
            node.process_bar(_bar(IID, bars, i), bars.timeframe_ns, index=i)
    else:
        node.run_bars([BarFeed(IID, bars.time, bars.open, bars.high, bars.low, bars.close,
                               bars.volume, bars.timeframe_ns)])  # fmt: skip
    return fills, log, list(node.orders), node.portfolio.account.balance("USD")


@pytest.mark.parametrize("watcher", [False, True], ids=["index-only", "with-a-bar-subscriber"])
def test_process_bar_with_an_index_dispatches_like_the_replay(bars: Bars, watcher: bool) -> None:
    replayed = _drive(bars, one_by_one=False, watcher=watcher)
    fed = _drive(bars, one_by_one=True, watcher=watcher)
    fills, log, _, _ = replayed
    assert len(fills) > 20 and sum(e[0] == "index" for e in log) > 20
    assert fed == replayed  # the same fills, calls, orders and balance
    for k, entry in enumerate(log):
        if entry[0] == "index":
            assert entry[1] == entry[2]  # the node's bar_index is the bar's index
            if watcher:  # bar subscribers first, on the same bar
                assert log[k - 1] == ("bar", entry[2], int(bars.time[entry[2]]))


def test_process_bar_without_an_index_leaves_index_subscribers_alone(bars: Bars) -> None:
    node = TradingNode(SimulatedVenue([_inst(IID, "BTC")], cash=100_000))
    adapter = VectorAdapter(get_strategy("sma_cross")(), IID, bars=bars)
    node.add_strategy(adapter, bars=[IID])
    called: list[int] = []
    adapter.on_bar_index = called.append  # type: ignore[method-assign]
    node.start()
    for i in range(200):
        node.process_bar(_bar(IID, bars, i), MIN)
    assert called == [] and node.bar_index == -1
    assert node.last[IID] == float(bars.close[199])
    with pytest.raises(ValueError, match=r"index=-1 is invalid: expected a bar index >= 0"):
        node.process_bar(_bar(IID, bars, 200), MIN, index=-1)
    node.process_bar(_bar(IID, bars, 200), MIN, index=np.int64(200))  # a NumPy index too
    assert node.bar_index == 200


class Holder(EventStrategy):
    """Takes bar indices; buys 1 on the first bar and holds."""

    wants_bar_index = True

    def __init__(self, n: int) -> None:
        super().__init__("holder")
        self.bar_mask = [i == 0 for i in range(n)]

    def on_bar_index(self, i: int) -> None:
        self.submit_order(self.market(IID, "BUY", "1"))


def _flat(iid: InstrumentId, n: int, price: float, funding: np.ndarray | None) -> BarFeed:
    c = np.full(n, price)
    return BarFeed(iid, np.arange(n, dtype=np.int64) * MIN, c, c + 1, c - 1, c, np.ones(n), MIN,
                   funding)  # fmt: skip


@pytest.mark.parametrize("mode", ["replay", "replay-with-a-bar-subscriber", "merged", "by-bar"])
def test_funding_is_booked_at_the_bar_it_belongs_to(mode: str) -> None:
    n = 10
    rates = np.zeros(n)
    rates[[4, 7]] = 0.001
    venue = SimulatedVenue([_inst(IID, "BTC"), _inst(ETH, "ETH")], cash=100_000)
    node = TradingNode(venue)
    node.add_strategy(Holder(n), bars=[IID])
    if mode == "replay-with-a-bar-subscriber":
        node.add_strategy(Watcher([]), bars=[IID])
    paid: list[tuple[int, int]] = []
    node.bus.subscribe(FundingPaid, lambda e: paid.append((node.bar_index, e.ts_ns)))
    feed = _flat(IID, n, 100.0, rates)
    if mode == "by-bar":
        node.start()
        for i in range(n):
            node.process_bar(_bar(IID, feed, i), MIN, funding_rate=float(rates[i]), index=i)
    elif mode == "merged":
        node.run_bars([feed, _flat(ETH, n, 10.0, None)])
    else:
        node.run_bars([feed])
    assert paid == [(4, 4 * MIN), (7, 7 * MIN)]
    assert node.portfolio.net_quantity(IID) == 1
