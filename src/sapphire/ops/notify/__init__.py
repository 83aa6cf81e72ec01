"""Notifications: trade, risk, error, drift and daily-summary messages from the nodes'
events to Telegram, Slack, Discord, webhooks and email, Telegram commands, and the
watchdog that reports a node that died (`NotifyService` runs them together)."""

from sapphire.ops.notify.channels import (
    Channel,
    DeliveryError,
    DiscordChannel,
    EmailChannel,
    SlackChannel,
    TelegramAPI,
    TelegramChannel,
    WebhookChannel,
    build_channels,
)
from sapphire.ops.notify.config import (
    DiscordConfig,
    EmailConfig,
    NotificationsConfig,
    SlackConfig,
    TelegramConfig,
    WebhookConfig,
    load_notifications,
)
from sapphire.ops.notify.dispatch import Deduplicator, Notifier, RateLimiter
from sapphire.ops.notify.messages import DailySummary, Message, event_message
from sapphire.ops.notify.service import EventRelay, NotifyService
from sapphire.ops.notify.telegram import TelegramBot

__all__ = [
    "Channel",
    "DailySummary",
    "Deduplicator",
    "DeliveryError",
    "DiscordChannel",
    "DiscordConfig",
    "EmailChannel",
    "EmailConfig",
    "EventRelay",
    "Message",
    "NotificationsConfig",
    "Notifier",
    "NotifyService",
    "RateLimiter",
    "SlackChannel",
    "SlackConfig",
    "TelegramAPI",
    "TelegramBot",
    "TelegramChannel",
    "TelegramConfig",
    "WebhookChannel",
    "WebhookConfig",
    "build_channels",
    "event_message",
    "load_notifications",
]
