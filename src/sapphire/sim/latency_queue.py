"""`LatencyQueue`: the messages between the node and the tick and book venue
(`sapphire.sim.exchange.MarketVenue`) while they travel.

An order, cancel or amendment reaches the matcher `submit_delay()` ns after the node
sent it; every report (accepted, filled, canceled, ...) reaches the node
`report_delay()` ns after the matcher produced it. Both directions are FIFO
connections: a later message never overtakes an earlier one. Pending messages wait in
one time-ordered queue that the venue releases as market data advances its clock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from sapphire.sim.models import LatencyModel

__all__ = ["AMEND", "CANCEL", "REPORT", "SUBMIT", "LatencyQueue", "Message"]

# kinds of messages: to the venue (an order, a cancel, an amendment), or from it
SUBMIT, CANCEL, AMEND, REPORT = range(4)


@dataclass(order=True)
class Message:
    """One message of `kind`, due at `due_ns` (ties in the order they were sent)."""

    due_ns: int
    seq: int
    kind: int = field(compare=False)
    payload: Any = field(compare=False)


class LatencyQueue:
    """The pending messages of both directions, in time order."""

    def __init__(self, latency: LatencyModel) -> None:
        self.latency = latency
        self._heap: list[Message] = []
        self._seq = 0
        self._last_arrival = 0
        self._last_report = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def send(self, now: int, kind: int, payload: Any) -> None:
        """A message to the venue, sent at `now`: it arrives after the submit delay."""
        due = max(now + self.latency.submit_delay(), self._last_arrival)
        self._last_arrival = due
        self._push(due, kind, payload)

    def report(self, now: int, reports: list[Any]) -> None:
        """Reports of what the venue did at `now`, delivered after one report delay."""
        due = max(now + self.latency.report_delay(), self._last_report)
        self._last_report = due
        for report in reports:
            self._push(due, REPORT, report)

    def pop_due(self, until: int) -> Message | None:
        """The next message due at or before `until`, or None."""
        heap = self._heap
        if heap and heap[0].due_ns <= until:
            return heapq.heappop(heap)
        return None

    def last_due(self) -> int:
        """When the last pending message is due."""
        return max(m.due_ns for m in self._heap)

    def _push(self, due: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Message(due, self._seq, kind, payload))
