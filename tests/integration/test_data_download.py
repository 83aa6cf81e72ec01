"""`sapphire.data.download` against the local Bybit exchange over HTTP with real ccxt.

The exchange replays the first bars of the bundled month (all of them replayed but the
last, so that klines serve them); a download must store exactly the bars the exchange
serves: prices as recorded, volume in the base currency (the sample's quote volume
divided by the close, to Bybit's 6 decimals).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ccxt
import pandas as pd
import pytest
from local_exchange import LINEAR, SPOT, Faults, frame, no_internet

from sapphire.data import Catalog, DataError, read_funding
from sapphire.data.download import (
    Progress,
    Retry,
    download_funding,
    download_ohlcv,
    open_exchange,
)
from sapphire.venues.exchange import BackgroundServer, ExchangeState, create_app

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

KLINE = "/v5/market/kline"
BARS = 2_500  # replayed bars the exchange serves


class Server:
    """The local exchange behind a `Faults` middleware, every bar but the last replayed."""

    def __init__(self, bars: pd.DataFrame) -> None:
        self.state = ExchangeState(bars, history=len(bars) - 1)
        self.faults = Faults(create_app(self.state))
        self.server = BackgroundServer(self.faults).start()
        self._client: ccxt.Exchange | None = None

    def client(self) -> ccxt.Exchange:
        """A ccxt client of this server (one per server: loading markets takes a while)."""
        if self._client is None:
            self._client = open_exchange("bybit", self.server.url)
        return self._client


@pytest.fixture
def served(frame: pd.DataFrame) -> Iterator[Server]:
    server = Server(frame.iloc[: BARS + 1])
    yield server
    server.server.stop()


def expected(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars as the exchange serves them: base volume rounded to 6 decimals."""
    out = bars.reset_index(drop=True).copy()
    out["volume"] = [
        float(f"{v / c:.6f}") for v, c in zip(out["volume"], out["close"], strict=True)
    ]
    return out


def test_a_download_stores_exactly_the_exchanges_bars(served: Server, tmp_path: Path) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    start, end = bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1] + pd.Timedelta("1min")
    seen: list[Progress] = []
    catalog = Catalog(tmp_path)
    result = download_ohlcv(
        "bybit", LINEAR, "1m", start, end, catalog=catalog, exchange=served.client(),
        progress=seen.append, chunk=1_000,
    )  # fmt: skip
    stored = catalog.load(LINEAR, venue="bybit", timeframe="1m")
    pd.testing.assert_frame_equal(stored, expected(bars))
    assert (result.added, result.rows, result.pages, result.resumed_from) == (BARS, BARS, 3, None)
    assert result.report is not None and result.report.gap_count == 0
    assert [p.rows for p in seen] == [1_000, 2_000, 2_500]
    assert seen[-1].done_ms == seen[-1].total_ms == (end - start) // pd.Timedelta("1ms")
    assert served.faults.count(KLINE) == 3
    assert result.entry is not None and result.entry.covered == ((start, end),)

    again = download_ohlcv(
        "bybit", LINEAR, "1m", start, end, catalog=catalog, exchange=served.client()
    )
    assert (again.fetched, again.pages, again.added, again.rows) == ((), 0, 0, BARS)
    assert served.faults.count(KLINE) == 3  # nothing asked of the exchange


def test_an_interrupted_download_resumes_and_ends_identical(served: Server, tmp_path: Path) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    start, end = bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1] + pd.Timedelta("1min")
    catalog = Catalog(tmp_path)

    def stop_after_two_pages(progress: Progress) -> None:
        if progress.pages == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_ohlcv(
            "bybit", LINEAR, "1m", start, end, catalog=catalog, exchange=served.client(),
            progress=stop_after_two_pages, chunk=500,
        )  # fmt: skip
    assert len(catalog.load(LINEAR)) == 2_000  # every chunk of the two pages is stored
    result = download_ohlcv(
        "bybit", LINEAR, "1m", start, end, catalog=catalog, exchange=served.client(), chunk=500
    )
    assert result.resumed_from == start + pd.Timedelta(minutes=2_000)
    assert (result.pages, result.added, result.rows) == (1, 500, BARS)
    stored = catalog.load(LINEAR)
    assert stored["timestamp"].is_unique
    pd.testing.assert_frame_equal(stored, expected(bars))


