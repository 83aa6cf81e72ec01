"""The watchdog: a node that dies cannot say so, so something else notices.

A paper or live session publishes a `status` event on `node.<run_id>` when it starts, at
least every 5 seconds while its loop runs (`STATUS_EVERY_S`) and when it stops, and
keeps its process id in its run directory's `node.pid` while the loop runs (removed on a
clean exit, left behind by a SIGKILL or a power cut). `Watchdog` finds the nodes (the
`node.pid` files under `$SAPPHIRE_HOME/{paper,live}/*`, and the run ids it is given,
which may run on another machine sharing the Redis stream), follows their channels and,
at each check:

- a node whose `node.pid` names a process that is gone, or whose last status event is
  older than `timeout_s`, is down: one `watchdog` message (critical), not repeated while
  it stays down;
- a node that was down and publishes a running status again (a resumed run) has
  recovered: one message;
- a node whose last status is a clean end (stopped, finished, closed) and has no
  `node.pid` is not watched until it starts again.

Every event read is also handed to `on_event` (the notifier's relay), so one reader
follows each node's channel, and `on_check` is called after each check (the daily
summary's clock). `start`/`stop` run the checks on a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapphire.engine.session import PID_FILE, read_pid
from sapphire.engine.stream import EventStream, StreamReader, node_channel
from sapphire.ops.notify.messages import Message

__all__ = ["NODE_MODES", "NodeWatch", "Watchdog", "find_nodes", "pid_alive"]

log = logging.getLogger("sapphire.ops.watchdog")
#: the run-directory folders of `$SAPPHIRE_HOME` that hold nodes
NODE_MODES = ("paper", "live")
_ENDED = ("stopped", "finished", "closed")


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def find_nodes(home: Path, run_ids: Iterable[str] = ()) -> dict[str, Path | None]:
    """The nodes to watch: run id -> run directory (None: not on this machine), those
    with a `node.pid` under `home` and `run_ids`."""
    out: dict[str, Path | None] = {}
    for mode in NODE_MODES:
        for pid_file in sorted((Path(home) / mode).glob(f"*/{PID_FILE}")):
            out[pid_file.parent.name] = pid_file.parent
    for run_id in run_ids:
        if run_id not in out:
            dirs = [Path(home) / m / run_id for m in NODE_MODES]
            out[run_id] = next((d for d in dirs if d.is_dir()), None)
    return out


@dataclass
class NodeWatch:
    """What the watchdog knows of one node."""

    run_id: str
    run_dir: Path | None
    beat: float | None = None  # wall time of its last status event (seconds)
    status: str | None = None
    down: bool = False
    outages: int = 0


class Watchdog:
    """Alerts when a node's heartbeats stop or its process dies (see the module
    docstring); `notify` receives the messages, `on_event` every event read."""

    def __init__(
        self,
        stream: EventStream,
        notify: Callable[[Message], object],
        *,
        home: Path,
        timeout_s: float = 20.0,
        run_ids: Iterable[str] = (),
        interval_s: float = 1.0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        on_check: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s!r} is invalid: expected > 0")
        self.stream = stream
        self.notify = notify
        self.home = Path(home)
        self.timeout_s = timeout_s
        self.run_ids = tuple(run_ids)
        self.interval_s = interval_s
        self.on_event = on_event
        self.on_check = on_check
        self.clock = clock
        self.nodes: dict[str, NodeWatch] = {}
        self.reader: StreamReader = stream.reader([])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- one check
    def _add(self, run_id: str, run_dir: Path | None) -> NodeWatch:
        """Start following a node, its last heartbeat from the channel's tail."""
        watch = self.nodes[run_id] = NodeWatch(run_id, run_dir)
        channel = node_channel(run_id)
        for entry in reversed(self.stream.tail(channel, 200)):
            if entry.event.get("type") == "status":
                self._beat(watch, entry.event)
                break
        self.reader.add(channel)
        return watch

    def _beat(self, watch: NodeWatch, event: dict[str, Any]) -> None:
        ts = event.get("ts_ns")
        watch.beat = ts / 1e9 if isinstance(ts, int) else self.clock()
        watch.status = str(event.get("status") or "")

    def check(self) -> list[Message]:
        """Find nodes, read their events, and alert on the ones down or recovered."""
        for run_id, run_dir in find_nodes(self.home, self.run_ids).items():
            watch = self.nodes.get(run_id)
            if watch is None:
                self._add(run_id, run_dir)
            elif watch.run_dir is None and run_dir is not None:
                watch.run_dir = run_dir
        for entry in self.reader.poll(timeout=0.0):
            run_id = entry.channel.removeprefix("node.")
            watch = self.nodes.get(run_id)
            if watch is None:
                continue
            if entry.event.get("type") == "status":
                self._beat(watch, entry.event)
            if self.on_event is not None:
                try:
                    self.on_event(run_id, entry.event)
                except Exception:  # the relay's failure must not stop the watchdog
                    log.exception("the event relay failed on an event of node %s", run_id)
        out = []
        for watch in self.nodes.values():
            message = self._judge(watch)
            if message is not None:
                out.append(message)
                self.notify(message)
        if self.on_check is not None:
            self.on_check()
        return out

    def _judge(self, watch: NodeWatch) -> Message | None:
        now = self.clock()
        pid = read_pid(watch.run_dir) if watch.run_dir is not None else None
        gone = pid is not None and not pid_alive(pid)
        ended = watch.status in _ENDED and pid is None
        silent = watch.beat is None or now - watch.beat > self.timeout_s
        if not watch.down:
            if ended or not (gone or (silent and watch.beat is not None)):
                return None  # a node never heard from is not yet late (its pid is alive)
            watch.down = True
            watch.outages += 1
            if gone:
                why = f"its process {pid} is gone"
            else:
                assert watch.beat is not None
                why = f"no heartbeat for {now - watch.beat:.0f} s (timeout {self.timeout_s:g} s)"
            last = f"; last status {watch.status!r}" if watch.status else ""
            return Message(
                "watchdog", f"[{watch.run_id}] Node down", f"{why}{last}",
                key=f"watchdog:{watch.run_id}:down:{watch.outages}", severity="critical",
                run_id=watch.run_id, fields={"state": "down", "pid": str(pid or "")},
            )  # fmt: skip
        if ended or (not gone and not silent and watch.status == "running"):
            watch.down = False
            how = "stopped cleanly" if ended else "heartbeats again"
            return Message(
                "watchdog", f"[{watch.run_id}] Node recovered", how,
                key=f"watchdog:{watch.run_id}:recovered:{watch.outages}",
                run_id=watch.run_id, fields={"state": "recovered"},
            )  # fmt: skip
        return None

    # ---------------------------------------------------------------- the thread
    def run(self) -> None:
        """Check every `interval_s` seconds until `stop`."""
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the stream is down: try again at the next check
                log.exception("watchdog check failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Run the checks on a background thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="watchdog", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the check in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
