"""The channels a message goes out on: Telegram, Slack, Discord, webhooks and email.

HTTP goes through the standard library (`urllib.request`) and email through `smtplib`:
each channel is one small request made on the notifier's own thread, so neither an
extra HTTP client nor apprise is needed, and every address (the Telegram Bot API's
included) can point at a local server in tests. A failed delivery raises
`DeliveryError`, saying whether a retry may help (a timeout, a 5xx, a 429 with its
Retry-After) or not (another 4xx: a bad token or URL). Error texts never hold a URL
or a token: a webhook URL is itself a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from email.message import EmailMessage
from typing import Any

from sapphire.ops.notify.config import (
    DiscordConfig,
    EmailConfig,
    NotificationsConfig,
    SlackConfig,
    TelegramConfig,
    WebhookConfig,
)
from sapphire.ops.notify.messages import Message

__all__ = [
    "Channel",
    "DeliveryError",
    "DiscordChannel",
    "EmailChannel",
    "SlackChannel",
    "TelegramAPI",
    "TelegramChannel",
    "WebhookChannel",
    "build_channels",
    "post_json",
    "send_test",
    "sign",
]

#: seconds an HTTP request may take
HTTP_TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """A message that did not go out; `retryable` when trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def post_json(
    url: str,
    body: bytes,
    *,
    what: str,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> bytes:
    """POST `body` (JSON) to `url`; the answer's body, or `DeliveryError` naming `what`."""
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "sapphire-notify",
                 **(headers or {})},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data: bytes = answer.read()
            return data
    except urllib.error.HTTPError as exc:
        code = exc.code
        retry_after = None
        if code == 429:
            try:
                retry_after = float(exc.headers.get("Retry-After") or 1.0)
            except ValueError:
                retry_after = 1.0
        raise DeliveryError(
            f"{what}: HTTP {code}", retryable=code == 429 or code >= 500, retry_after=retry_after
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{what}: {type(exc).__name__} ({reason})", retryable=True) from None


class Channel(ABC):
    """Where messages go; `kinds` are the kinds of message it takes."""

    name: str = "channel"

    def __init__(self, kinds: tuple[str, ...], rate_per_minute: int) -> None:
        self.kinds = tuple(kinds)
        self.rate_per_minute = rate_per_minute

    def wants(self, message: Message) -> bool:
        return message.kind in self.kinds

    @abstractmethod
    def send(self, message: Message) -> None:
        """Deliver `message` (`DeliveryError` when it did not go out)."""


class TelegramAPI:
    """Calls of Telegram's Bot API (`<base_url>/bot<token>/<method>`)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"TelegramAPI({self.base_url!r}, token=***)"

    def call(self, method: str, *, http_timeout: float | None = None, **params: Any) -> Any:
        """The `result` of `method` with `params` (`DeliveryError` when the call failed);
        `http_timeout` bounds the request (a long poll needs more than the default)."""
        url = f"{self.base_url}/bot{self._token}/{method}"
        answer = post_json(
            url, json.dumps(params).encode(), what=f"telegram {method}",
            timeout=http_timeout if http_timeout is not None else self.timeout,
        )  # fmt: skip
        try:
            reply = json.loads(answer)
        except ValueError:
            raise DeliveryError(f"telegram {method}: not JSON", retryable=True) from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            desc = reply.get("description") if isinstance(reply, dict) else None
            raise DeliveryError(f"telegram {method}: {desc or 'not ok'}", retryable=False)
        return reply.get("result")


class TelegramChannel(Channel):
    """Messages to each configured chat through the Bot API's sendMessage."""

    name = "telegram"
    LIMIT = 4096

    def __init__(self, config: TelegramConfig) -> None:
        super().__init__(config.kinds, config.rate_per_minute)
        assert config.token is not None  # the config refuses an enabled one without it
        self.api = TelegramAPI(config.base_url, config.token.get_secret_value())
        self.chat_ids = config.chat_ids

    def send(self, message: Message) -> None:
        text = message.plain()[: self.LIMIT]
        for chat_id in self.chat_ids:
            self.api.call("sendMessage", chat_id=chat_id, text=text, disable_web_page_preview=True)


class SlackChannel(Channel):
    """A Slack incoming webhook (`{"text": ...}`)."""

    name = "slack"

    def __init__(self, config: SlackConfig) -> None:
        super().__init__(config.kinds, config.rate_per_minute)
        assert config.url is not None
        self._url = config.url.get_secret_value()

    def send(self, message: Message) -> None:
        body = json.dumps({"text": f"*{message.title}*\n{message.text}".rstrip()})
        post_json(self._url, body.encode(), what="slack webhook")


class DiscordChannel(Channel):
    """A Discord webhook (`{"content": ...}`, at most 2000 characters)."""

    name = "discord"

    def __init__(self, config: DiscordConfig) -> None:
        super().__init__(config.kinds, config.rate_per_minute)
        assert config.url is not None
        self._url = config.url.get_secret_value()

    def send(self, message: Message) -> None:
        content = f"**{message.title}**\n{message.text}".rstrip()[:2000]
        post_json(self._url, json.dumps({"content": content}).encode(), what="discord webhook")


def sign(secret: str, body: bytes) -> str:
    """The signature header's value of `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel(Channel):
    """The message as JSON (`Message.as_json`), signed with HMAC-SHA256 when the
    webhook has a secret (`<signature_header>: sha256=<hex>` of the body)."""

    def __init__(self, config: WebhookConfig) -> None:
        super().__init__(config.kinds, config.rate_per_minute)
        assert config.url is not None
        self.name = f"webhook:{config.name}"
        self._url = config.url.get_secret_value()
        self._secret = None if config.hmac_secret is None else config.hmac_secret.get_secret_value()
        self.header = config.signature_header

    def send(self, message: Message) -> None:
        body = json.dumps(message.as_json(), sort_keys=True).encode()
        headers = {} if self._secret is None else {self.header: sign(self._secret, body)}
        post_json(self._url, body, what=self.name, headers=headers)


class EmailChannel(Channel):
    """One email per message over SMTP (STARTTLS when configured; `tls` the context,
    default the system's certificate authorities)."""

    name = "email"

    def __init__(self, config: EmailConfig, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(config.kinds, config.rate_per_minute)
        self.config = config
        self.tls = tls

    def send(self, message: Message) -> None:
        cfg = self.config
        mail = EmailMessage()
        mail["Subject"] = f"[Sapphire] {message.title}"
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.to)
        mail.set_content(message.plain())
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=self.tls or ssl.create_default_context())
                if cfg.username:
                    password = cfg.password.get_secret_value() if cfg.password else ""
                    smtp.login(cfg.username, password)
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"email via {cfg.host}:{cfg.port}: SMTP {exc.smtp_code}",
                retryable=exc.smtp_code >= 400 and exc.smtp_code < 500,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"email via {cfg.host}:{cfg.port}: {type(exc).__name__} ({exc})", retryable=True
            ) from None


