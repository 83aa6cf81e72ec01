"""Sending messages without waiting for them: de-duplication, rate limits, retries.

`Notifier.notify` never blocks: a message whose key was sent less than the window ago is
counted instead of sent (the next one sent after the window says how many were held
back), and the others are queued per channel. Each channel has its own thread, so a
slow or failing channel never holds the others up: it takes its queue in order, at
most `rate_per_minute` messages a minute (a token bucket: a burst is spread out, never
lost), retrying a retryable failure with exponential backoff (or the server's
Retry-After). A full queue drops the message and counts it (`stats`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from sapphire.correlation import correlated
from sapphire.ops.notify.channels import Channel, DeliveryError
from sapphire.ops.notify.messages import Message

__all__ = ["Deduplicator", "Notifier", "RateLimiter"]

log = logging.getLogger("sapphire.ops.notify")


class RateLimiter:
    """A token bucket: `per_minute` tokens a minute, bursts of up to `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"rate {per_minute!r} a minute is invalid: expected >= 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.tokens = self.capacity
        self.at = clock()

    def wait_s(self) -> float:
        """Take a token: 0 when one was there, else the seconds until one is (taken
        in advance: the caller waits that long and then sends)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Deduplicator:
    """Lets a key through once per `window_s` seconds, counting the repeats between."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.first: dict[str, float] = {}
        self.held: dict[str, int] = {}
        self.suppressed = 0

    def admit(self, key: str) -> int | None:
        """None when `key` was sent within the window (counted), else how many
        repeats of it were held back since it was last sent."""
        now = self.clock()
        since = self.first.get(key)
        if since is not None and now - since < self.window_s:
            self.held[key] = self.held.get(key, 0) + 1
            self.suppressed += 1
            return None
        self.first[key] = now
        if len(self.first) > 10_000:  # forget keys whose window has passed
            for old in [k for k, t in self.first.items() if now - t >= self.window_s]:
                self.first.pop(old, None)
        return self.held.pop(key, 0)


@dataclass
class _Counts:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0


class _Lane:
    """One channel's queue and thread."""

    def __init__(self, notifier: Notifier, channel: Channel) -> None:
        self.notifier = notifier
        self.channel = channel
        self.queue: deque[Message] = deque()
        self.limiter = RateLimiter(channel.rate_per_minute)
        self.counts = _Counts()
        self.ready = threading.Condition()
        self.busy = False
        self.thread = threading.Thread(target=self.run, name=f"notify-{channel.name}", daemon=True)

    def put(self, message: Message) -> bool:
        with self.ready:
            if len(self.queue) >= self.notifier.queue_size:
                self.counts.dropped += 1
                return False
            self.queue.append(message)
            self.ready.notify()
        return True

    def idle(self) -> bool:
        with self.ready:
            return not self.queue and not self.busy

    def run(self) -> None:
        stop = self.notifier.stopping
        while True:
            with self.ready:
                while not self.queue and not stop.is_set():
                    self.ready.wait(0.5)
                if not self.queue:
                    return
                message = self.queue.popleft()
                self.busy = True
            try:
                wait = self.limiter.wait_s()
                if wait > 0 and stop.wait(wait):
                    return
                self.deliver(message)
            finally:
                with self.ready:
                    self.busy = False

    def deliver(self, message: Message) -> None:
        """Send `message` (retried with back-off); its log lines carry its correlation id."""
        with correlated(message.correlation_id):
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        notifier = self.notifier
        delay = notifier.backoff_s
        for attempt in range(notifier.retries + 1):
            try:
                self.channel.send(message)
            except DeliveryError as exc:
                if not exc.retryable or attempt == notifier.retries:
                    self.counts.failed += 1
                    log.warning("notification %r not sent on %s: %s", message.key,
                                self.channel.name, exc)  # fmt: skip
                    return
                self.counts.retried += 1
                pause = exc.retry_after if exc.retry_after is not None else delay
                delay *= 2
                if notifier.stopping.wait(min(pause, 60.0)):
                    return
            except Exception as exc:  # a channel's bug must not end its thread
                self.counts.failed += 1
                log.exception("notification %r failed on %s: %s", message.key,
                              self.channel.name, exc)  # fmt: skip
                return
            else:
                self.counts.sent += 1
                log.info("notification %r sent on %s", message.key, self.channel.name,
                         extra={"notification": message.kind, "channel": self.channel.name,
                                "run_id": message.run_id})  # fmt: skip
                return


class Notifier:
    """Sends messages to channels from background threads (see the module docstring)."""

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        dedup_window_s: float = 300.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        queue_size: int = 1000,
    ) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.queue_size = queue_size
        self.dedup = Deduplicator(dedup_window_s)
        self.stopping = threading.Event()
        self.lanes = [_Lane(self, c) for c in channels]
        for lane in self.lanes:
            lane.thread.start()

    def notify(self, message: Message) -> bool:
        """Queue `message` for every channel that takes its kind (False: held back as a
        repeat, or no channel queued it)."""
        repeats = self.dedup.admit(message.key)
        if repeats is None:
            return False
        if repeats:
            message = replace(
                message, text=f"{message.text}\n(repeated {repeats} more times)".lstrip("\n")
            )
        queued = False
        for lane in self.lanes:
            if lane.channel.wants(message):
                queued = lane.put(message) or queued
        return queued

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queue is empty (True) or `timeout` seconds passed."""
        deadline = time.monotonic() + timeout
        while not all(lane.idle() for lane in self.lanes):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to `timeout` seconds), then stop the threads."""
        self.drain(timeout)
        self.stopping.set()
        for lane in self.lanes:
            with lane.ready:
                lane.ready.notify_all()
            lane.thread.join(timeout=1.0)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per channel: sent, failed, retried, dropped; and the repeats held back."""
        out = {
            lane.channel.name: {
                "sent": lane.counts.sent, "failed": lane.counts.failed,
                "retried": lane.counts.retried, "dropped": lane.counts.dropped,
            }
            for lane in self.lanes
        }  # fmt: skip
        out["deduplicated"] = {"suppressed": self.dedup.suppressed}
        return out
