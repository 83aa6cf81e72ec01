"""The event stream between processes: nodes publish what they do, the service follows.

An `EventStream` carries JSON objects on named channels; a reader follows one or more
channels from a position, so a restarted service resumes where it stopped. Channels:
`node.<run_id>` (a node's orders, fills, positions, equity, risk events, status and the
acknowledgements of its commands), `node.<run_id>.control` (commands to the node),
`jobs` (research job progress) and `candles.<instrument>.<timeframe>` (bars).

Two implementations, picked by `open_stream(redis_url, home)`:

- `RedisStream(url)`: Redis streams (XADD trimmed with MAXLEN ~, XREAD BLOCK);
  positions are stream ids.
- `LocalStream(dir)`: needs nothing running: one append-only JSON-lines file per channel
  under `$SAPPHIRE_HOME/events/`; a line is one `write` on an `O_APPEND` descriptor, so
  several writer processes never interleave; readers tail by byte offset (a position is
  the offset after an event's line) and only take whole lines.

Positions are strings: `START` ("0") is before the first event, `END` ("$") is resolved
to the channel's head when a reader is made. Events are encoded with
`sapphire.encoding.to_json` (Decimals as text, NaN as null).

A node never waits on the stream: `StreamPublisher` queues events (a bounded deque, one
append on the node's thread) for a background thread that writes them in batches; when
the queue is full or the stream fails, events are dropped and counted (`stats()`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sapphire.encoding import jsonable, to_json

__all__ = [
    "END",
    "JOBS",
    "START",
    "EventStream",
    "LocalStream",
    "RedisStream",
    "StreamEntry",
    "StreamPublisher",
    "StreamReader",
    "candles_channel",
    "check_channel",
    "control_channel",
    "node_channel",
    "open_stream",
    "timeframe_label",
]

#: before the first event of a channel
START = "0"
#: the channel's head when the reader is made (only events published afterwards)
END = "$"
#: the channel of research job progress
JOBS = "jobs"
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}")


def check_channel(channel: str) -> str:
    """`channel` if it is a valid channel name, else a ValueError naming it."""
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel) or ".." in channel:
        raise ValueError(
            f"channel {channel!r} is invalid: expected 1-200 letters, digits and . _ : @ / -"
        )
    return channel


def node_channel(run_id: str) -> str:
    """The channel a node publishes on."""
    return check_channel(f"node.{run_id}")


def control_channel(run_id: str) -> str:
    """The channel of the commands to a node."""
    return check_channel(f"node.{run_id}.control")


def candles_channel(instrument: object, timeframe: str) -> str:
    """The channel of the bars of `instrument` (an `InstrumentId` or its text)."""
    return check_channel(f"candles.{instrument}.{timeframe}")


def timeframe_label(timeframe_ns: int) -> str:
    """`60_000_000_000` -> "1m" (d, h, m, s; the largest unit that divides it)."""
    seconds = int(timeframe_ns) // 1_000_000_000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds > 0 else f"{int(timeframe_ns)}ns"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One event read from a channel, at `position` (a reader resumes after it)."""

    channel: str
    position: str
    event: dict[str, Any]


