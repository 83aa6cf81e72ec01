"""`ServiceSettings`: how `sapphire serve` runs; the `service` section of the one
configuration (`sapphire.ops.config.SapphireConfig`), and readable on its own from the
`SAPPHIRE_*` environment variables (`from_environ`).

Every field reads the variable `SAPPHIRE_<FIELD>` (`SAPPHIRE_PORT`, `SAPPHIRE_REDIS_URL`,
`SAPPHIRE_CORS_ORIGINS`...). Lists are comma-separated (or a JSON list). Rate limits are
written in the `limits` notation: `"120/minute"`, `"10 per second"`, `"1000/hour;50/minute"`.
A bad value is refused with a `SettingsError` naming the variable and the value.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["ENV_PREFIX", "ServiceSettings", "SettingsError"]

ENV_PREFIX = "SAPPHIRE_"

_REDIS_SCHEMES = ("redis", "rediss", "unix")

#: the variables `from_environ` reads (None: os.environ)
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("sapphire_environ", default=None)


class SettingsError(ValueError):
    """A setting of the service has a bad value (the message names it)."""


def _split_list(value: Any) -> Any:
    """A comma-separated string (or a JSON list in a string) as a list of strings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{value!r} is not a JSON list: {exc.msg}") from None
    return [part.strip() for part in text.split(",") if part.strip()]


class ServiceSettings(BaseSettings):
    """The service's settings (env prefix `SAPPHIRE_`); frozen once read."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    host: str = Field(default="127.0.0.1", description="Address `sapphire serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port `sapphire serve` binds.")
    home: Path | None = Field(
        default=None, description="The data directory (SAPPHIRE_HOME; default ~/.sapphire)."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store (default: the SQLite file in home)."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the event stream and the rate limits (redis://host:6379/0); "
        "none: a local event stream and in-memory rate limits.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (scheme://host[:port]); "
        "'*' is refused.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=1024**3, description="Largest request body accepted."
    )
    rate_limit_user: str = Field(
        default="120/minute", description="Requests per authenticated user."
    )
    rate_limit_ip: str = Field(default="120/minute", description="Requests per client address.")
    rate_limit_login: str = Field(
        default="10/minute", description="Login attempts per client address and per username."
    )
    rate_limit_orders: str = Field(
        default="60/minute", description="Order submissions, changes and kills per caller."
    )
    rate_limit_prefix: str = Field(
        default="sapphire",
        min_length=1,
        max_length=64,
        description="Key prefix of the limits in Redis.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or networks) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none: the socket's peer address is the client.",
    )
    access_ttl_s: int = Field(default=900, ge=60, le=86400, description="Access token lifetime.")
    refresh_ttl_s: int = Field(
        default=14 * 86400, ge=3600, le=90 * 86400, description="Refresh token lifetime."
    )
    docs: bool = Field(default=True, description="Serve the interactive API docs at /docs.")

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        checked = []
        for origin in origins:
            if origin == "*" or "*" in origin:
                raise ValueError(
                    f"origin {origin!r} is refused: list each allowed origin "
                    "(e.g. https://dash.example.com), never a wildcard"
                )
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
                or parts.username
            ):
                raise ValueError(
                    f"origin {origin!r} is not an origin: expected scheme://host[:port], "
                    "e.g. https://dash.example.com"
                )
            checked.append(origin.rstrip("/"))
        return checked

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted proxy {proxy!r} is not an IP address or network "
                    "(e.g. 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return proxies

    @field_validator("rate_limit_user", "rate_limit_ip", "rate_limit_login", "rate_limit_orders")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            items = parse_many(value)
        except ValueError:
            items = []
        if not items:
            raise ValueError(
                f"rate limit {value!r} is not in the limits notation: expected e.g. "
                "'120/minute', '10 per second' or '1000/hour;50/minute'"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if urlsplit(value).scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"Redis URL {value!r} must start with redis://, rediss:// or unix:// "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        return value if value is not None and value.strip() else None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() or c in "/?#@" for c in value):
            raise ValueError(f"host {value!r} is not an address or host name")
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """The settings from `environ` (default `os.environ`): `SAPPHIRE_*` variables only;
        a SettingsError naming each bad variable and value."""
        mapping = os.environ if environ is None else environ
        token = _ENVIRON.set(mapping)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_describe(exc, mapping)) from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the variables (`from_environ`'s mapping or os.environ)."""
        environ = _ENVIRON.get()
        return init_settings, _MappingEnvSource(
            settings_cls, os.environ if environ is None else environ
        )

    def replace(self, **changes: Any) -> ServiceSettings:
        """These settings with `changes` (validated: a SettingsError naming each bad one)."""
        try:
            return type(self).model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            raise SettingsError(_describe(exc, {}, prefix="")) from None

    def resolved_home(self) -> Path:
        """The data directory (created): `home`, else ~/.sapphire."""
        home = (self.home or Path.home() / ".sapphire").expanduser()
        home.mkdir(parents=True, exist_ok=True)
        return home

    def resolved_database_url(self) -> str:
        """The store's URL: `database_url`, else `sqlite:///<home>/sapphire.db`."""
        return self.database_url or f"sqlite:///{self.resolved_home() / 'sapphire.db'}"


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping, not `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


def _describe(exc: ValidationError, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> str:
    """One line per bad setting: the variable (or field), its value and what is wrong."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        variable = f"{prefix}{field.upper()}" if prefix else field
        raw = next((v for k, v in environ.items() if k.upper() == variable), error.get("input"))
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{variable}={raw!r}: {message}")
    return "bad service settings: " + "; ".join(lines)