def build_channels(
    config: NotificationsConfig, *, tls: ssl.SSLContext | None = None
) -> list[Channel]:
    """The enabled channels of `config`."""
    out: list[Channel] = []
    if config.telegram is not None and config.telegram.enabled:
        out.append(TelegramChannel(config.telegram))
    if config.slack is not None and config.slack.enabled:
        out.append(SlackChannel(config.slack))
    if config.discord is not None and config.discord.enabled:
        out.append(DiscordChannel(config.discord))
    out.extend(WebhookChannel(w) for w in config.webhooks if w.enabled)
    if config.email is not None and config.email.enabled:
        out.append(EmailChannel(config.email, tls=tls))
    return out


def send_test(config: NotificationsConfig, name: str, *, tls: ssl.SSLContext | None = None) -> str:
    """Send a test message on channel `name` now (no queue, no retry); what was done,
    or a ValueError naming an unknown channel, `DeliveryError` when it failed."""
    channels = {c.name: c for c in build_channels(config, tls=tls)}
    channel = channels.get(name) or channels.get(f"webhook:{name}")
    if channel is None:
        raise ValueError(
            f"channel {name!r} is not configured: expected one of "
            f"{', '.join(sorted(channels)) or '(none configured)'}"
        )
    message = Message(
        "summary", "Sapphire test message", f"The {channel.name} channel works.",
        key=f"test:{channel.name}",
    )  # fmt: skip
    channel.send(message)
    return f"sent a test message on {channel.name}"
