"""Replay recorded market data as one time-ordered event stream, at a chosen speed.

Readers turn venue files into domain events: Bybit v5 `orderbook.N` WebSocket messages
(JSON lines, optionally zipped) and Binance depth snapshot/update CSV rows into
`BookUpdate`s, Binance trade files into `TradeTick`s, bar frames into `Bar`s.

`Replay(streams, speed=...)` merges time-ordered streams by timestamp (ties keep the
order of the streams, then of the events) and paces them: ``"max"`` yields as fast as
possible, ``"1x"`` in real time (paper trading), ``"100x"`` a hundred times faster. The
clock (`int` ns, monotonic) and `sleep` (seconds) are injectable, so tests run on a
fake clock and never sleep. A `Bar` is stamped with its open time but known only at its
close, so bars are replayed at `ts_ns + bar_duration_ns`.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import pandas as pd

from sapphire.domain import Bar, InstrumentId, OrderBookDelta, OrderSide, TradeId, TradeTick
from sapphire.sim.book import BookUpdate

__all__ = [
    "Replay",
    "parse_bybit_orderbook_message",
    "parse_speed",
    "read_bars",
    "read_binance_depth",
    "read_binance_trades",
    "read_bybit_orderbook",
]

_MS = 1_000_000
MarketEvent = Bar | TradeTick | BookUpdate


# -- Bybit -------------------------------------------------------------------------------


def parse_bybit_orderbook_message(
    message: str | dict[str, Any], instrument_id: InstrumentId
) -> BookUpdate:
    """One Bybit v5 `orderbook.N.SYMBOL` message (snapshot or delta) as a `BookUpdate`.

    The timestamp is the message's `ts` (ms); the update id is `data.u` (Bybit's ids
    are consecutive, so a delta must carry the previous id + 1). Size "0" deletes a level.
    """
    msg = json.loads(message) if isinstance(message, str) else message
    try:
        kind = msg["type"]
        data = msg["data"]
        ts_ns = int(msg["ts"]) * _MS
        update_id = int(data["u"])
        sides = ((OrderSide.BUY, data["b"]), (OrderSide.SELL, data["a"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a Bybit orderbook message ({exc!r}): {str(msg)[:200]}") from None
    if not str(msg.get("topic", "orderbook.")).startswith("orderbook."):
        raise ValueError(f"not a Bybit orderbook topic: {msg.get('topic')!r}")
    if kind not in ("snapshot", "delta"):
        raise ValueError(f"Bybit orderbook message type must be snapshot or delta, got {kind!r}")
    deltas = tuple(
        OrderBookDelta(instrument_id, ts_ns, side, float(price), float(size))
        for side, levels in sides
        for price, size in levels
    )
    return BookUpdate(instrument_id, ts_ns, kind == "snapshot", deltas, update_id)


def read_bybit_orderbook(path: str | Path, instrument_id: InstrumentId) -> list[BookUpdate]:
    """A file of Bybit orderbook messages, one JSON per line (plain or a one-file .zip)."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"{path} must hold exactly one file, holds {names}")
            text = archive.read(names[0]).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    updates = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        try:
            updates.append(parse_bybit_orderbook_message(line, instrument_id))
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    return updates


# -- Binance -----------------------------------------------------------------------------

_DEPTH_COLUMNS = (
    "symbol",
    "timestamp",
    "first_update_id",
    "last_update_id",
    "side",
    "update_type",
    "price",
    "qty",
    "pu",
)


