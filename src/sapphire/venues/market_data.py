"""Confirmed bars of one Bybit market, for a live (or live-data paper) session.

Two sources with one interface, `poll(timeout_s) -> list[Bar]` (the bars confirmed since
the last call, oldest first, each once) and `close()`:

- `KlinePoller`: REST polling of `fetch_ohlcv` (`/v5/market/kline`) every `interval_s`;
- `KlineStream`: ccxt.pro `watch_ohlcv` (the `kline.{interval}.{symbol}` WebSocket topic).

A kline is confirmed once its interval has ended by the exchange's clock (its open time
plus the timeframe is at or before the server time, measured from `/v5/market/time` at
start): Bybit's last kline is the bar still forming, and it is never returned. Both
read public data only (no credentials), on their own event-loop thread.

`history(n)` reads the last `n` confirmed bars (the warm-up window of a vectorised
strategy).

Several markets (a rebalancing session): `Lockstep` takes one source per market and
hands on a bar time once every market's bar for it has arrived (the markets' bars of
one time together, in the order of the sources), or, when one market's bar is late by
more than `wait_s`, the bars that came, with a warning naming the markets missing; a
bar that arrives after its time was handed on is dropped (with a warning too).

Failures: a read the exchange did not answer (a timeout, a 5xx, a dropped connection) or
refused before processing (a rate limit) is tried again, `retry` (`RetryPolicy`: 8
tries, 0.2 s doubling to 2 s) for the start and `history`; a `KlinePoller.poll` that
fails returns what it has and tries again at its next interval. Each such failure is
kept in `errors` (the last 100). A definite refusal (an unlisted symbol...) is raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from sapphire.data import parse_timeframe
from sapphire.domain import Bar, Instrument, InstrumentId
from sapphire.venues.bybit import BybitConnection, BybitEnvironment, _local_urls, instrument_of
from sapphire.venues.loop import LoopThread
from sapphire.venues.resilience import FAILURES, Outcome, RetryPolicy, classify

__all__ = ["LOCKSTEP_WAIT_S", "KlinePoller", "KlineStream", "Lockstep", "public_client"]

log = logging.getLogger(__name__)

_MAX_LIMIT = 1000  # Bybit's largest kline page
#: seconds a bar time waits for the markets whose bar for it has not come yet
LOCKSTEP_WAIT_S = 10.0


def public_client(connection: BybitConnection, *, pro: bool = False) -> Any:
    """A ccxt client of `connection`'s environment for public market data (no keys)."""
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": connection.timeout_ms,
        "options": {"fetchMarkets": {"types": ["spot", "linear"]}},
    }
    if connection.environment is BybitEnvironment.LOCAL:
        assert connection.url is not None
        api = _local_urls(connection.url.rstrip("/"))
        config["urls"] = {"api": api, "test": api, "demotrading": api}
        config["has"] = {"fetchCurrencies": False}
    client = (ccxt_pro.bybit if pro else ccxt_async.bybit)(config)
    if connection.environment is BybitEnvironment.TESTNET:
        client.set_sandbox_mode(True)
    return client


