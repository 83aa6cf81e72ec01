"""The event stream on the real Redis (SAPPHIRE_TEST_REDIS_URL, default
redis://127.0.0.1:6379/0): XADD trimmed with MAXLEN ~, several writer processes, a
paper node publishing there and taking its commands from there, and the service's
reader resuming from saved positions. Skipped when Redis is unreachable, except in CI
(CI=true), where that fails."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sapphire.engine.control import command_event
from sapphire.engine.stream import START, RedisStream, control_channel, node_channel

URL = os.environ.get("SAPPHIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = uuid.uuid4().hex[:8]


@pytest.fixture
def redis_stream() -> Iterator[RedisStream]:
    stream = RedisStream(URL)
    try:
        stream.client.ping()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {URL} is unreachable in CI: {exc}")
        pytest.skip(f"Redis at {URL} is unreachable: {exc}")
    yield stream
    keys = list(stream.client.scan_iter(f"{stream.PREFIX}*{RUN}*"))
    if keys:
        stream.client.delete(*keys)
    stream.close()


def test_streams_are_trimmed_to_about_maxlen(redis_stream: RedisStream) -> None:
    small = RedisStream(URL, maxlen=100)
    channel = f"trim-{RUN}"
    small.publish_many([(channel, {"i": i}) for i in range(2_000)])
    length = small.client.xlen(small.PREFIX + channel)
    assert 100 <= length < 2_000  # MAXLEN ~: whole macro nodes are dropped
    tail = small.tail(channel, 3)
    assert [e.event["i"] for e in tail] == [1997, 1998, 1999]
    small.close()


def _writer(url: str, channel: str, worker: int, n: int) -> None:
    stream = RedisStream(url)
    for i in range(n):
        stream.publish(channel, {"w": worker, "i": i})
    stream.close()


def test_several_writer_processes_and_a_reader_that_resumes(redis_stream: RedisStream) -> None:
    channel = f"multi-{RUN}"
    reader = redis_stream.reader([channel])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(URL, channel, w, 200)) for w in range(3)]
    for p in procs:
        p.start()
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + 60
    while len(seen) < 300 and time.monotonic() < deadline:
        seen += [e.event for e in reader.poll(timeout=0.5)]
    saved = dict(reader.positions)  # the service stops here...
    for p in procs:
        p.join()
    resumed = redis_stream.reader(saved)  # ...and a new one resumes from its positions
    while len(seen) < 600 and time.monotonic() < deadline:
        seen += [e.event for e in resumed.poll(timeout=0.5)]
    for w in range(3):
        assert [e["i"] for e in seen if e["w"] == w] == list(range(200))


def test_a_paper_node_publishes_to_redis_and_takes_its_commands_from_there(
    redis_stream: RedisStream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapphire.paper import PaperConfig, PaperSession
    from sapphire.store import Store

    monkeypatch.setenv("SAPPHIRE_REDIS_URL", URL)
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    config = PaperConfig(
        start="2022-01-03", end="2022-01-03 02:00", speed="max", size=0.01,
        size_mode="fixed", params={"fast": "5", "slow": "20"},
    )  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    session = PaperSession.start(config, store=store, home=tmp_path, run_id=f"redis-{RUN}")
    assert isinstance(session.stream, RedisStream)
    pause = command_event("pause")
    redis_stream.publish(control_channel(session.run_id), pause)
    candles = f"candles.{session.iid}.1m"  # shared by every run of the instrument
    before = redis_stream.head(candles)
    deadline = time.monotonic() + 10
    while not session.control.poll():  # as the loop does, before the first bar
        assert time.monotonic() < deadline
        time.sleep(0.02)
    view = session.run()  # paused from the start, to the end of the data
    assert view.status == "finished"
    events = [
        e.event for e in redis_stream.read({node_channel(session.run_id): START}, count=10_000)
    ]
    (ack,) = [e for e in events if e["type"] == "ack"]
    assert ack["command_id"] == pause["id"] and ack["ok"] and ack["trading_state"] == "REDUCING"
    assert not [e for e in events if e["type"] == "fill"]  # paused from the start: no entry
    assert events[-1]["type"] == "status" and events[-1]["status"] == "finished"
    assert events[-1]["stream"]["failed"] == 0 and events[-1]["stream"]["dropped"] == 0
    bars = [e.event for e in redis_stream.read({candles: before}, count=10_000)]
    mine = [b["ts_ns"] for b in bars if b["run_id"] == session.run_id]
    assert mine == session.bars.time.tolist()


def test_a_node_goes_on_when_redis_is_unreachable(tmp_path: Path) -> None:
    """Publishing to a Redis that is not there costs the node nothing but dropped and
    counted events."""
    from sapphire.engine.stream import StreamPublisher

    gone = RedisStream("redis://127.0.0.1:1/0", connect_timeout=0.2)
    publisher = StreamPublisher(gone, capacity=100)
    t0 = time.perf_counter()
    for i in range(10_000):
        publisher.publish("node.x", {"i": i})
    assert time.perf_counter() - t0 < 1.0
    publisher.flush(5.0)
    stats = publisher.stats()
    assert stats["sent"] == 0 and stats["dropped"] + stats["failed"] == 10_000
    assert "ConnectionError" in str(stats["last_error"])
    publisher.close()


def test_the_websocket_hub_replays_from_a_redis_position(redis_stream: RedisStream) -> None:
    """A WebSocket client resuming on Redis (`StreamHub.subscribe(since=...)`): the
    events after its position up to the hub's, then the live ones, none twice."""
    import asyncio
    import threading

    from sapphire.api.ws import Client, StreamHub

    channel = node_channel(f"ws-{RUN}")
    redis_stream.publish_many([(channel, {"type": "fill", "i": i}) for i in range(5)])
    entries = redis_stream.read({channel: START}, count=10)
    hub = StreamHub(redis_stream, poll_s=0.05)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        client = Client(loop)
        assert hub.subscribe(client, channel, None, since=entries[1].position) == 3
        redis_stream.publish(channel, {"type": "fill", "i": 5})
        deadline = time.monotonic() + 5
        while client.queue.qsize() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # nothing more comes
        got = [client.queue.get_nowait().event["i"] for _ in range(client.queue.qsize())]
        assert got == [2, 3, 4, 5]
        with pytest.raises(ValueError, match="position 'nonsense' of channel"):
            hub.subscribe(Client(loop), channel, None, since="nonsense")
        hub.leave(client)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
