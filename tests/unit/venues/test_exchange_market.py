"""The local exchange's market data: only replayed bars exist (no look-ahead)."""

from __future__ import annotations

import pandas as pd
import pytest

from sapphire.data import resample_ohlcv
from sapphire.venues.exchange.errors import BAD_PARAM, BybitError
from sapphire.venues.exchange.market import BarReplay

MIN = 60_000


@pytest.fixture
def frame() -> pd.DataFrame:
    n = 200
    close = [100.0 + i for i in range(n)]
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
            "open": [c - 0.5 for c in close],
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
            "volume": [1000.0 * (i + 1) for i in range(n)],
        }
    )


def test_klines_are_the_replayed_bars_newest_first(frame: pd.DataFrame) -> None:
    replay = BarReplay(frame, start=30)
    rows = replay.klines("1", None, None, 3)
    assert [r[0] for r in rows] == [
        str(int(frame.timestamp[i].timestamp() * 1000)) for i in (29, 28, 27)
    ]
    # [start, open, high, low, close, base volume, turnover]
    assert rows[0][1:5] == ["128.5", "130.0", "128.0", "129.0"]
    assert float(rows[0][5]) == pytest.approx(30_000 / 129) and rows[0][6] == "30000.0"
    replay.position += 1
    assert replay.klines("1", None, None, 1)[0][4] == "130.0"


def test_coarser_klines_are_the_resampled_replayed_bars(frame: pd.DataFrame) -> None:
    replay = BarReplay(frame, start=47)  # the last 15-minute bin holds 2 of 15 bars
    rows = replay.klines("15", None, None, 10)
    expected = resample_ohlcv(frame.iloc[:47], "15m")
    assert len(rows) == len(expected) == 4
    last = expected.iloc[-1]
    assert rows[0][:5] == [
        str(int(last.timestamp.timestamp() * 1000)), str(last.open), str(last.high),
        str(last.low), str(last.close),
    ]  # fmt: skip
    assert float(rows[0][4]) == frame.close[46]  # not the close of bar 59: no look-ahead


def test_kline_start_and_end_bound_the_rows(frame: pd.DataFrame) -> None:
    replay = BarReplay(frame, start=100)
    t0 = int(frame.timestamp[0].timestamp() * 1000)
    rows = replay.klines("5", t0 + 10 * MIN, t0 + 20 * MIN, 200)
    assert [int(r[0]) - t0 for r in rows] == [20 * MIN, 15 * MIN, 10 * MIN]


def test_a_month_interval_is_refused_naming_it(frame: pd.DataFrame) -> None:
    with pytest.raises(BybitError) as err:
        BarReplay(frame).klines("M", None, None, 10)
    assert err.value.code == BAD_PARAM and "'M'" in err.value.message


def test_stats_and_trades_come_from_the_replayed_bars(frame: pd.DataFrame) -> None:
    replay = BarReplay(frame, start=10)
    stats = replay.stats_24h()
    assert (stats["last"], stats["prev"], stats["high"], stats["low"]) == (109.0, 99.5, 110.0, 99.0)
    assert stats["turnover"] == sum(1000.0 * (i + 1) for i in range(10))
    trades = replay.trades("BTCUSDT", 2)
    assert [t["price"] for t in trades] == ["109.0", "108.0"]
    assert trades[0]["side"] == "Buy" and trades[0]["execId"] != trades[1]["execId"]
    assert replay.trades("BTCUSDT", 2)[0]["execId"] == trades[0]["execId"]  # stable ids


def test_a_replay_needs_bars_and_a_start_inside_them(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="start=200"):
        BarReplay(frame, start=200)
    with pytest.raises(ValueError, match="at least 2 bars, got 1"):
        BarReplay(frame.iloc[:1])