class _Source(ABC):
    """The event-loop thread, the client and the confirmation rule of both sources."""

    pro = False

    def __init__(
        self,
        connection: BybitConnection,
        symbol: str,
        timeframe: str,
        instrument_id: InstrumentId,
    ) -> None:
        self.symbol = symbol
        self.timeframe = timeframe
        self.timeframe_ns = int(parse_timeframe(timeframe).value)
        self.instrument_id = instrument_id
        #: the open time (ns) of the last bar returned; only later ones come next
        self.last_ns = -1
        #: failed reads and WebSocket subscriptions, each followed by a new try (last 100)
        self.errors: list[BaseException] = []
        self.retry = RetryPolicy(attempts=8, base_s=0.2, cap_s=2.0)
        self._skew_ms = 0
        self._runner = LoopThread("klines")
        self._loop = self._runner.loop
        self._runner.start()
        self._client = public_client(connection, pro=self.pro)
        try:
            self._read(self._open)
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        await self._client.load_markets()
        if self.symbol not in self._client.markets:
            raise ValueError(f"symbol {self.symbol!r} is not listed on this exchange")
        before = time.time() * 1000
        server = await self._client.fetch_time()
        self._skew_ms = int(server - (before + time.time() * 1000) / 2)

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return self._runner.call(coro, timeout)

    def _failed(self, exc: BaseException) -> bool:
        """Whether `exc` is worth another try (then it is kept in `errors`)."""
        if classify(exc) is Outcome.REFUSED:
            return False
        self.errors.append(exc)
        del self.errors[:-100]
        return True

    def _read(self, make: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 60.0) -> Any:
        """`make()`'s answer, tried again after a failure worth it (`retry`)."""
        for attempt in range(self.retry.attempts):
            try:
                return self._call(make(), timeout)
            except FAILURES as exc:
                if attempt + 1 >= self.retry.attempts or not self._failed(exc):
                    raise
            time.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._skew_ms

    def _confirmed(self, rows: list[list[Any]]) -> list[list[Any]]:
        """The rows whose interval has ended, after `last_ns`, oldest first."""
        tf_ms = self.timeframe_ns // 1_000_000
        now = self._now_ms()
        return sorted(
            (r for r in rows if int(r[0]) + tf_ms <= now and int(r[0]) * 1_000_000 > self.last_ns),
            key=lambda r: int(r[0]),
        )

    def _bar(self, row: list[Any]) -> Bar:
        return Bar(
            instrument_id=self.instrument_id, ts_ns=int(row[0]) * 1_000_000,
            open=float(row[1]), high=float(row[2]), low=float(row[3]), close=float(row[4]),
            volume=float(row[5] or 0.0),
        )  # fmt: skip

    def _take(self, rows: list[list[Any]]) -> list[Bar]:
        bars = [self._bar(r) for r in self._confirmed(rows)]
        if bars:
            self.last_ns = bars[-1].ts_ns
        return bars

    def instrument(self) -> Instrument:
        """The market as the exchange lists it (tick, lot, fees: exact)."""
        return instrument_of(self._client.markets[self.symbol])

    def history(self, n: int) -> list[Bar]:
        """The last `n` confirmed bars, oldest first (fewer when the exchange has fewer);
        the next `poll` returns only bars after them."""
        if n < 1:
            raise ValueError(f"n={n!r} is invalid: expected at least 1 bar")
        rows: list[list[Any]] = self._read(
            lambda: self._client.fetch_ohlcv(
                self.symbol, self.timeframe, None, min(n + 1, _MAX_LIMIT)
            )
        )
        self.last_ns = -1
        done = self._confirmed(rows)[-n:]
        if done:
            self.last_ns = int(done[-1][0]) * 1_000_000
        return [self._bar(r) for r in done]

    @abstractmethod
    def poll(self, timeout_s: float) -> list[Bar]:
        """The bars confirmed since the last call (waiting up to `timeout_s` for one)."""

    def close(self) -> None:
        self._runner.stop(self._client.close)


