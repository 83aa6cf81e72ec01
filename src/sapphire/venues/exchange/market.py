"""The market the local exchange replays: recorded 1-minute bars, one bar at a time.

`BarReplay` holds the bars and how many of them have been replayed (`position`); only
those exist for the exchange's users (no look-ahead): klines, tickers, trades and the
book are built from bars ``0 .. position - 1``. The last replayed bar's close is the
last price. `ReplayClock` moves the replay one bar every ``timeframe / speed`` seconds of
wall time (``speed=60``: one 1-minute bar per second); tests step it with `advance`.

Recorded bars carry no order book and no trades, so the exchange shows a synthetic
book around the last price (best bid one tick below it, best ask one tick above, levels
one tick apart, each sized at the last bar's volume divided by the depth) and one trade
per replayed bar (at its close, for its volume, a buy when the bar closed at or above
its open, timed at the bar's last millisecond). The bundled sample's volume is in the
quote currency (USD): a bar's base volume is that divided by its close.

Recorded bars carry no funding either: the funding history is a deterministic schedule,
a rate of `funding_rate` (0.0001, 0.01%) every 8 hours (00:00, 08:00 and 16:00 UTC) of
the replayed time. No funding is paid to or from the account.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd

from sapphire.data import resample_ohlcv
from sapphire.venues.exchange.errors import BAD_PARAM, BybitError

__all__ = ["INTERVALS", "BarReplay", "ReplayClock"]

_MS = 1_000_000
_DAY_MS = 86_400_000
_FUNDING_MS = 8 * 3_600_000
#: Bybit's kline intervals and the timeframe each is
INTERVALS = {
    **{str(m): f"{m}m" for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": "1d",
    "W": "1w",
}
_TRADE_NS = uuid.UUID("5f1c1f9e-6a55-4c39-9a8e-1d2b5cf0e0a1")


class BarReplay:
    """Recorded OHLCV bars (a canonical frame: timestamp, open, high, low, close, volume
    in the quote currency) and the number replayed so far."""

    def __init__(self, frame: pd.DataFrame, *, start: int = 1) -> None:
        if len(frame) < 2:
            raise ValueError(f"the replay needs at least 2 bars, got {len(frame)}")
        if not 1 <= start < len(frame):
            raise ValueError(f"start={start!r} is invalid: expected 1 <= start < {len(frame)}")
        self.frame = frame.reset_index(drop=True)
        self.time_ms = pd.DatetimeIndex(self.frame["timestamp"]).as_unit("ns").asi8 // _MS
        self.open = self.frame["open"].to_numpy(dtype=np.float64)
        self.high = self.frame["high"].to_numpy(dtype=np.float64)
        self.low = self.frame["low"].to_numpy(dtype=np.float64)
        self.close = self.frame["close"].to_numpy(dtype=np.float64)
        self.turnover = self.frame["volume"].to_numpy(dtype=np.float64)
        values, counts = np.unique(np.diff(self.time_ms), return_counts=True)
        self.timeframe_ms = int(values[np.argmax(counts)])  # the usual bar spacing
        self.position = start
        self.funding_rate = "0.0001"

    def __len__(self) -> int:
        return len(self.close)

    @property
    def done(self) -> bool:
        return self.position >= len(self)

    @property
    def last(self) -> float:
        """The last price: the close of the last replayed bar."""
        return float(self.close[self.position - 1])

    @property
    def now_ms(self) -> int:
        """Market time: the end of the last replayed bar."""
        return int(self.time_ms[self.position - 1]) + self.timeframe_ms

    # ------------------------------------------------------------------ market data
    def klines(
        self, interval: str, start: int | None, end: int | None, limit: int
    ) -> list[list[str]]:
        """Bybit kline rows ``[start, open, high, low, close, volume, turnover]`` of the
        replayed bars, newest first, at most `limit`; `start`/`end` in ms bound the
        rows' open times (inclusive)."""
        timeframe = INTERVALS.get(interval)
        if timeframe is None:
            raise BybitError(
                BAD_PARAM,
                f"interval {interval!r} is not supported: expected one of "
                f"{', '.join(INTERVALS)} (months are not a fixed length)",
            )
        frame = self.frame.iloc[: self.position]
        lo, hi = 0, self.position
        if end is not None:
            hi = int(np.searchsorted(self.time_ms[: self.position], end, side="right"))
        if start is not None:
            lo = int(np.searchsorted(self.time_ms[: self.position], start - 8 * _DAY_MS))
        else:  # enough 1-minute bars for `limit` rows (the first may be partial)
            minutes = pd.Timedelta(timeframe) // pd.Timedelta(milliseconds=self.timeframe_ms)
            lo = max(0, hi - (limit + 1) * max(int(minutes), 1))
        part = frame.iloc[lo:hi]
        if part.empty:
            return []
        if pd.Timedelta(timeframe) != pd.Timedelta(milliseconds=self.timeframe_ms):
            part = resample_ohlcv(part, timeframe)
        stamps = pd.DatetimeIndex(part["timestamp"]).as_unit("ns").asi8 // _MS
        rows = []
        for t, o, h, low, c, v in zip(
            stamps, part["open"], part["high"], part["low"], part["close"], part["volume"],
            strict=True,
        ):  # fmt: skip
            if (start is not None and t < start) or (end is not None and t > end):
                continue
            rows.append([str(int(t)), _px(o), _px(h), _px(low), _px(c), _qty(v / c), _px(v)])
        return rows[::-1][:limit]

    def funding(
        self, symbol: str, start: int | None, end: int | None, limit: int
    ) -> list[dict[str, str]]:
        """Bybit funding-history rows of the schedule (module docstring) from the first
        replayed bar to market time, newest first, at most `limit`; `start`/`end` in ms
        bound the funding times (inclusive)."""
        first = -(-int(self.time_ms[0]) // _FUNDING_MS) * _FUNDING_MS
        last = min(self.now_ms, end if end is not None else self.now_ms)
        lowest = max(first, start if start is not None else first)
        top = last // _FUNDING_MS * _FUNDING_MS
        times = range(top, max(lowest - 1, top - limit * _FUNDING_MS), -_FUNDING_MS)
        return [
            {"symbol": symbol, "fundingRate": self.funding_rate, "fundingRateTimestamp": str(t)}
            for t in times
            if t >= lowest
        ]

    def stats_24h(self) -> dict[str, float]:
        """Last price, the price 24 hours before, high, low, base volume and turnover of
        the replayed bars in the last 24 hours."""
        hi = self.position
        lo = int(np.searchsorted(self.time_ms[:hi], self.now_ms - _DAY_MS))
        turnover = self.turnover[lo:hi]
        return {
            "last": self.last,
            "prev": float(self.open[lo]),
            "high": float(self.high[lo:hi].max()),
            "low": float(self.low[lo:hi].min()),
            "volume": float((turnover / self.close[lo:hi]).sum()),
            "turnover": float(turnover.sum()),
        }

    def trades(self, symbol: str, limit: int) -> list[dict[str, str | bool]]:
        """The last `limit` synthetic trades (one per replayed bar), newest first."""
        out: list[dict[str, str | bool]] = []
        for i in range(self.position - 1, max(self.position - 1 - limit, -1), -1):
            t = int(self.time_ms[i]) + self.timeframe_ms - 1
            out.append(
                {
                    "execId": str(uuid.uuid5(_TRADE_NS, f"{symbol}-{t}")),
                    "symbol": symbol,
                    "price": _px(self.close[i]),
                    "size": _qty(self.turnover[i] / self.close[i]),
                    "side": "Buy" if self.close[i] >= self.open[i] else "Sell",
                    "time": str(t),
                    "isBlockTrade": False,
                }
            )
        return out

    def bar_volume(self) -> float:
        """The base volume of the last replayed bar."""
        i = self.position - 1
        return float(self.turnover[i] / self.close[i])


def _px(value: float) -> str:
    return repr(float(value))


def _qty(value: float) -> str:
    return f"{float(value):.6f}"


class ReplayClock:
    """Calls `step` (the exchange's advance) every `interval` seconds on a daemon thread
    until `stop` or until `step` returns False (the data is exhausted)."""

    def __init__(self, step: Callable[[], bool], interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"interval={interval!r} is invalid: expected seconds > 0")
        self.step = step
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.step():
                return
