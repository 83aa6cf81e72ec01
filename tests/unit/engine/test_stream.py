"""The event stream between processes: one contract for the local files and Redis
(publish, read from a position, resume, tail, wait), several writer processes, the
publisher that never makes a node wait, and `open_stream`.

The Redis cases use the Redis at SAPPHIRE_TEST_REDIS_URL (default 127.0.0.1:6379): they
are skipped when it is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sapphire.engine.stream import (
    END,
    START,
    EventStream,
    LocalStream,
    RedisStream,
    StreamPublisher,
    candles_channel,
    check_channel,
    control_channel,
    node_channel,
    open_stream,
    timeframe_label,
)

REDIS_URL = os.environ.get("SAPPHIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_stream() -> RedisStream:
    """A RedisStream on the test Redis (skipped when unreachable, failed in CI)."""
    stream = RedisStream(REDIS_URL)
    try:
        stream.client.ping()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable in CI: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return stream


@pytest.fixture(params=["local", "redis"])
def stream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStream]:
    if request.param == "local":
        s: EventStream = LocalStream(tmp_path / "events")
        yield s
        s.close()
        return
    r = redis_stream()
    yield r
    keys = list(r.client.scan_iter(f"{r.PREFIX}test-{_RUN}*"))
    if keys:
        r.client.delete(*keys)
    r.close()


_RUN = uuid.uuid4().hex[:8]


def channel(name: str) -> str:
    """A channel of this test run (Redis is shared between runs)."""
    return f"test-{_RUN}-{uuid.uuid4().hex[:6]}.{name}"


def test_publish_then_read_from_the_start_in_order(stream: EventStream) -> None:
    c = channel("a")
    for i in range(5):
        stream.publish(c, {"type": "n", "i": i, "px": Decimal("0.10"), "nan": float("nan")})
    entries = stream.read({c: START})
    assert [e.event["i"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0].event["px"] == "0.10"  # money as text, never a float
    assert entries[0].event["nan"] is None
    assert {e.channel for e in entries} == {c}
    assert stream.read({c: entries[-1].position}) == []  # nothing after the last


def test_a_reader_from_the_end_sees_only_new_events_and_resumes_from_its_positions(
    stream: EventStream,
) -> None:
    c, d = channel("c"), channel("d")
    stream.publish(c, {"i": "old"})
    reader = stream.reader([c, d])  # since END: the heads now
    assert reader.poll() == []
    stream.publish(c, {"i": 1})
    stream.publish(d, {"i": 2})
    got = reader.poll()
    assert sorted(e.event["i"] for e in got) == [1, 2]
    saved = dict(reader.positions)
    stream.publish(c, {"i": 3})
    # a restarted service resumes from the saved positions: nothing lost, nothing twice
    again = stream.reader(saved)
    assert [e.event["i"] for e in again.poll()] == [3]
    assert again.poll() == []


def test_read_waits_up_to_the_timeout_and_returns_as_soon_as_an_event_comes(
    stream: EventStream,
) -> None:
    c = channel("w")
    head = stream.head(c)
    t0 = time.monotonic()
    assert stream.read({c: head}, timeout=0.2) == []
    assert 0.15 <= time.monotonic() - t0 < 2.0
    timer = threading.Timer(0.1, lambda: stream.publish(c, {"i": "late"}))
    timer.start()
    t0 = time.monotonic()
    got = stream.read({c: head}, timeout=5.0)
    timer.join()
    assert [e.event["i"] for e in got] == ["late"]
    assert time.monotonic() - t0 < 2.0


def test_count_limits_a_read_and_the_next_read_continues(stream: EventStream) -> None:
    c = channel("n")
    stream.publish_many([(c, {"i": i}) for i in range(25)])
    first = stream.read({c: START}, count=10)
    assert [e.event["i"] for e in first] == list(range(10))
    rest = stream.read({c: first[-1].position}, count=100)
    assert [e.event["i"] for e in rest] == list(range(10, 25))


def test_tail_gives_the_last_events_oldest_first_with_positions_to_read_on(
    stream: EventStream,
) -> None:
    c = channel("t")
    assert stream.tail(c, 3) == []
    for i in range(10):
        stream.publish(c, {"i": i})
    tail = stream.tail(c, 3)
    assert [e.event["i"] for e in tail] == [7, 8, 9]
    assert stream.read({c: tail[0].position}) == tail[1:]
    assert stream.head(c) == tail[-1].position


def test_bad_channel_names_are_refused_naming_them(stream: EventStream) -> None:
    for bad in ("", "a b", "../etc/passwd", "x" * 300, "node.*"):
        with pytest.raises(ValueError, match=r"channel .* is invalid"):
            stream.publish(bad, {"i": 1})


def test_channel_names() -> None:
    assert node_channel("paper-1") == "node.paper-1"
    assert control_channel("paper-1") == "node.paper-1.control"
    assert candles_channel("BTC/USDT:USDT@BYBIT", "1m") == "candles.BTC/USDT:USDT@BYBIT.1m"
    assert check_channel("jobs") == "jobs"
    assert [timeframe_label(n * 1_000_000_000) for n in (60, 3600, 86400, 90, 5)] == [
        "1m", "1h", "1d", "90s", "5s",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"channel .node.a b. is invalid"):
        node_channel("a b")


def test_local_files_escape_channel_names_and_are_owner_only(tmp_path: Path) -> None:
    s = LocalStream(tmp_path / "ev")
    s.publish("candles.BTC/USDT:USDT@BYBIT.1m", {"close": 1.5})
    (path,) = (tmp_path / "ev").iterdir()
    assert path.name == "candles.BTC%2FUSDT%3AUSDT@BYBIT.1m.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ev").stat().st_mode & 0o777 == 0o700


def test_a_line_being_written_is_taken_only_once_it_is_whole(tmp_path: Path) -> None:
    s = LocalStream(tmp_path / "ev")
    c = "half"
    s.publish(c, {"i": 1})
    with open(s.path(c), "ab") as fh:
        fh.write(b'{"i": 2, "par')  # a writer caught mid-line
    (one,) = s.read({c: START})
    assert one.event == {"i": 1}
    assert s.tail(c, 5) == [one]
    with open(s.path(c), "ab") as fh:
        fh.write(b'tial": true}\n')
    (two,) = s.read({c: one.position})
    assert two.event == {"i": 2, "partial": True}


def test_a_bad_position_is_refused_naming_it(tmp_path: Path) -> None:
    s = LocalStream(tmp_path / "ev")
    with pytest.raises(ValueError, match="position 'abc' of channel 'x' is invalid"):
        s.read({"x": "abc"})


def _writer(directory: str, c: str, worker: int, n: int) -> None:
    s = LocalStream(directory)
    for i in range(n):
        s.publish(c, {"w": worker, "i": i, "pad": "x" * (50 + 7 * (i % 13))})
    s.publish_many([(c, {"w": worker, "i": n + k, "pad": "y" * 300}) for k in range(20)])


def test_several_writer_processes_never_interleave_lines(tmp_path: Path) -> None:
    directory = str(tmp_path / "ev")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(directory, "shared", w, 300)) for w in range(4)]
    for p in procs:
        p.start()
    reader = LocalStream(directory)
    seen: list[dict[str, Any]] = []
    position = START
    deadline = time.monotonic() + 60
    while len(seen) < 4 * 320 and time.monotonic() < deadline:
        for entry in reader.read({"shared": position}, timeout=0.2, count=5000):
            position = entry.position
            seen.append(entry.event)
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert "undecodable" not in {e.get("type") for e in seen}
    for w in range(4):
        mine = [e["i"] for e in seen if e["w"] == w]
        assert mine == list(range(320))  # each writer's order kept, nothing torn or lost
    lines = Path(reader.path("shared")).read_text().splitlines()
    assert len(lines) == 4 * 320 and all(json.loads(line) for line in lines)


def test_open_stream_picks_redis_with_a_url_else_local_files(tmp_path: Path) -> None:
    local = open_stream(None, tmp_path)
    assert isinstance(local, LocalStream) and local.directory == tmp_path / "events"
    assert "local files" in local.describe()
    remote = open_stream("redis://127.0.0.1:6399/3", tmp_path)  # nothing connects yet
    assert isinstance(remote, RedisStream)
    assert remote.describe() == "Redis at 127.0.0.1:6399"
    with pytest.raises(ValueError, match="redis URL 'http://x' is invalid"):
        open_stream("http://x", tmp_path)


# ---------------------------------------------------------------------------------------
# The publisher: a node never waits on the stream


class BlockedStream(EventStream):
    """A stream whose writes hang until released (a stalled Redis), or fail."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.written: list[tuple[str, Mapping[str, Any]]] = []

    def publish_encoded(self, items: Sequence[tuple[str, str]]) -> None:
        if self.fail:
            raise ConnectionError("Redis is down")
        self.release.wait(10)
        self.written.extend((channel, json.loads(text)) for channel, text in items)

    def head(self, channel: str) -> str:
        return START

    def read(
        self, cursors: Mapping[str, str], *, timeout: float = 0.0, count: int = 1000
    ) -> list[Any]:
        return []

    def tail(self, channel: str, count: int = 100) -> list[Any]:
        return []