class KlinePoller(_Source):
    """Confirmed klines by REST polling every `interval_s` (see the module docstring)."""

    def __init__(
        self,
        connection: BybitConnection,
        symbol: str,
        timeframe: str,
        instrument_id: InstrumentId,
        *,
        interval_s: float = 1.0,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s={interval_s!r} is invalid: expected > 0")
        self.interval_s = interval_s
        self._next = 0.0
        super().__init__(connection, symbol, timeframe, instrument_id)

    def poll(self, timeout_s: float) -> list[Bar]:
        """The bars confirmed since the last call; waits up to `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            wait = self._next - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait > deadline:
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    return []
                time.sleep(wait)
            self._next = time.monotonic() + self.interval_s
            start = None if self.last_ns < 0 else self.last_ns // 1_000_000
            try:
                rows = self._call(
                    self._client.fetch_ohlcv(self.symbol, self.timeframe, start, _MAX_LIMIT), 60.0
                )
            except FAILURES as exc:
                if not self._failed(exc):
                    raise
                rows = []  # tried again at the next interval
            bars = self._take(rows)
            if bars or time.monotonic() >= deadline:
                return bars


class KlineStream(_Source):
    """Confirmed klines from ccxt.pro's `watch_ohlcv` (see the module docstring): a task
    on the source's loop keeps the subscription and ccxt's candle cache; `poll` reads
    the cache. A kline that ended without an update after its end is taken when the
    next one comes (its interval has ended by then)."""

    pro = True

    async def _open(self) -> None:
        await super()._open()
        self._loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self._client.watch_ohlcv(self.symbol, self.timeframe)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped connection: ccxt.pro reconnects
                self.errors.append(exc)
                await asyncio.sleep(1.0)

    def _cached(self) -> list[list[Any]]:
        cache = self._client.ohlcvs.get(self.symbol, {}).get(self.timeframe) or []
        return [list(row) for row in cache]

    def poll(self, timeout_s: float) -> list[Bar]:
        """The bars confirmed since the last call; waits up to `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        while True:
            bars = self._take(self._call(_rows(self._cached), 10.0))
            if bars or time.monotonic() >= deadline:
                return bars
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


async def _rows(read: Any) -> list[list[Any]]:
    """`read()` on the source's loop (ccxt's cache is that loop's)."""
    rows: list[list[Any]] = read()
    return rows


class Lockstep:
    """The confirmed bars of several markets, one bar time at a time (see the module
    docstring): the interface of one source (`poll`, `history`, `close`, `timeframe_ns`,
    `errors`) over `sources`, all of one timeframe. `late` counts the bar times handed
    on without every market (after `wait_s`), `dropped` the bars that came too late for
    their time."""

    def __init__(self, sources: Sequence[_Source], *, wait_s: float = LOCKSTEP_WAIT_S) -> None:
        if not sources:
            raise ValueError("a Lockstep needs at least one source")
        if not wait_s > 0:
            raise ValueError(f"wait_s={wait_s!r} is invalid: expected > 0 seconds")
        frames = {s.timeframe for s in sources}
        if len(frames) != 1:
            raise ValueError(f"the sources' timeframes {sorted(frames)} differ: expected one")
        ids = [s.instrument_id for s in sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"markets {[str(i) for i in ids]} name one market twice")
        self.sources = list(sources)
        self.timeframe = sources[0].timeframe
        self.timeframe_ns = sources[0].timeframe_ns
        self.wait_s = wait_s
        #: the open time (ns) of the last bar time handed on; earlier bars are dropped
        self.last_ns = -1
        self.late = 0
        self.dropped = 0
        self._held: dict[int, dict[InstrumentId, Bar]] = {}
        self._since: dict[int, float] = {}  # when the first bar of each held time came

    @property
    def errors(self) -> list[BaseException]:
        """Every source's failed reads (each source keeps its last 100)."""
        return [e for s in self.sources for e in s.errors]

    def history(self, n: int) -> dict[InstrumentId, list[Bar]]:
        """The last `n` confirmed bars of every market, oldest first; the next `poll`
        hands on only the bar times after the latest of them."""
        out = {s.instrument_id: s.history(n) for s in self.sources}
        last = [bars[-1].ts_ns for bars in out.values() if bars]
        self.last_ns = max(last, default=-1)
        self._held.clear()
        self._since.clear()
        return out

    def poll(self, timeout_s: float) -> list[Bar]:
        """The bars of the bar times complete (or waited for `wait_s`) since the last
        call, time by time in the sources' order; waits up to `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        share = timeout_s / len(self.sources)
        while True:
            for source in self.sources:
                for bar in source.poll(share):
                    self._hold(bar)
            bars = self._ready(time.monotonic())
            if bars or time.monotonic() >= deadline:
                return bars

    def _hold(self, bar: Bar) -> None:
        if bar.ts_ns <= self.last_ns:
            self.dropped += 1
            log.warning(
                "%s bar at %s came after its time was handed on without it: dropped",
                bar.instrument_id, _when(bar.ts_ns),
            )  # fmt: skip
            return
        self._held.setdefault(bar.ts_ns, {})[bar.instrument_id] = bar
        self._since.setdefault(bar.ts_ns, time.monotonic())

    def _ready(self, now: float) -> list[Bar]:
        """The held bar times that are complete or waited long enough, oldest first (a
        later time waits for an earlier one)."""
        out: list[Bar] = []
        for ts in sorted(self._held):
            got = self._held[ts]
            if len(got) < len(self.sources):
                if now - self._since[ts] < self.wait_s:
                    break
                self.late += 1
                missing = [str(s.instrument_id) for s in self.sources
                           if s.instrument_id not in got]  # fmt: skip
                log.warning(
                    "bar at %s: no bar of %s after %.1f s; handed on with the other markets' "
                    "only", _when(ts), ", ".join(missing), self.wait_s,
                )  # fmt: skip
            out += [got[s.instrument_id] for s in self.sources if s.instrument_id in got]
            del self._held[ts], self._since[ts]
            self.last_ns = ts
        return out

    def close(self) -> None:
        for source in self.sources:
            source.close()


def _when(ts_ns: int) -> str:
    """`ts_ns` as UTC ISO text, for log lines."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).isoformat()
