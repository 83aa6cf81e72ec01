"""Replay: readers of the real files, time ordering, speed factor on a fake clock."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from sapphire.domain import Bar, InstrumentId, OrderSide, TradeId, TradeTick
from sapphire.sim.book import BookUpdate, L2Book
from sapphire.sim.replay import (
    Replay,
    parse_bybit_orderbook_message,
    parse_speed,
    read_bars,
    read_binance_trades,
    read_bybit_orderbook,
)

DATA = Path(__file__).parents[2] / "data"
IID = InstrumentId("BTCUSDT", "BINANCE")
XRP = InstrumentId("XRPUSDT", "BYBIT")
S = 1_000_000_000


class FakeClock:
    """A monotonic ns clock that only moves when slept on (or advanced by hand)."""

    def __init__(self) -> None:
        self.now = 5 * S
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += round(seconds * 1e9)


def tick(ts: int, price: float = 100.0) -> TradeTick:
    return TradeTick(IID, ts, price, 1.0, OrderSide.BUY, TradeId(f"t{ts}"))


def bar(ts: int) -> Bar:
    return Bar(IID, ts, 100.0, 101.0, 99.0, 100.5, 10.0)


# -- readers -----------------------------------------------------------------------------


def test_binance_trades_parquet() -> None:
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", IID)
    assert len(ticks) == 2001
    first = ticks[0]
    assert first.ts_ns == 1610064000278 * 1_000_000  # 2021-01-08 00:00:00.278 UTC
    assert (first.price, first.size, first.trade_id) == (39432.48, 0.000263, "553287559")
    assert first.aggressor_side is OrderSide.SELL  # buyer was the maker
    assert ticks[1].aggressor_side is OrderSide.BUY
    assert all(a.ts_ns <= b.ts_ns for a, b in itertools.pairwise(ticks))


def test_ccxt_trades_feather() -> None:
    ticks = read_binance_trades(DATA / "binance-XRP_ETH-trades.feather", IID)
    assert len(ticks) == 12477
    assert ticks[0].ts_ns == 1570752011620 * 1_000_000
    assert (ticks[0].price, ticks[0].size, ticks[0].aggressor_side) == (
        0.00141342,
        23.0,
        OrderSide.SELL,
    )


def test_unknown_trade_layout_names_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"when": [1], "px": [1.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"unknown trades layout, columns \['px', 'when'\]"):
        read_binance_trades(path, IID)


def test_bybit_message_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ob.data"
    good = (
        '{"topic":"orderbook.50.XRPUSDT","type":"snapshot","ts":1,'
        '"data":{"s":"XRPUSDT","b":[["1.0","5"]],"a":[["1.1","5"]],"u":1,"seq":1}}'
    )
    path.write_text(good + "\n" + '{"topic":"orderbook.50.XRPUSDT","type":"oops"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_bybit_orderbook(path, XRP)
    update = parse_bybit_orderbook_message(good, XRP)
    assert update.is_snapshot and update.ts_ns == 1_000_000 and update.update_id == 1


def test_read_bars_from_a_feather_frame() -> None:
    frame = pd.read_feather(DATA / "binance-ETH_BTC-5m.feather")
    bars = read_bars(frame, IID)
    assert len(bars) == len(frame)
    assert bars[0].ts_ns == int(frame["date"].iloc[0].value)
    assert bars[0].close == float(frame["close"].iloc[0])
    with pytest.raises(ValueError, match="date/timestamp column"):
        read_bars(frame.drop(columns=["date"]), IID)


# -- replay ------------------------------------------------------------------------------


def test_streams_merge_in_time_order_ties_keep_stream_order() -> None:
    book = [BookUpdate(IID, ts, False, (), None) for ts in (1 * S, 2 * S, 4 * S)]
    trades = [tick(ts) for ts in (0, 2 * S, 3 * S)]
    bars = [bar(0), bar(60 * S)]  # known at their close, one minute later
    replay = Replay([book, trades, bars], bar_duration_ns=60 * S)
    got = [(replay.replay_time(e), type(e).__name__) for e in replay]
    assert got == [
        (0, "TradeTick"),
        (1 * S, "BookUpdate"),
        (2 * S, "BookUpdate"),  # same time: the earlier stream first
        (2 * S, "TradeTick"),
        (3 * S, "TradeTick"),
        (4 * S, "BookUpdate"),
        (60 * S, "Bar"),
        (120 * S, "Bar"),
    ]


def test_speed_factor_paces_against_the_clock() -> None:
    events = [tick(ts) for ts in (10 * S, 11 * S, 13 * S, 13 * S)]
    clock = FakeClock()
    replay = Replay([events], speed="100x", clock=clock, sleep=clock.sleep)
    seen = []
    for event in replay:
        seen.append((event.ts_ns, clock.now - 5 * S))
    # released at (ts - first) / 100 after the start: 0, 10 ms, 30 ms, 30 ms
    assert seen == [(10 * S, 0), (11 * S, 10_000_000), (13 * S, 30_000_000), (13 * S, 30_000_000)]
    assert clock.sleeps == pytest.approx([0.01, 0.02])


def test_real_time_pacing_subtracts_the_handlers_own_time() -> None:
    clock = FakeClock()
    replay = Replay(
        [[tick(0), tick(2 * S), tick(3 * S)]], speed="1x", clock=clock, sleep=clock.sleep
    )

    def slow_handler(event: TradeTick) -> None:
        clock.now += S // 2  # each event takes half a second to handle

    assert replay.run(slow_handler) == 3
    assert clock.sleeps == pytest.approx([1.5, 0.5])


def test_max_speed_never_sleeps_and_a_late_replay_does_not_wait() -> None:
    clock = FakeClock()
    events = [tick(ts) for ts in range(0, 10 * S, S)]
    assert list(Replay([events], speed="max", clock=clock, sleep=clock.sleep)) == events
    assert clock.sleeps == []

    def busy(event: TradeTick) -> None:
        clock.now += 2 * S  # slower than real time: no sleeping to catch up

    Replay([events], speed=1, clock=clock, sleep=clock.sleep).run(busy)
    assert clock.sleeps == []


def test_replay_of_the_real_bybit_book_and_binance_trades() -> None:
    updates = read_bybit_orderbook(DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip", XRP)
    clock = FakeClock()
    book = L2Book(XRP)
    count = Replay([updates], speed="10x", clock=clock, sleep=clock.sleep).run(book.apply_update)
    assert count == 50 and book.update_id == 20254918
    span = updates[-1].ts_ns - updates[0].ts_ns  # 4.799 s of data
    assert clock.now - 5 * S == pytest.approx(span / 10, abs=1)


@pytest.mark.parametrize(
    ("text", "factor"),
    [("1x", 1.0), ("100x", 100.0), ("0.5x", 0.5), ("MAX", None), (" 3 ", 3.0), (250, 250.0)],
)
def test_parse_speed(text: str | int, factor: float | None) -> None:
    assert parse_speed(text) == factor


@pytest.mark.parametrize("bad", ["fast", "0x", "-2x", "nanx", True, None])
def test_bad_speed_names_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="speed"):
        parse_speed(bad)  # type: ignore[arg-type]


def test_out_of_order_stream_and_bars_without_duration_are_refused() -> None:
    with pytest.raises(ValueError, match=r"not in time order: 1 after 5"):
        list(Replay([[tick(5), tick(1)]]))
    with pytest.raises(ValueError, match="bar_duration_ns"):
        list(Replay([[bar(0)]]))
    with pytest.raises(ValueError, match="bar_duration_ns must be a positive int"):
        Replay([], bar_duration_ns=0)
