"""The watchdog: a node whose process dies or whose heartbeats stop is reported once,
its return once; a node that stopped cleanly is not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sapphire.engine.stream import LocalStream, node_channel
from sapphire.ops.notify.messages import Message
from sapphire.ops.watchdog import Watchdog, find_nodes, pid_alive


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def beat(stream: LocalStream, run_id: str, ts: float, status: str = "running") -> None:
    stream.publish(node_channel(run_id), {"type": "status", "status": status,
                                          "ts_ns": int(ts * 1e9)})  # fmt: skip


def pid_file(home: Path, run_id: str, pid: int) -> Path:
    run_dir = home / "paper" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "node.pid").write_text(json.dumps({"pid": pid, "ts_ns": 0}))
    return run_dir


@pytest.fixture
def stream(tmp_path: Path) -> LocalStream:
    return LocalStream(tmp_path / "events", poll_s=0.01)


def test_a_killed_node_is_reported_once_and_its_return_once(
    tmp_path: Path, stream: LocalStream
) -> None:
    clock = Clock()
    sent: list[Message] = []
    proc = subprocess.Popen(["sleep", "30"])
    pid_file(tmp_path, "n1", proc.pid)
    beat(stream, "n1", clock.now)
    dog = Watchdog(stream, sent.append, home=tmp_path, timeout_s=20, clock=clock)
    assert dog.check() == []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not pid_alive(proc.pid)
    down = dog.check()
    assert [m.title for m in down] == ["[n1] Node down"]
    assert down[0].severity == "critical" and down[0].kind == "watchdog"
    assert f"its process {proc.pid} is gone" in down[0].text
    clock.now += 60
    assert dog.check() == []  # once, not at every check
    pid_file(tmp_path, "n1", os.getpid())  # the run is resumed
    beat(stream, "n1", clock.now)
    back = dog.check()
    assert [m.title for m in back] == ["[n1] Node recovered"]
    assert sent == down + back
    assert down[0].key != back[0].key


def test_missed_heartbeats_of_a_node_elsewhere_are_reported(
    tmp_path: Path, stream: LocalStream
) -> None:
    clock = Clock()
    beat(stream, "remote", clock.now)
    dog = Watchdog(stream, lambda m: None, home=tmp_path, timeout_s=20, run_ids=["remote"],
                   clock=clock)  # fmt: skip
    clock.now += 15
    assert dog.check() == []
    clock.now += 15
    down = dog.check()
    assert len(down) == 1 and "no heartbeat for 30 s (timeout 20 s)" in down[0].text
    beat(stream, "remote", clock.now)
    assert [m.title for m in dog.check()] == ["[remote] Node recovered"]
    clock.now += 25
    again = dog.check()
    assert len(again) == 1 and again[0].key.endswith(":down:2")  # a second outage


def test_a_clean_stop_is_not_an_outage(tmp_path: Path, stream: LocalStream) -> None:
    clock = Clock()
    run_dir = pid_file(tmp_path, "n2", os.getpid())
    beat(stream, "n2", clock.now)
    dog = Watchdog(stream, lambda m: None, home=tmp_path, timeout_s=5, clock=clock)
    assert dog.check() == []
    (run_dir / "node.pid").unlink()
    beat(stream, "n2", clock.now, status="stopped")
    clock.now += 3600
    assert dog.check() == []
    assert dog.nodes["n2"].status == "stopped" and not dog.nodes["n2"].down


def test_every_event_is_relayed_and_each_check_reported(
    tmp_path: Path, stream: LocalStream
) -> None:
    seen: list[tuple[str, str]] = []
    checks = []
    pid_file(tmp_path, "n3", os.getpid())
    dog = Watchdog(stream, lambda m: None, home=tmp_path, on_event=lambda r, e: seen.append(
        (r, e["type"])), on_check=lambda: checks.append(1))  # fmt: skip
    dog.check()
    beat(stream, "n3", time.time())
    stream.publish(node_channel("n3"), {"type": "fill", "trade_id": "T"})
    dog.check()
    assert seen == [("n3", "status"), ("n3", "fill")] and len(checks) == 2


def test_find_nodes_and_a_bad_timeout(tmp_path: Path, stream: LocalStream) -> None:
    run_dir = pid_file(tmp_path, "a", 1)
    (tmp_path / "live" / "b").mkdir(parents=True)
    assert find_nodes(tmp_path, ["b", "c"]) == {"a": run_dir, "b": tmp_path / "live" / "b",
                                                 "c": None}  # fmt: skip
    with pytest.raises(ValueError, match="timeout_s=0"):
        Watchdog(stream, lambda m: None, home=tmp_path, timeout_s=0)


def test_the_thread_starts_and_stops(tmp_path: Path, stream: LocalStream) -> None:
    sent: list[Message] = []
    beat(stream, "r", time.time() - 100)
    dog = Watchdog(stream, sent.append, home=tmp_path, timeout_s=1, run_ids=["r"],
                   interval_s=0.05)  # fmt: skip
    dog.start()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.02)
    dog.stop()
    assert [m.title for m in sent] == ["[r] Node down"]