def test_a_wider_range_fills_before_and_after_the_stored_bars(
    served: Server, tmp_path: Path
) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    times = bars["timestamp"]
    catalog = Catalog(tmp_path)
    middle = download_ohlcv(
        "bybit", LINEAR, "1m", times.iloc[1_200], times.iloc[1_500], catalog=catalog,
        exchange=served.client(),
    )  # fmt: skip
    assert middle.rows == 300

    def stop_at_once(progress: Progress) -> None:
        raise KeyboardInterrupt

    # Interrupted after the first of two pages before the stored bars: a hole follows.
    with pytest.raises(KeyboardInterrupt):
        download_ohlcv(
            "bybit", LINEAR, "1m", times.iloc[0], times.iloc[-1] + pd.Timedelta("1min"),
            catalog=catalog, exchange=served.client(), progress=stop_at_once, chunk=300,
        )  # fmt: skip
    assert len(catalog.load(LINEAR)) == 1_000 + 300  # the first page was stored
    wide = download_ohlcv(
        "bybit", LINEAR, "1m", times.iloc[0], times.iloc[-1] + pd.Timedelta("1min"),
        catalog=catalog, exchange=served.client(),
    )  # fmt: skip
    assert wide.resumed_from == times.iloc[0] + pd.Timedelta(minutes=1_000)
    assert [a for a, _b in wide.fetched] == [wide.resumed_from, times.iloc[1_500]]
    assert wide.added == BARS - 1_300
    pd.testing.assert_frame_equal(catalog.load(LINEAR), expected(bars))


def test_rate_limit_answers_are_backed_off_then_given_up(served: Server, tmp_path: Path) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    start = bars["timestamp"].iloc[0]
    waits: list[float] = []
    retry = Retry(attempts=4, delay=0.01, sleep=waits.append)
    served.faults.answer(KLINE, 10006, times=2)  # Bybit's "Too many visits!"
    served.faults.status(KLINE, 503, times=1)
    catalog = Catalog(tmp_path)
    result = download_ohlcv(
        "bybit", LINEAR, "1m", start, start + pd.Timedelta(minutes=100), catalog=catalog,
        exchange=served.client(), retry=retry,
    )  # fmt: skip
    assert waits == [0.01, 0.02, 0.04]  # doubling pauses, then the answer came
    assert served.faults.count(KLINE, 10006) == 2 and result.rows == 100
    pd.testing.assert_frame_equal(catalog.load(LINEAR), expected(bars.iloc[:100]))

    served.faults.answer(KLINE, 10006, times=10)
    with pytest.raises(DataError, match=r"fetch_ohlcv BTC/USDT:USDT 1m failed 4 times"):
        download_ohlcv(
            "bybit", LINEAR, "1m", start, start + pd.Timedelta(minutes=200), catalog=catalog,
            exchange=served.client(), retry=retry,
        )  # fmt: skip


def test_the_exchanges_rate_limiter_spaces_the_requests(served: Server, tmp_path: Path) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    client = served.client()
    client.load_markets()
    client.rateLimit = 100  # ms per unit of cost: a kline costs 5 on Bybit, so 0.5 s
    download_ohlcv(
        "bybit", LINEAR, "1m", bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1],
        catalog=Catalog(tmp_path), exchange=client,
    )  # fmt: skip
    klines = [s.at for s in served.faults.seen if s.path == KLINE]
    # 1 s from the first start to the last, less what a loaded machine may delay the first
    assert len(klines) == 3 and klines[-1] - klines[0] >= 0.8


