"""The live session's parts that need no exchange: its configuration (checked, stored,
read back) and the warm-up of a vectorised strategy re-evaluated at each live bar
(`build_node(window=...)` + `VectorAdapter.warm_up`)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from sapphire.backtest.runner import bars_from_frame
from sapphire.domain import Bar, ContractType, Instrument, InstrumentId
from sapphire.engine import VectorAdapter
from sapphire.engine.builder import build_node
from sapphire.engine.clock import WallClock
from sapphire.live import LiveConfig
from sapphire.sim.venue import SimulatedVenue
from sapphire.strategy import get_strategy
from sapphire.strategy.base import Bars
from sapphire.strategy.signals import normalize_signals

IID = InstrumentId("BTC/USDT:USDT", "BYBIT")
INSTRUMENT = Instrument(
    IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, tick_size=Decimal("0.1"),
    lot_size=Decimal("0.001"), maker_fee=Decimal("0.0001"), taker_fee=Decimal("0.0006"),
)  # fmt: skip


def test_the_config_round_trips_through_the_store_mapping() -> None:
    config = LiveConfig(env="local", url="http://127.0.0.1:1", paper=True, warmup=40)
    assert LiveConfig.from_mapping(config.to_mapping()) == config
    assert LiveConfig().env == "testnet" and LiveConfig().on_exit == "cancel"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"env": "moon"}, "env='moon' is invalid"),
        ({"env": "local"}, "url=None is invalid"),
        ({"url": "http://127.0.0.1:1"}, "url='http://127.0.0.1:1' is invalid"),
        ({"exchange": "binance"}, "exchange='binance' is invalid"),
        ({"on_exit": "flatten"}, "on_exit='flatten' is invalid"),
        ({"market_data": "fix"}, "market_data='fix' is invalid"),
        ({"warmup": 1}, "warmup=1 is invalid"),
        ({"reconcile_every": 0}, "reconcile_every=0 is invalid"),
        ({"poll_interval": -1.0}, "poll_interval=-1.0 is invalid"),
        ({"engine": "vector"}, "engine='vector' is invalid"),
        ({"funding": "f.csv"}, "funding are the exchange's"),
        ({"risk_profile": "reckless"}, "reckless"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LiveConfig(**options)


def test_mainnet_needs_the_interlock() -> None:
    with pytest.raises(ValueError, match="confirm_mainnet=True"):
        LiveConfig(env="mainnet").connection()
    assert LiveConfig(env="mainnet").connection(confirm_mainnet=True).confirm_mainnet


@pytest.fixture(scope="module")
def bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df.iloc[:700].reset_index(drop=True))


def _slice(b: Bars, lo: int, hi: int) -> Bars:
    return Bars(
        time=b.time[lo:hi], open=b.open[lo:hi], high=b.high[lo:hi], low=b.low[lo:hi],
        close=b.close[lo:hi], volume=b.volume[lo:hi], timeframe_ns=b.timeframe_ns,
    )  # fmt: skip


def test_a_warmed_up_live_adapter_acts_on_the_batch_signals_from_its_first_bar(
    bars: Bars,
) -> None:
    """Warmed up on 300 bars of history, the adapter's signal at each live bar is the
    batch evaluation's at that bar (from the first live bar on), and the history itself
    sends no order."""
    strategy = get_strategy("sma_cross")(short=True)
    venue = SimulatedVenue([INSTRUMENT], cash=100_000)
    setup = build_node(
        LiveConfig(), mode="live", venue=venue, instrument_id=IID, strategy=strategy,
        clock=WallClock(), instrument=INSTRUMENT, window=300, risk_profile=None,
    )  # fmt: skip
    adapter = setup.trader
    assert isinstance(adapter, VectorAdapter) and adapter.window == 300
    adapter.warm_up(_slice(bars, 0, 300))
    setup.node.start()
    assert setup.node.orders == {}
    batch = normalize_signals(strategy.signals(bars), len(bars))
    seen, expect = [], []
    for i in range(300, len(bars)):
        setup.node.process_bar(
            Bar(instrument_id=IID, ts_ns=int(bars.time[i]), open=float(bars.open[i]),
                high=float(bars.high[i]), low=float(bars.low[i]), close=float(bars.close[i]),
                volume=float(bars.volume[i])),
            bars.timeframe_ns,
        )  # fmt: skip
        seen.append(adapter.last_signals)
        expect.append(
            (bool(batch.enter_long[i]), bool(batch.exit_long[i]),
             bool(batch.enter_short[i]), bool(batch.exit_short[i]))
        )  # fmt: skip
    assert seen == expect
    assert sum(any(s) for s in seen) > 3
    assert setup.node.orders  # and it traded on them


def test_warm_up_is_for_an_incremental_adapter(bars: Bars) -> None:
    adapter = VectorAdapter(get_strategy("sma_cross")(), IID, bars=bars)
    with pytest.raises(ValueError, match="window=N"):
        adapter.warm_up(bars)
