"""The typed configuration of notifications: channels, limits and the watchdog.

`NotificationsConfig` is a frozen pydantic model that rejects unknown fields; the one
configuration of Sapphire nests it as `notifications`. Tokens, webhook URLs and passwords
are secrets (`SecretStr`: masked in every repr and dump) and are never read from a config
file: `load_notifications` takes them from the environment
(`SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN`, the names pydantic-settings uses for a nested
field) or from a secrets file of `NAME=value` lines, and refuses a file that holds one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import time as day_time
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ENV_PREFIX",
    "KINDS",
    "SECRET_FIELDS",
    "DiscordConfig",
    "EmailConfig",
    "NotificationsConfig",
    "SlackConfig",
    "TelegramConfig",
    "WebhookConfig",
    "config_errors",
    "load_notifications",
    "read_notifications",
]

#: what a message is about; a channel may take only some of them
Kind = Literal["trade", "risk", "error", "drift", "summary", "watchdog"]
KINDS: tuple[Kind, ...] = ("trade", "risk", "error", "drift", "summary", "watchdog")
#: the environment prefix of the nested notification settings
ENV_PREFIX = "SAPPHIRE_NOTIFICATIONS__"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Channel(_Frozen):
    enabled: bool = True
    kinds: tuple[Kind, ...] = Field(KINDS, description="The kinds of message it takes.")
    rate_per_minute: int = Field(20, ge=1, le=10_000, description="Messages a minute at most.")


def _http_url(value: str, name: str) -> str:
    if not re.match(r"https?://[^\s/]+", value):
        raise ValueError(f"{name} {_mask(value)!r} is invalid: expected an http(s):// URL")
    return value


def _mask(value: str) -> str:
    """A URL's scheme and host only (its path often is the secret)."""
    match = re.match(r"([a-z]+://[^/\s]+)", value)
    return (match.group(1) + "/...") if match else "***"


class TelegramConfig(_Channel):
    """Telegram's Bot API: messages to `chat_ids`, and the commands they may send."""

    token: SecretStr | None = Field(None, description="The bot's token (a secret).")
    chat_ids: tuple[int, ...] = Field((), description="The chats messages go to.")
    base_url: str = Field("https://api.telegram.org", description="The Bot API's address.")
    commands: bool = Field(True, description="Answer /status, /pause, /kill... from chat_ids.")
    poll_timeout_s: int = Field(25, ge=0, le=50, description="getUpdates long-poll seconds.")

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return _http_url(value, "telegram.base_url").rstrip("/")

    @model_validator(mode="after")
    def _complete(self) -> TelegramConfig:
        if self.enabled and (self.token is None or not self.chat_ids):
            raise ValueError(
                "telegram needs a token (SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN) and at "
                f"least one chat id (chat_ids={list(self.chat_ids)!r})"
            )
        return self