def test_the_gap_report_finds_a_hole(frame: pd.DataFrame, tmp_path: Path) -> None:
    holed = frame.iloc[: BARS + 1].drop(index=range(1_200, 1_207)).reset_index(drop=True)
    server = Server(holed)
    try:
        times = holed["timestamp"]
        result = download_ohlcv(
            "bybit", LINEAR, "1m", times.iloc[0], times.iloc[-2] + pd.Timedelta("1min"),
            catalog=Catalog(tmp_path), exchange=server.client(),
        )  # fmt: skip
    finally:
        server.server.stop()
    report = result.report
    assert report is not None
    assert (report.gap_count, report.missing_bars) == (1, 7)
    assert report.largest_gap == pd.Timedelta(minutes=7)
    assert "1 gap (7 missing bars, largest 7m)" in report.summary()


def test_a_forming_bar_is_never_stored(served: Server, tmp_path: Path) -> None:
    bars = served.state.replay.frame.iloc[:BARS]
    times = bars["timestamp"]
    catalog = Catalog(tmp_path)
    now = times.iloc[100] + pd.Timedelta(seconds=30)  # bar 100 is still forming
    result = download_ohlcv(
        "bybit", LINEAR, "1m", times.iloc[0], None, catalog=catalog, exchange=served.client(),
        now=lambda: now.value // 1_000_000,
    )  # fmt: skip
    assert result.rows == 100 and catalog.load(LINEAR)["timestamp"].iloc[-1] == times.iloc[99]
    assert result.entry is not None and result.entry.covered == ((times.iloc[0], times.iloc[100]),)


def test_funding_history_is_stored_and_resumed(served: Server, tmp_path: Path) -> None:
    times = served.state.replay.frame["timestamp"].iloc[:BARS]
    start, end = times.iloc[0], times.iloc[-1]
    catalog = Catalog(tmp_path)
    result = download_funding(
        "bybit", LINEAR, start, end, catalog=catalog, exchange=served.client()
    )
    schedule = pd.date_range(start.ceil("8h"), end, freq="8h", inclusive="left")
    rates = read_funding(result.path)  # what `--funding` reads
    assert list(rates.index) == list(schedule) and (rates == 0.0001).all()
    assert (result.added, result.rows, result.first) == (len(schedule), len(schedule), schedule[0])
    assert result.path == catalog.funding_path(LINEAR, venue="bybit")
    again = download_funding("bybit", LINEAR, start, end, catalog=catalog, exchange=served.client())
    assert (again.added, again.rows) == (0, len(schedule))


def test_unknown_symbol_timeframe_and_spot_funding_are_named(
    served: Server, tmp_path: Path
) -> None:
    catalog, client, day = Catalog(tmp_path), served.client(), "2022-01-01"
    with pytest.raises(DataError, match=r"unknown symbol 'BTC/USDT:USD' on bybit; did you mean"):
        download_ohlcv("bybit", "BTC/USDT:USD", "1m", day, catalog=catalog, exchange=client)
    with pytest.raises(DataError, match=r"timeframe '2m' is not offered by bybit; did you mean"):
        download_ohlcv("bybit", LINEAR, "2m", day, catalog=catalog, exchange=client)
    with pytest.raises(DataError, match=r"'BTC/USDT' is a spot market on bybit"):
        download_funding("bybit", SPOT, day, catalog=catalog, exchange=client)


def test_the_local_exchange_pages_funding_as_bybit_does(served: Server) -> None:
    times = served.state.replay.frame["timestamp"].iloc[:BARS]
    ms = [t.value // 1_000_000 for t in pd.date_range(times.iloc[0].ceil("8h"), times.iloc[-1],
                                                      freq="8h")]  # fmt: skip
    ask = served.client().publicGetV5MarketFundingHistory

    def stamps(**params: object) -> list[int]:
        answer = ask({"category": "linear", "symbol": "BTCUSDT", **params})
        return [int(row["fundingRateTimestamp"]) for row in answer["result"]["list"]]

    assert stamps() == ms[::-1]  # newest first, up to market time
    assert stamps(limit=2) == ms[:-3:-1]
    assert stamps(startTime=ms[1], endTime=ms[3]) == [ms[3], ms[2], ms[1]]
    assert stamps(startTime=ms[1], endTime=ms[3], limit=1) == [ms[3]]
    with pytest.raises(ccxt.BadRequest, match=r"limit '201' must be in 1\.\.200"):
        stamps(limit=201)