class EventStream(ABC):
    """Channels of JSON events between processes (see the module docstring)."""

    def publish(self, channel: str, event: Mapping[str, Any]) -> None:
        """Append `event` to `channel`."""
        self.publish_encoded([(channel, to_json(event))])

    def publish_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Append several events (in order), in one batch."""
        self.publish_encoded([(channel, to_json(event)) for channel, event in items])

    @abstractmethod
    def publish_encoded(self, items: Sequence[tuple[str, str]]) -> None:
        """Append events already encoded as JSON text (in order), in one batch."""

    @abstractmethod
    def head(self, channel: str) -> str:
        """The position after the last event of `channel` (`START` when it has none)."""

    @abstractmethod
    def read(
        self, cursors: Mapping[str, str], *, timeout: float = 0.0, count: int = 1000
    ) -> list[StreamEntry]:
        """The events after each channel's position (at most `count`), waiting up to
        `timeout` seconds for one when there is none yet."""

    @abstractmethod
    def tail(self, channel: str, count: int = 100) -> list[StreamEntry]:
        """The last `count` events of `channel`, oldest first."""

    def reader(self, channels: Iterable[str] | Mapping[str, str], since: str = END) -> StreamReader:
        """A reader of `channels` (a mapping gives each its own position) from `since`."""
        return StreamReader(self, channels, since)

    def close(self) -> None:
        """Release connections and files."""
        return None

    def describe(self) -> str:
        """Where the stream is, for messages (no credentials)."""
        return type(self).__name__


class StreamReader:
    """Follows channels from positions; `positions` can be saved to resume later."""

    def __init__(
        self,
        stream: EventStream,
        channels: Iterable[str] | Mapping[str, str],
        since: str = END,
    ) -> None:
        self.stream = stream
        wanted = dict(channels) if isinstance(channels, Mapping) else dict.fromkeys(channels, since)
        self.positions: dict[str, str] = {}
        for channel, position in wanted.items():
            self.add(channel, position)

    def add(self, channel: str, since: str = END) -> None:
        """Follow one more channel from `since` (kept if it is already followed)."""
        check_channel(channel)
        if channel not in self.positions:
            self.positions[channel] = self.stream.head(channel) if since == END else since

    def remove(self, channel: str) -> None:
        self.positions.pop(channel, None)

    def poll(self, timeout: float = 0.0, count: int = 1000) -> list[StreamEntry]:
        """The events published since the last poll (waiting up to `timeout` seconds)."""
        if not self.positions:
            if timeout > 0:
                time.sleep(timeout)
            return []
        entries = self.stream.read(dict(self.positions), timeout=timeout, count=count)
        for entry in entries:
            if entry.channel in self.positions:
                self.positions[entry.channel] = entry.position
        return entries


# ---------------------------------------------------------------------------------------
# Redis


class RedisStream(EventStream):
    """Redis streams: one stream per channel (`sapphire:events:<channel>`), trimmed to
    about `maxlen` events (XADD MAXLEN ~)."""

    PREFIX = "sapphire:events:"

    def __init__(self, url: str, *, maxlen: int = 100_000, connect_timeout: float = 2.0) -> None:
        import redis

        if maxlen < 1:
            raise ValueError(f"maxlen={maxlen!r} is invalid: expected >= 1")
        self.url = url
        self.maxlen = int(maxlen)
        # typed loosely: redis-py's stubs type every reply as a union of all replies
        self.client: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=connect_timeout,
            socket_timeout=30.0, health_check_interval=30,
        )  # fmt: skip

    def _key(self, channel: str) -> str:
        return self.PREFIX + check_channel(channel)

    def publish_encoded(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        if len(items) == 1:
            channel, text = items[0]
            self.client.xadd(self._key(channel), {"e": text}, maxlen=self.maxlen, approximate=True)
            return
        pipe = self.client.pipeline(transaction=False)
        for channel, text in items:
            pipe.xadd(self._key(channel), {"e": text}, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def head(self, channel: str) -> str:
        last = self.client.xrevrange(self._key(channel), count=1)
        return str(last[0][0]) if last else "0-0"

    def read(
        self, cursors: Mapping[str, str], *, timeout: float = 0.0, count: int = 1000
    ) -> list[StreamEntry]:
        if not cursors:
            return []
        keys = {self._key(c): p for c, p in cursors.items()}
        block = int(min(timeout, 10.0) * 1000)
        # XREAD BLOCK 0 waits forever: no BLOCK at all for a timeout of 0
        answer = self.client.xread(keys, count=count, block=block if block > 0 else None)
        out: list[StreamEntry] = []
        for key, rows in answer or []:
            channel = str(key)[len(self.PREFIX) :]
            for position, fields in rows:
                out.append(StreamEntry(channel, str(position), _decode(fields.get("e"))))
        return out

    def tail(self, channel: str, count: int = 100) -> list[StreamEntry]:
        rows = self.client.xrevrange(self._key(channel), count=max(1, int(count)))
        return [StreamEntry(channel, str(pos), _decode(f.get("e"))) for pos, f in reversed(rows)]

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"Redis at {parts.hostname}:{parts.port or 6379}"


def _decode(text: str | bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "null")
    except (TypeError, ValueError):
        return {"type": "undecodable"}
    return value if isinstance(value, dict) else {"type": "undecodable"}


# ---------------------------------------------------------------------------------------
# Local files


class LocalStream(EventStream):
    """Append-only JSON-lines files, one per channel, in `directory` (see the module
    docstring); positions are byte offsets."""

    #: a reader takes at most this many bytes of one channel per read
    CHUNK = 1 << 20

    def __init__(self, directory: str | Path, *, poll_s: float = 0.02) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.poll_s = poll_s
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, channel: str) -> Path:
        """The file of `channel` ('/' and ':' escaped)."""
        return self.directory / (quote(check_channel(channel), safe="@") + ".jsonl")

    def _fd(self, channel: str) -> int:
        fd = self._fds.get(channel)
        if fd is None:
            with self._lock:
                fd = self._fds.get(channel)
                if fd is None:
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                    fd = self._fds[channel] = os.open(self.path(channel), flags, 0o600)
        return fd

    def publish_encoded(self, items: Sequence[tuple[str, str]]) -> None:
        lines: dict[str, list[bytes]] = {}
        for channel, text in items:
            lines.setdefault(channel, []).append((text + "\n").encode())
        for channel, chunk in lines.items():
            # one write of whole lines: at the end of the file, never interleaved
            os.write(self._fd(channel), b"".join(chunk))

    def head(self, channel: str) -> str:
        try:
            return str(self.path(channel).stat().st_size)
        except FileNotFoundError:
            return START

    def _offset(self, position: str, channel: str) -> int:
        try:
            offset = int(position)
        except (TypeError, ValueError):
            raise ValueError(
                f"position {position!r} of channel {channel!r} is invalid: expected a byte offset"
            ) from None
        if offset < 0:
            raise ValueError(f"position {position!r} of channel {channel!r} is negative")
        return offset

    def _read_one(self, channel: str, offset: int, count: int) -> list[StreamEntry]:
        try:
            with open(self.path(channel), "rb") as fh:
                fh.seek(offset)
                data = fh.read(self.CHUNK)
        except FileNotFoundError:
            return []
        out: list[StreamEntry] = []
        pos = offset
        start = 0
        while len(out) < count:
            end = data.find(b"\n", start)
            if end < 0:
                break  # a line still being written: taken once it is whole
            pos = offset + end + 1
            out.append(StreamEntry(channel, str(pos), _decode(data[start:end])))
            start = end + 1
        return out

    def read(
        self, cursors: Mapping[str, str], *, timeout: float = 0.0, count: int = 1000
    ) -> list[StreamEntry]:
        offsets = {c: self._offset(p, c) for c, p in cursors.items()}
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            out: list[StreamEntry] = []
            for channel, offset in offsets.items():
                if len(out) >= count:
                    break
                out.extend(self._read_one(channel, offset, count - len(out)))
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def tail(self, channel: str, count: int = 100) -> list[StreamEntry]:
        try:
            size = self.path(channel).stat().st_size
        except FileNotFoundError:
            return []
        want = max(1, int(count))
        back = 64 * 1024
        while True:
            start = max(0, size - back)
            with open(self.path(channel), "rb") as fh:
                fh.seek(start)
                data = fh.read(size - start)
            whole = data.split(b"\n")
            partial = whole.pop()  # after the last newline: nothing, or a line being written
            if start > 0 and whole:
                whole.pop(0)  # the first line may be cut
            if len(whole) >= want or start == 0:
                break
            back *= 4
        out: list[StreamEntry] = []
        pos = size - len(partial)
        for raw in reversed(whole[-want:]):
            out.append(StreamEntry(channel, str(pos), _decode(raw)))
            pos -= len(raw) + 1
        out.reverse()
        return out

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()

    def describe(self) -> str:
        return f"local files in {self.directory}"


def open_stream(redis_url: str | None, home: str | Path) -> EventStream:
    """`RedisStream(redis_url)` when a URL is given, else `LocalStream(home/"events")`."""
    if redis_url:
        if not str(redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis URL {redis_url!r} is invalid: expected redis://host:port[/db], "
                "rediss://... or unix://..."
            )
        return RedisStream(str(redis_url))
    return LocalStream(Path(home) / "events")


# ---------------------------------------------------------------------------------------
# Publishing from a node


Payload = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
#: seconds of encoding after which the publisher's thread lets the node's run
YIELD_S = 0.0002


class StreamPublisher:
    """Publishes for a node without ever making it wait (see the module docstring).

    `publish(channel, event)` appends to a bounded queue (`capacity`) and returns; a
    background thread writes the queue in batches. `event` may be a function returning
    the event, called on that thread (it must read only immutable values). Events that
    find the queue full are dropped (`dropped`), those the stream refused are counted
    as `failed`; the node goes on either way."""

    def __init__(self, stream: EventStream, *, capacity: int = 10_000, batch: int = 500) -> None:
        self.stream = stream
        self.capacity = int(capacity)
        self.batch = int(batch)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self._pending: deque[tuple[str, Payload]] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sapphire-stream", daemon=True)
        self._thread.start()

    def publish(self, channel: str, event: Payload) -> None:
        """Queue `event` for `channel` (never blocks; dropped and counted when full)."""
        pending = self._pending
        if len(pending) >= self.capacity or self._closed:
            self.dropped += 1
            return
        pending.append((channel, event))
        if not self._wake.is_set():
            self._wake.set()

    def stats(self) -> dict[str, int | str | None]:
        """Events sent, dropped (queue full), failed (stream error) and still queued."""
        return {
            "sent": self.sent, "dropped": self.dropped, "failed": self.failed,
            "pending": len(self._pending), "last_error": self.last_error,
        }  # fmt: skip

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait up to `timeout` seconds for the queue to be written; True when it was."""
        deadline = time.monotonic() + timeout
        while self._pending or not self._idle.is_set():
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.002)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (up to `timeout` seconds), then stop the thread."""
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        pending = self._pending
        clock, pause = time.perf_counter, time.sleep
        held = clock()
        while True:
            self._wake.clear()
            while pending:
                self._idle.clear()
                items: list[tuple[str, str]] = []
                while pending and len(items) < self.batch:
                    channel, event = pending.popleft()
                    try:
                        value = event() if callable(event) else event
                        # converted first: one pass of the C encoder, not a failed one
                        items.append((channel, to_json(jsonable(value))))
                    except Exception as exc:  # a bad event is counted, never raised
                        self.failed += 1
                        self.last_error = f"{type(exc).__name__}: {exc}"
                    # the node's thread waits for the interpreter while this one encodes:
                    # hand it over every YIELD_S of work, not after a whole batch (the
                    # interpreter's own switch interval is 5 ms)
                    if clock() - held > YIELD_S:
                        pause(0)
                        held = clock()
                self._write(items)
            self._idle.set()
            if self._closed:
                return
            self._wake.wait(1.0)

    def _write(self, items: list[tuple[str, str]]) -> None:
        try:
            self.stream.publish_encoded(items)
            self.sent += len(items)
        except Exception as exc:  # the stream is down: drop and count, keep going
            self.failed += len(items)
            self.last_error = f"{type(exc).__name__}: {exc}"