class _HookConfig(_Channel):
    url: SecretStr | None = Field(None, description="The incoming webhook's URL (a secret).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _http_url(value.get_secret_value(), "url")
        return value

    @model_validator(mode="after")
    def _complete(self) -> _HookConfig:
        if self.enabled and self.url is None:
            raise ValueError(f"{type(self).__name__} needs a url (a secret: env or secrets file)")
        return self


class SlackConfig(_HookConfig):
    """A Slack incoming webhook."""


class DiscordConfig(_HookConfig):
    """A Discord webhook."""


class WebhookConfig(_HookConfig):
    """A generic webhook: the message as JSON, signed when `hmac_secret` is set."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$", description="Its name (env variables).")
    hmac_secret: SecretStr | None = Field(None, description="Signs the body (a secret).")
    signature_header: str = Field("X-Sapphire-Signature", pattern=r"^[A-Za-z0-9-]{1,80}$")


class EmailConfig(_Channel):
    """SMTP: a message to `to`, over STARTTLS when `starttls`."""

    host: str = Field(min_length=1, description="The SMTP server.")
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = Field(None, description="The SMTP password (a secret).")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="The From address.")
    to: tuple[str, ...] = Field(min_length=1, description="The recipients.")
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("to")
    @classmethod
    def _to(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
                raise ValueError(f"recipient {address!r} is invalid: expected name@domain")
        return value


class NotificationsConfig(_Frozen):
    """Where messages go and how often (see the module docstring)."""

    enabled: bool = True
    telegram: TelegramConfig | None = None
    slack: SlackConfig | None = None
    discord: DiscordConfig | None = None
    webhooks: tuple[WebhookConfig, ...] = ()
    email: EmailConfig | None = None
    dedup_window_s: float = Field(300.0, ge=0, le=86_400, description="Same message: once.")
    retries: int = Field(3, ge=0, le=10, description="Tries after the first failure.")
    backoff_s: float = Field(1.0, gt=0, le=60, description="First retry's wait (doubles).")
    queue_size: int = Field(1000, ge=10, le=1_000_000)
    summary_at: day_time = Field(day_time(0, 0), description="Daily summary time (UTC).")
    heartbeat_timeout_s: float = Field(
        20.0, ge=1, le=3600, description="No status event for this long: the node is down."
    )
    run_ids: tuple[str, ...] = Field((), description="Nodes to follow (empty: every node).")

    @field_validator("run_ids")
    @classmethod
    def _runs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for run_id in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
                raise ValueError(f"run id {run_id!r} is invalid: letters, digits, . _ - only")
        return value

    @model_validator(mode="after")
    def _unique_hooks(self) -> NotificationsConfig:
        names = [w.name for w in self.webhooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"webhook name {dupes[0]!r} is used twice")
        return self


#: the secret fields of each section (never read from a config file)
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "telegram": ("token",),
    "slack": ("url",),
    "discord": ("url",),
    "email": ("password",),
    "webhooks": ("url", "hmac_secret"),
}


def config_errors(exc: ValidationError) -> list[str]:
    """One line per error: its path, what is wrong, and the value unless it is secret."""
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in ("notifications", *err["loc"]))
        secret = any(str(p) in ("token", "url", "password", "hmac_secret") for p in err["loc"])
        value = "" if secret or "input" not in err else f" (got {err['input']!r})"
        if isinstance(err.get("input"), Mapping):
            value = ""
        out.append(f"{path}: {err['msg']}{value}")
    return out


def _read_secrets_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{path}:{number}: expected NAME=value")
        out[name.strip()] = value.strip().strip('"').strip("'")
    return out


def _env_secret(section: str, field: str, index_name: str | None = None) -> str:
    if index_name is None:
        return f"{ENV_PREFIX}{section.upper()}__{field.upper()}"
    name = re.sub(r"[^A-Z0-9]", "_", index_name.upper())
    return f"{ENV_PREFIX}WEBHOOKS__{name}__{field.upper()}"


def load_notifications(
    data: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    secrets_file: Path | None = None,
) -> NotificationsConfig:
    """The config in `data` (a config file's `notifications` section) with its secrets
    from `env` (default `os.environ`) and `secrets_file`; a ValueError lists each bad
    value with its path (a secret in `data` is one)."""
    raw: dict[str, Any] = dict(data or {})
    env = os.environ if env is None else env
    found = dict(env)
    if secrets_file is not None:
        found.update(_read_secrets_file(Path(secrets_file)))
    problems: list[str] = []
    for section, fields in SECRET_FIELDS.items():
        value = raw.get(section)
        if section == "webhooks":
            if isinstance(value, list):
                raw[section] = [
                    _fill(h, section, fields, found, problems, str(h.get("name", "")))
                    if isinstance(h, dict) else h
                    for h in value
                ]  # fmt: skip
        elif isinstance(value, dict):
            raw[section] = _fill(value, section, fields, found, problems, None)
    if problems:
        raise ValueError("\n".join(problems))
    try:
        return NotificationsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("\n".join(config_errors(exc))) from None


def _fill(
    entry: Mapping[str, Any],
    section: str,
    fields: tuple[str, ...],
    found: Mapping[str, str],
    problems: list[str],
    hook: str | None,
) -> dict[str, Any]:
    """`entry` with its secrets from `found`; a secret written in it is a problem."""
    out = dict(entry)
    for field in fields:
        var = _env_secret(section, field, hook)
        if field in out:
            problems.append(
                f"notifications.{section}.{field}: a secret is not read from the config "
                f"file: set {var} in the environment or the secrets file"
            )
        elif found.get(var):
            out[field] = found[var]
    return out


def read_notifications(
    path: Path | None, *, secrets_file: Path | None = None, env: Mapping[str, str] | None = None
) -> NotificationsConfig:
    """The config of a YAML file (its `notifications` section, or the whole file), or of
    the environment alone when `path` is None (see `load_notifications`)."""
    import yaml

    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ValueError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {str(path)!r} is invalid: expected a mapping")
        data = data.get("notifications", data)
        if not isinstance(data, dict):
            raise ValueError(f"notifications in {str(path)!r} is invalid: expected a mapping")
    return load_notifications(data, env=env, secrets_file=secrets_file)