def test_a_stalled_stream_never_blocks_the_publisher_it_drops_and_counts() -> None:
    stalled = BlockedStream()
    pub = StreamPublisher(stalled, capacity=50, batch=10)
    t0 = time.perf_counter()
    for i in range(1000):
        pub.publish("node.x", {"i": i})
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5  # 1,000 publishes while the writer hangs: no waiting
    stats = pub.stats()
    assert stats["dropped"] >= 1000 - 50 - 10  # the queue, and the batch being written
    stalled.release.set()
    assert pub.flush(5.0)
    assert pub.sent == len(stalled.written) == 1000 - pub.dropped
    assert [e["i"] for _, e in stalled.written] == sorted(e["i"] for _, e in stalled.written)
    pub.close()


def test_a_failing_stream_is_counted_and_the_publisher_goes_on() -> None:
    pub = StreamPublisher(BlockedStream(fail=True))
    for i in range(10):
        pub.publish("node.x", {"i": i})
    assert pub.flush(5.0)
    stats = pub.stats()
    assert stats["failed"] == 10 and stats["sent"] == 0
    assert stats["last_error"] == "ConnectionError: Redis is down"
    pub.close()
    pub.publish("node.x", {"i": "after close"})
    assert pub.dropped == 1


def test_payload_functions_run_on_the_writer_thread(tmp_path: Path) -> None:
    local = LocalStream(tmp_path / "ev")
    pub = StreamPublisher(local)
    threads: list[str] = []

    def payload() -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"i": "lazy"}

    def broken() -> dict[str, Any]:
        raise ValueError("bad event")

    pub.publish("c", payload)
    pub.publish("c", broken)
    pub.publish("c", {"i": "plain"})
    assert pub.flush(5.0)
    assert threads == ["sapphire-stream"]
    assert [e.event["i"] for e in local.read({"c": START})] == ["lazy", "plain"]
    assert pub.failed == 1 and pub.last_error == "ValueError: bad event"
    pub.close()


def test_the_publisher_writes_to_the_stream_a_reader_follows(stream: EventStream) -> None:
    c = channel("pub")
    reader = stream.reader([c])
    pub = StreamPublisher(stream)
    for i in range(200):
        pub.publish(c, {"i": i, "qty": Decimal("0.001")})
    assert pub.flush(5.0)
    got: list[int] = []
    deadline = time.monotonic() + 5
    while len(got) < 200 and time.monotonic() < deadline:
        got += [e.event["i"] for e in reader.poll(timeout=0.2)]
    assert got == list(range(200))
    assert pub.stats()["sent"] == 200
    pub.close()


def test_end_resolves_to_the_head_when_the_reader_is_made(stream: EventStream) -> None:
    c = channel("end")
    stream.publish(c, {"i": 0})
    reader = stream.reader({c: END})
    assert reader.positions[c] == stream.head(c) != START
    reader.add(c, START)  # already followed: kept where it is
    assert reader.positions[c] == stream.head(c)
    reader.remove(c)
    assert reader.poll() == []
