"""The notification service: nodes' events in, messages out, in the service's process or
in `sapphire notify watch`, never in a node.

`NotifyService` puts the pieces together: a `Watchdog` follows every node's channel
(and alerts when one stops beating), an `EventRelay` turns the events it reads into
messages and adds them to the day's summary, a `Notifier` sends them, and a
`TelegramBot` answers commands when Telegram commands are configured. `start` and
`stop` run and end it all on background threads.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

from sapphire.engine.stream import EventStream
from sapphire.ops.notify.channels import Channel, TelegramAPI, build_channels
from sapphire.ops.notify.config import NotificationsConfig
from sapphire.ops.notify.dispatch import Notifier
from sapphire.ops.notify.messages import DailySummary, Message, event_message
from sapphire.ops.notify.telegram import TelegramBot
from sapphire.ops.watchdog import Watchdog

__all__ = ["EventRelay", "NotifyService", "next_summary", "watch"]


def next_summary(after: datetime, at: day_time) -> datetime:
    """The first moment at `at` (UTC) strictly after `after`."""
    when = datetime.combine(after.astimezone(UTC).date(), at, tzinfo=UTC)
    return when if when > after else when + timedelta(days=1)


class EventRelay:
    """A node's events to messages (`event_message`) and to the day's summary, which
    goes out at `summary_at` UTC each day."""

    def __init__(
        self,
        notify: Callable[[Message], object],
        *,
        summary_at: day_time = day_time(0, 0),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.notify = notify
        self.summary = DailySummary()
        self.summary_at = summary_at
        self.now = now
        self.due = next_summary(now(), summary_at)

    def __call__(self, run_id: str, event: dict[str, Any]) -> None:
        self.tick()
        self.summary.add(run_id, event)
        message = event_message(run_id, event)
        if message is not None:
            self.notify(message)

    def tick(self) -> Message | None:
        """Send the summary when it is due (the day it covers: the one ending then)."""
        now = self.now()
        if now < self.due:
            return None
        covered: date = (self.due - timedelta(seconds=1)).date()
        self.due = next_summary(now, self.summary_at)
        message = self.summary.take(covered)
        if message is not None:
            self.notify(message)
        return message


class NotifyService:
    """Notifications, the watchdog and Telegram commands for the nodes of `home` on
    `stream` (see the module docstring)."""

    def __init__(
        self,
        config: NotificationsConfig,
        stream: EventStream,
        home: Path,
        *,
        channels: list[Channel] | None = None,
        tls: ssl.SSLContext | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.config = config
        self.stream = stream
        chosen = build_channels(config, tls=tls) if channels is None else channels
        self.notifier = Notifier(
            chosen if config.enabled else [], dedup_window_s=config.dedup_window_s,
            retries=config.retries, backoff_s=config.backoff_s, queue_size=config.queue_size,
        )  # fmt: skip
        self.relay = EventRelay(self.notifier.notify, summary_at=config.summary_at)
        self.watchdog = Watchdog(
            stream, self._notify, home=home, timeout_s=config.heartbeat_timeout_s,
            run_ids=config.run_ids, interval_s=interval_s, on_event=self.relay,
            on_check=self.relay.tick,
        )  # fmt: skip
        self.bot: TelegramBot | None = None
        tg = config.telegram
        if config.enabled and tg is not None and tg.enabled and tg.commands:
            assert tg.token is not None
            self.bot = TelegramBot(
                TelegramAPI(tg.base_url, tg.token.get_secret_value()), tg.chat_ids, stream,
                lambda: sorted(self.watchdog.nodes), poll_timeout_s=tg.poll_timeout_s,
            )  # fmt: skip

    def _notify(self, message: Message) -> None:
        self.notifier.notify(message)

    def start(self) -> None:
        """Follow the nodes and answer commands on background threads."""
        self.watchdog.start()
        if self.bot is not None:
            self.bot.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following, send what is queued (up to `timeout` s) and stop."""
        started = time.monotonic()
        self.watchdog.stop(timeout)
        if self.bot is not None:
            self.bot.stop(1.0)
        self.notifier.close(max(0.5, timeout - (time.monotonic() - started)))

    def stats(self) -> dict[str, Any]:
        """The notifier's counts and the nodes watched (down or not)."""
        return {
            "channels": self.notifier.stats(),
            "nodes": {r: {"down": w.down, "status": w.status}
                      for r, w in self.watchdog.nodes.items()},
        }  # fmt: skip


def watch(
    config: NotificationsConfig,
    stream: EventStream,
    home: Path,
    stop: threading.Event,
    *,
    interval_s: float = 1.0,
) -> dict[str, Any]:
    """Run a `NotifyService` until `stop` is set; its stats."""
    service = NotifyService(config, stream, home, interval_s=interval_s)
    service.start()
    try:
        stop.wait()
    finally:
        service.stop()
    return service.stats()
