"""VectorAdapter: a vectorised strategy inside the node; incremental (rolling window)
evaluation equals the batch evaluation for causal strategies."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import bars_from_frame
from sapphire.domain import Bar, ContractType, Instrument, InstrumentId, OrderFilled
from sapphire.engine import BarFeed, TradingNode, VectorAdapter
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy import get_strategy
from sapphire.strategy.base import Bars, Signals
from sapphire.strategy.signals import normalize_signals

IID = InstrumentId("BTC-PERP", "FTX")
INSTRUMENT = Instrument(
    IID, "BTC", "USD", "USD", ContractType.PERPETUAL, tick_size=Decimal("1"),
    lot_size=Decimal("0.0001"), maker_fee=Decimal("0.0002"), taker_fee=Decimal("0.0007"),
)  # fmt: skip


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df.iloc[:900].reset_index(drop=True))


@pytest.mark.parametrize(
    "name,params",
    [
        ("sma_cross", {"short": True}),
        ("momentum", {"short": True}),
        ("mean_reversion", {"short": True}),
        ("volatility_breakout", {"short": True}),
    ],
)
def test_incremental_signals_equal_batch(bars: Bars, name: str, params: dict) -> None:
    strategy = get_strategy(name)(**params)
    batch = normalize_signals(strategy.signals(bars), len(bars))
    adapter = VectorAdapter(strategy, IID, window=400)
    seen = []
    adapter._act = lambda j, el, xl, es, xs, sig, ts_ns=None: None  # type: ignore[method-assign]
    for i in range(len(bars)):
        adapter.on_bar(
            Bar(instrument_id=IID, ts_ns=int(bars.time[i]), open=bars.open[i],
                high=bars.high[i], low=bars.low[i], close=bars.close[i], volume=bars.volume[i])
        )  # fmt: skip
        if i >= 1:
            seen.append((i, adapter.last_signals))
    expect = [
        (i, (bool(batch.enter_long[i]), bool(batch.exit_long[i]),
             bool(batch.enter_short[i]), bool(batch.exit_short[i])))
        for i in range(1, len(bars))
    ]  # fmt: skip
    assert seen == expect
    assert sum(any(s) for _, s in seen) > 5  # the slice has signals


def run_node(data: Bars, **adapter_kw: object) -> list[tuple[int, str, Decimal]]:
    venue = SimulatedVenue([INSTRUMENT], cash=100_000)
    node = TradingNode(venue, run_id="a")
    strategy = get_strategy("sma_cross")(short=True)
    adapter = VectorAdapter(
        strategy,
        IID,
        size=0.5,
        stop_loss=0.004,
        take_profit=0.006,
        **adapter_kw,  # type: ignore[arg-type]
    )
    node.add_strategy(adapter, bars=[IID])
    fills: list[tuple[int, str, Decimal]] = []
    node.bus.subscribe(OrderFilled, lambda f: fills.append((f.ts_ns, f.client_order_id, f.last_px)))
    node.run_bars([BarFeed(IID, data.time, data.open, data.high, data.low, data.close,
                           data.volume, data.timeframe_ns)])  # fmt: skip
    return fills


def test_incremental_adapter_trades_like_the_batch_adapter(bars: Bars) -> None:
    batch = run_node(bars, bars=bars)
    incremental = run_node(bars, window=400)
    assert len(batch) > 10
    assert incremental == batch


def test_adapter_validates_its_options(bars: Bars) -> None:
    strategy = get_strategy("sma_cross")()
    with pytest.raises(ValueError, match="size_mode='lots'"):
        VectorAdapter(strategy, IID, size_mode="lots")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window=1"):
        VectorAdapter(strategy, IID, window=1)
    with pytest.raises(ValueError, match="needs bars= or signals="):
        VectorAdapter(strategy, IID).on_start()
    with pytest.raises(ValueError, match=r"enter_long has shape \(3,\)"):
        normalize_signals(Signals(enter_long=np.zeros(3, bool)), 5)
    with pytest.raises(ValueError, match="entry_type 'iceberg'"):
        normalize_signals(Signals(entry_type="iceberg"), 5)  # type: ignore[arg-type]
