"""The notifier: never blocks, de-duplicates with a count, rate-limits per channel,
retries what may succeed and gives up on what cannot."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from sapphire.correlation import correlation_id
from sapphire.ops.notify.channels import Channel, DeliveryError
from sapphire.ops.notify.dispatch import Deduplicator, Notifier, RateLimiter
from sapphire.ops.notify.messages import Message, event_message


class Recorder(Channel):
    """A channel that records what it sends; `fail` makes the next sends fail."""

    def __init__(self, name: str = "rec", kinds=("trade", "risk"), rate: int = 1000) -> None:
        super().__init__(kinds, rate)
        self.name = name
        self.sent: list[Message] = []
        self.fail: list[DeliveryError] = []
        self.gate = threading.Event()
        self.gate.set()

    def send(self, message: Message) -> None:
        self.gate.wait(5)
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(message)


def msg(key: str, kind: str = "trade") -> Message:
    return Message(kind, f"title {key}", "text", key=key)


def test_same_key_within_the_window_is_sent_once_then_with_its_count() -> None:
    now = [0.0]
    dedup = Deduplicator(60.0, clock=lambda: now[0])
    assert dedup.admit("k") == 0
    assert dedup.admit("k") is None and dedup.admit("k") is None
    assert dedup.admit("other") == 0
    now[0] = 61.0
    assert dedup.admit("k") == 2  # two held back since it was last sent
    assert dedup.suppressed == 2


def test_notifier_deduplicates_and_routes_by_kind() -> None:
    rec, risk_only = Recorder(), Recorder("risk", kinds=("risk",))
    n = Notifier([rec, risk_only], dedup_window_s=60, backoff_s=0.01)
    assert n.notify(msg("a"))
    assert not n.notify(msg("a"))  # a repeat
    assert n.notify(msg("b", "risk"))
    assert not n.notify(msg("c", "drift"))  # no channel takes drift
    assert n.drain(5)
    assert [m.key for m in rec.sent] == ["a", "b"]
    assert [m.key for m in risk_only.sent] == ["b"]
    assert n.stats()["deduplicated"]["suppressed"] == 1
    n.close()


def test_notify_never_waits_on_a_slow_channel_and_a_full_queue_drops() -> None:
    rec = Recorder()
    rec.gate.clear()  # the channel hangs
    n = Notifier([rec], dedup_window_s=0, queue_size=10)
    started = time.monotonic()
    results = [n.notify(msg(f"m{i}")) for i in range(30)]
    assert time.monotonic() - started < 0.5
    assert results.count(False) >= 19  # 10 queued, one maybe taken by the thread
    assert n.stats()["rec"]["dropped"] == results.count(False)
    rec.gate.set()
    assert n.drain(5)
    assert len(rec.sent) == results.count(True)
    n.close()


def test_retryable_failures_are_retried_with_backoff_and_others_are_not() -> None:
    rec = Recorder()
    rec.fail = [DeliveryError("x: HTTP 503", retryable=True),
                DeliveryError("x: HTTP 429", retryable=True, retry_after=0.01)]  # fmt: skip
    n = Notifier([rec], dedup_window_s=0, retries=3, backoff_s=0.01)
    n.notify(msg("a"))
    assert n.drain(5)
    assert [m.key for m in rec.sent] == ["a"]
    assert n.stats()["rec"] == {"sent": 1, "failed": 0, "retried": 2, "dropped": 0}
    rec.fail = [DeliveryError("x: HTTP 401", retryable=False)]
    n.notify(msg("b"))
    assert n.drain(5)
    assert n.stats()["rec"]["failed"] == 1 and len(rec.sent) == 1
    rec.fail = [DeliveryError("x: timeout", retryable=True)] * 3
    n2 = Notifier([rec], dedup_window_s=0, retries=2, backoff_s=0.01)
    n2.notify(msg("c"))
    assert n2.drain(5)
    assert n2.stats()["rec"]["failed"] == 1 and n2.stats()["rec"]["retried"] == 2
    n.close()
    n2.close()


def test_the_rate_limiter_spreads_a_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one a second, bursts of 60
    waits = [limiter.wait_s() for _ in range(62)]
    assert waits[:60] == [0.0] * 60
    assert waits[60] == 1.0 and waits[61] == 2.0
    now[0] = 10.0
    assert limiter.wait_s() == 0.0  # ten tokens came back, two were owed


def test_a_channel_over_its_rate_waits_instead_of_dropping() -> None:
    rec = Recorder(rate=60)
    n = Notifier([rec], dedup_window_s=0)
    lane = n.lanes[0]
    lane.limiter.tokens = 0.0  # the burst is spent: one a second from now
    for i in range(2):
        n.notify(msg(f"m{i}"))
    time.sleep(0.3)
    assert rec.sent == []  # waiting for a token, not sent and not dropped
    assert n.drain(5)
    assert [m.key for m in rec.sent] == ["m0", "m1"]
    n.close()


def test_a_notification_logs_its_node_events_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The correlation id a node put on a fill follows it into the notification and the
    notifier's log lines (a signal followed to its notifications)."""
    event = {"type": "fill", "side": "BUY", "last_qty": "0.01", "instrument_id": "BTC",
             "last_px": "100", "fee": "0.01", "fee_currency": "USDT", "trade_id": "t1",
             "client_order_id": "r-s-7", "correlation_id": "r-s-7"}  # fmt: skip
    message = event_message("r", event)
    assert message is not None and message.correlation_id == "r-s-7"
    assert event_message("r", {**event, "correlation_id": "has space"}).correlation_id is None  # type: ignore[union-attr]
    seen: list[str | None] = []

    class Seeing(Recorder):
        def send(self, message: Message) -> None:
            seen.append(correlation_id())
            super().send(message)

    rec = Seeing()
    n = Notifier([rec], dedup_window_s=60, backoff_s=0.01)
    with caplog.at_level(logging.INFO, logger="sapphire.ops.notify"):
        assert n.notify(message)
        assert n.drain(5)
    n.close()
    assert seen == ["r-s-7"]  # bound while it is sent
    (sent,) = [r for r in caplog.records if "sent on rec" in r.getMessage()]
    assert sent.notification == "trade" and sent.run_id == "r"  # type: ignore[attr-defined]