def read_binance_depth(path: str | Path, instrument_id: InstrumentId) -> list[BookUpdate]:
    """Binance depth CSV rows (`symbol,timestamp,first_update_id,last_update_id,side,
    update_type,price,qty,pu`, the data.binance.vision `T_DEPTH` layout) as `BookUpdate`s.

    Consecutive rows with the same timestamp, ids and update type form one message;
    `update_type` "snap" rows are a snapshot, "set" rows a delta batch (qty 0 deletes);
    side "b" is the bid, "a" the ask; `pu` (-1 = none) is the previous batch's last id.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != _DEPTH_COLUMNS:
            raise ValueError(
                f"{path}: expected columns {','.join(_DEPTH_COLUMNS)}, got {reader.fieldnames}"
            )
        rows = list(enumerate(reader, start=2))

    def key(item: tuple[int, dict[str, str]]) -> tuple[str, ...]:
        row = item[1]
        return (row["timestamp"], row["first_update_id"], row["last_update_id"])

    updates = []
    for _, group in groupby(rows, key=key):
        items = list(group)
        kinds = {row["update_type"] for _, row in items}
        line = items[0][0]
        if len(kinds) != 1 or not kinds <= {"snap", "set"}:
            raise ValueError(f"{path}, line {line}: update_type must be snap or set, got {kinds}")
        try:
            first = items[0][1]
            ts_ns = int(first["timestamp"]) * _MS
            pu = int(first["pu"])
            deltas = tuple(
                OrderBookDelta(
                    instrument_id,
                    ts_ns,
                    _binance_side(row["side"]),
                    float(row["price"]),
                    float(row["qty"]),
                )
                for _, row in items
            )
            updates.append(
                BookUpdate(
                    instrument_id,
                    ts_ns,
                    kinds == {"snap"},
                    deltas,
                    update_id=int(first["last_update_id"]),
                    first_update_id=int(first["first_update_id"]),
                    prev_update_id=None if pu < 0 else pu,
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}, rows from line {line}: {exc}") from None
    return updates


def _binance_side(value: str) -> OrderSide:
    if value == "b":
        return OrderSide.BUY
    if value == "a":
        return OrderSide.SELL
    raise ValueError(f"side must be 'b' or 'a', got {value!r}")


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"buyer_maker must be true/false, got {value!r}")


def _epoch_ns(column: pd.Series) -> list[int]:
    if pd.api.types.is_datetime64_any_dtype(column):
        values = column.dt.tz_localize("UTC") if column.dt.tz is None else column
        return [int(v) for v in values.dt.as_unit("ns").astype("int64")]
    if pd.api.types.is_integer_dtype(column):
        return [int(v) * _MS for v in column]  # epoch milliseconds
    raise ValueError(f"timestamp column must be datetimes or epoch ms, got {column.dtype}")


def read_binance_trades(path: str | Path, instrument_id: InstrumentId) -> list[TradeTick]:
    """Binance public trades as `TradeTick`s, from Parquet, Feather or CSV.

    Two layouts: Binance's (`timestamp, trade_id, price, quantity, buyer_maker`; a
    buyer-maker trade was sold by the aggressor) and ccxt's (`timestamp` in ms, `id`,
    `side` = the taker's side, `price`, `amount`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".feather":
        frame = pd.read_feather(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: trades must be .parquet, .feather or .csv, not {suffix!r}")
    columns = set(frame.columns)
    if {"timestamp", "trade_id", "price", "quantity", "buyer_maker"} <= columns:
        ids, sizes = frame["trade_id"], frame["quantity"]
        sides = [OrderSide.SELL if _as_bool(v) else OrderSide.BUY for v in frame["buyer_maker"]]
    elif {"timestamp", "id", "side", "price", "amount"} <= columns:
        ids, sizes = frame["id"], frame["amount"]
        sides = [OrderSide(str(v).upper()) for v in frame["side"]]
    else:
        raise ValueError(f"{path}: unknown trades layout, columns {sorted(columns)}")
    stamps = _epoch_ns(frame["timestamp"])
    return [
        TradeTick(instrument_id, ts, float(price), float(size), side, TradeId(str(trade_id)))
        for ts, price, size, side, trade_id in zip(
            stamps, frame["price"], sizes, sides, ids, strict=True
        )
    ]


# -- bars --------------------------------------------------------------------------------


def read_bars(frame: pd.DataFrame, instrument_id: InstrumentId) -> list[Bar]:
    """Bars from a frame with `open, high, low, close[, volume]` and open times in a
    DatetimeIndex or a `date`/`timestamp` column (datetimes or epoch ms)."""
    if isinstance(frame.index, pd.DatetimeIndex):
        stamps = _epoch_ns(frame.index.to_series())
    else:
        column = next((c for c in ("date", "timestamp", "time") if c in frame.columns), None)
        if column is None:
            raise ValueError(
                f"bars need a DatetimeIndex or a date/timestamp column, got {list(frame.columns)}"
            )
        stamps = _epoch_ns(frame[column])
    missing = {"open", "high", "low", "close"} - set(frame.columns)
    if missing:
        raise ValueError(f"bars lack the columns {sorted(missing)}")
    volume = frame["volume"] if "volume" in frame.columns else [0.0] * len(frame)
    return [
        Bar(instrument_id, ts, float(o), float(h), float(lo), float(c), float(v))
        for ts, o, h, lo, c, v in zip(
            stamps,
            frame["open"],
            frame["high"],
            frame["low"],
            frame["close"],
            volume,
            strict=True,
        )
    ]


# -- replay ------------------------------------------------------------------------------


def parse_speed(speed: str | float | int) -> float | None:
    """``"max"`` -> None (no pacing); ``"1x"``, ``"100x"``, ``"0.5x"`` or a number -> factor."""
    if isinstance(speed, bool):
        raise ValueError(f"speed must be like '1x', '100x' or 'max', got {speed!r}")
    if isinstance(speed, str):
        text = speed.strip().lower()
        if text == "max":
            return None
        try:
            factor = float(text.removesuffix("x"))
        except ValueError:
            raise ValueError(f"speed must be like '1x', '100x' or 'max', got {speed!r}") from None
    elif isinstance(speed, int | float):
        factor = float(speed)
    else:
        raise ValueError(f"speed must be like '1x', '100x' or 'max', got {speed!r}")
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"speed must be a positive factor, got {speed!r}")
    return factor


