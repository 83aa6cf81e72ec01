"""Clocks: simulated (driven by the data) and wall (real time), with timers.

Both give `now_ns()` (int nanoseconds since the epoch, UTC) and timers: `set_timer(name,
interval_ns, callback, start_ns=None, stop_ns=None)` fires `callback(TimeEvent)` every
`interval_ns` from `start_ns + interval_ns` on (the first tick is one interval after the
start), up to `stop_ns` inclusive. Timers fire from `advance_to(ts_ns)`: the simulated
clock is advanced by the node as data is replayed; the wall clock is advanced by the
node's live loop with the current time. Timers due at the same time fire in the order
they were set.
"""

from __future__ import annotations

import heapq
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Clock", "SimulatedClock", "TimeEvent", "WallClock"]


@dataclass(frozen=True, slots=True)
class TimeEvent:
    """A timer `name` firing at `ts_ns`."""

    name: str
    ts_ns: int


class _Timer:
    __slots__ = ("callback", "interval", "name", "next_ns", "stop_ns")

    def __init__(
        self, name: str, interval: int, next_ns: int, stop_ns: int | None, callback: Callable
    ) -> None:
        self.name = name
        self.interval = interval
        self.next_ns = next_ns
        self.stop_ns = stop_ns
        self.callback = callback


class Clock(ABC):
    """Time and timers; subclasses say where `now` comes from."""

    def __init__(self) -> None:
        self._timers: dict[str, _Timer] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._order = 0
        # the earliest due time of any timer (a float so that "none" is +inf)
        self.next_due: float = float("inf")

    @abstractmethod
    def now_ns(self) -> int:
        """The current time, int nanoseconds since the epoch (UTC)."""

    def set_timer(
        self,
        name: str,
        interval_ns: int,
        callback: Callable[[TimeEvent], None],
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"timer name must be a non-empty str, got {name!r}")
        if name in self._timers:
            raise ValueError(f"timer {name!r} is already set")
        if isinstance(interval_ns, bool) or not isinstance(interval_ns, int) or interval_ns <= 0:
            raise ValueError(f"timer interval_ns must be an int > 0, got {interval_ns!r}")
        start = self.now_ns() if start_ns is None else start_ns
        timer = _Timer(name, interval_ns, start + interval_ns, stop_ns, callback)
        self._timers[name] = timer
        self._push(timer)

    def cancel_timer(self, name: str) -> None:
        if self._timers.pop(name, None) is None:
            raise ValueError(f"no timer named {name!r}")
        self._refresh()

    @property
    def timer_names(self) -> list[str]:
        return list(self._timers)

    def _push(self, timer: _Timer) -> None:
        if timer.stop_ns is not None and timer.next_ns > timer.stop_ns:
            self._timers.pop(timer.name, None)
        else:
            self._order += 1
            heapq.heappush(self._heap, (timer.next_ns, self._order, timer.name))
        self._refresh()

    def _refresh(self) -> None:
        heap = self._heap
        while heap and (
            heap[0][2] not in self._timers or self._timers[heap[0][2]].next_ns != heap[0][0]
        ):
            heapq.heappop(heap)
        self.next_due = heap[0][0] if heap else float("inf")

    def advance_to(self, ts_ns: int) -> int:
        """Fire every timer due at or before `ts_ns`, in time order; return how many."""
        fired = 0
        while self.next_due <= ts_ns:
            due, _, name = heapq.heappop(self._heap)
            timer = self._timers[name]
            self._set_time(due)
            timer.next_ns = due + timer.interval
            self._push(timer)
            timer.callback(TimeEvent(name, due))
            fired += 1
        self._set_time(ts_ns)
        return fired

    def _set_time(self, ts_ns: int) -> None:  # noqa: B027 - a no-op by default
        """Simulated clocks move; the wall clock ignores it."""


class SimulatedClock(Clock):
    """A clock moved by the replayed data (backtests)."""

    def __init__(self, start_ns: int = 0) -> None:
        super().__init__()
        self.ts_ns = start_ns

    def now_ns(self) -> int:
        return self.ts_ns

    def set_time(self, ts_ns: int) -> None:
        """Move to `ts_ns` without firing timers (the hot path; see `advance_to`)."""
        if ts_ns < self.ts_ns:
            raise ValueError(f"the clock cannot go back from {self.ts_ns} to {ts_ns}")
        self.ts_ns = ts_ns

    def _set_time(self, ts_ns: int) -> None:
        if ts_ns > self.ts_ns:
            self.ts_ns = ts_ns


class WallClock(Clock):
    """Real time (paper and live)."""

    def now_ns(self) -> int:
        return time.time_ns()