class Replay:
    """Iterate recorded events in time order, paced at `speed` against `clock`.

    `streams`: iterables of `Bar`, `TradeTick` or `BookUpdate` (or any object with an
    int `ts_ns`), each already in time order (else ValueError naming the timestamps).
    Pacing: event `e` is released when `clock() - start >= (t(e) - t(first)) / speed`,
    where `t` is the replay time (`ts_ns`, or a bar's close time); `sleep(seconds)` waits.
    """

    def __init__(
        self,
        streams: Iterable[Iterable[Any]],
        *,
        speed: str | float = "max",
        bar_duration_ns: int | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.streams = list(streams)
        self.factor = parse_speed(speed)
        if bar_duration_ns is not None and (
            isinstance(bar_duration_ns, bool)
            or not isinstance(bar_duration_ns, int)
            or bar_duration_ns <= 0
        ):
            raise ValueError(f"bar_duration_ns must be a positive int, got {bar_duration_ns!r}")
        self.bar_duration_ns = bar_duration_ns
        self.clock = clock
        self.sleep = sleep

    def replay_time(self, event: Any) -> int:
        """When `event` is known: its `ts_ns`, or a bar's close time."""
        if isinstance(event, Bar):
            if self.bar_duration_ns is None:
                raise ValueError("replaying bars needs bar_duration_ns (bars are known at close)")
            return event.ts_ns + self.bar_duration_ns
        ts = getattr(event, "ts_ns", None)
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise ValueError(f"cannot replay {event!r}: it has no int ts_ns")
        return ts

    def _keyed(self, index: int, stream: Iterable[Any]) -> Iterator[tuple[int, int, int, Any]]:
        last = None
        for seq, event in enumerate(stream):
            ts = self.replay_time(event)
            if last is not None and ts < last:
                raise ValueError(
                    f"replay stream {index} is not in time order: {ts} after {last} (event {seq})"
                )
            last = ts
            yield ts, index, seq, event

    def timed(self) -> Iterator[tuple[int, Any]]:
        """(replay time, event) pairs in time order, unpaced."""
        merged = heapq.merge(*(self._keyed(i, s) for i, s in enumerate(self.streams)))
        for ts, _, _, event in merged:
            yield ts, event

    def __iter__(self) -> Iterator[Any]:
        start_wall: int | None = None
        start_data = 0
        for ts, event in self.timed():
            if self.factor is not None:
                if start_wall is None:
                    start_wall, start_data = self.clock(), ts
                due = start_wall + (ts - start_data) / self.factor
                wait_ns = due - self.clock()
                if wait_ns > 0:
                    self.sleep(wait_ns / 1e9)
            yield event

    def run(self, handler: Callable[[Any], object]) -> int:
        """Call `handler` on every event in order; return how many were replayed."""
        count = 0
        for event in self:
            handler(event)
            count += 1
        return count
