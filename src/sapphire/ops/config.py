"""`SapphireConfig`: the one typed configuration of Sapphire, and its profiles.

Sections: `home` (the data folder), `database`, `redis`, `service` (the API service's
`ServiceSettings`), `exchange`, `risk`, `notifications` (`sapphire.ops.notify`'s
`NotificationsConfig`) and `logging`. Every model is frozen and refuses unknown keys.

Values come, highest precedence first, from CLI flags, the environment (`SAPPHIRE_…`,
nested with `__`: `SAPPHIRE_SERVICE__PORT`; the service's flat names such as
`SAPPHIRE_PORT` still work), the secrets file (`NAME=value` lines), the config file
(YAML or TOML) and the profile's defaults; `load_config` (in
`sapphire.ops.config_sources`) reads them.

Profiles (`profile:` or `SAPPHIRE_PROFILE`) set defaults and add rules:

- `development`: the local exchange, readable DEBUG logs.
- `testnet`: Bybit testnet, INFO logs; `exchange.env: mainnet` is refused.
- `mainnet`: Bybit mainnet, JSON logs, the conservative risk profile, no API docs; it
  requires `exchange.confirm_mainnet: true` and `exchange.key`, refuses the aggressive
  risk profile, and refuses a `service.host` off the loopback without
  `service.trusted_proxies` (a public API must sit behind a TLS reverse proxy).

Under any profile, `exchange.env: mainnet` needs `exchange.confirm_mainnet: true`, and
`exchange.url` is given for (and only for) `exchange.env: local`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sapphire.ops.config_service import ServiceSettings
from sapphire.ops.logging import parse_rotation
from sapphire.ops.notify.config import NotificationsConfig
from sapphire.risk.profiles import PROFILES

__all__ = [
    "ENVIRONMENTS",
    "LEVELS",
    "PROFILE_DEFAULTS",
    "PROFILE_NAMES",
    "DatabaseConfig",
    "ExchangeConfig",
    "LoggingConfig",
    "RedisConfig",
    "RiskConfig",
    "SapphireConfig",
    "is_loopback",
]

Profile = Literal["development", "testnet", "mainnet"]
PROFILE_NAMES: tuple[str, ...] = ("development", "testnet", "mainnet")
Environment = Literal["testnet", "demo", "mainnet", "local"]
ENVIRONMENTS: tuple[str, ...] = ("testnet", "demo", "mainnet", "local")
Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")

#: each profile's defaults (below the file, the environment and the flags)
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "development": {
        "exchange": {"env": "local", "url": "http://127.0.0.1:8787"},
        "logging": {"level": "DEBUG", "format": "auto"},
        "risk": {"profile": "conservative"},
    },
    "testnet": {
        "exchange": {"env": "testnet"},
        "logging": {"level": "INFO", "format": "auto"},
        "risk": {"profile": "conservative"},
    },
    "mainnet": {
        "exchange": {"env": "mainnet"},
        "logging": {"level": "INFO", "format": "json"},
        "risk": {"profile": "conservative"},
        "service": {"docs": False},
    },
}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def is_loopback(host: str) -> bool:
    """True if binding `host` keeps a server on this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def has_password(url: str) -> bool:
    """True if `url` carries a password (`scheme://user:password@host/...`)."""
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


class DatabaseConfig(_Section):
    """The store's database: a SQLite file in the data folder unless `url` says otherwise."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL (sqlite:///path or postgresql+psycopg://user@host/db); "
        "none: sqlite in the data folder. A URL with a password is a secret: environment "
        "or `url_file` only.",
    )
    url_file: Path | None = Field(
        None, description="A file holding the URL (a secret: e.g. a mounted Docker secret)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _DB_SCHEMES:
            raise ValueError(
                f"database URL must start with one of {', '.join(s + '://' for s in _DB_SCHEMES)}"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseConfig:
        if self.url is not None and self.url_file is not None:
            raise ValueError("give database.url or database.url_file, not both")
        return self

    def resolved_url(self) -> str | None:
        """The URL: `url`, else the first line of `url_file`, else None (the SQLite file)."""
        if self.url_file is None:
            return self.url
        try:
            text = self.url_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"database.url_file {str(self.url_file)!r} cannot be read: {exc.strerror}"
            ) from None
        return type(self).model_validate({"url": text}).url


class RedisConfig(_Section):
    """Redis for the event stream and the service's rate limits (none: in process)."""

    url: str | None = Field(
        None, description="redis://host:6379/0, rediss://... or unix://...; none: no Redis."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if urlsplit(value).scheme not in _REDIS_SCHEMES:
            raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
        return value


class ExchangeConfig(_Section):
    """The exchange a live node trades on, and the name of its key in the key store."""

    venue: Literal["bybit"] = Field("bybit", description="The exchange.")
    env: Environment = Field(
        "testnet", description="testnet, demo, mainnet (real money) or local (a local server)."
    )
    url: str | None = Field(None, description="The local exchange's http(s) URL (env: local).")
    key: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="The name of the API key in the encrypted key store (`sapphire keys add`).",
    )
    confirm_mainnet: bool = Field(
        False, description="Must be true to trade on mainnet: real money."
    )

    @model_validator(mode="after")
    def _rules(self) -> ExchangeConfig:
        if self.env == "local":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("exchange.env local needs exchange.url, an http(s):// URL")
        elif self.url is not None:
            raise ValueError(f"exchange.url is only for exchange.env local, not {self.env!r}")
        if self.env == "mainnet" and not self.confirm_mainnet:
            raise ValueError(
                "exchange.env mainnet trades real money: set exchange.confirm_mainnet: true"
            )
        return self


class RiskConfig(_Section):
    """The risk profile every node starts with (`sapphire.risk.profiles`)."""

    profile: str = Field(
        "conservative",
        description=f"A built-in profile ({', '.join(sorted(PROFILES))}) or a .yaml file.",
    )

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        if value in PROFILES:
            return value
        if value.endswith((".yaml", ".yml")):
            from sapphire.risk.profiles import profile

            profile(value)  # reads and checks the file (a ValueError naming what is wrong)
            return value
        raise ValueError(
            f"unknown risk profile; expected one of {', '.join(sorted(PROFILES))} or a .yaml file"
        )


class LoggingConfig(_Section):
    """Logs (`sapphire.ops.logging.configure_logging`)."""

    level: Level = Field("INFO", description="The lowest level logged.")
    format: Literal["json", "console", "auto"] = Field(
        "auto", description="json lines, readable console lines, or auto (console on a tty)."
    )
    file: Path | None = Field(None, description="Also write JSON lines to this file.")
    rotation: str | None = Field(
        "50MB", description="Rotate the file at a size (50MB) or a period (daily, 6h)."
    )
    retention: int = Field(7, ge=0, le=1000, description="Rotated files kept.")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("rotation")
    @classmethod
    def _rotation(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rotation(value)
        return value


def _default_service() -> ServiceSettings:
    return ServiceSettings.model_validate({})  # the defaults only: no environment read here


class SapphireConfig(BaseSettings):
    """Sapphire's configuration (see the module docstring); frozen once read."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    profile: Profile = Field("development", description="development, testnet or mainnet.")
    home: Path = Field(
        Path("~/.sapphire"), description="The data folder: catalog, database, models, reports."
    )
    secrets_file: Path | None = Field(
        None, description="A file of NAME=value lines read like environment variables."
    )
    database: DatabaseConfig = Field(default_factory=lambda: DatabaseConfig.model_validate({}))
    redis: RedisConfig = Field(default_factory=lambda: RedisConfig.model_validate({}))
    service: ServiceSettings = Field(default_factory=_default_service)
    exchange: ExchangeConfig = Field(default_factory=lambda: ExchangeConfig.model_validate({}))
    risk: RiskConfig = Field(default_factory=lambda: RiskConfig.model_validate({}))
    notifications: NotificationsConfig = Field(
        default_factory=lambda: NotificationsConfig.model_validate({"enabled": False})
    )
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig.model_validate({}))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The arguments, then the layers `load_config` prepared (env, secrets, file,
        profile defaults): see `sapphire.ops.config_sources`."""
        from sapphire.ops.config_sources import prepared_sources

        return (init_settings, *prepared_sources(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _service_from_sections(cls, data: Any) -> Any:
        """The service's home, database and Redis are the top-level sections' (one place)."""
        if not isinstance(data, dict):
            return data
        service = data.get("service")
        service = dict(service) if isinstance(service, dict) else {}
        for own in ("home", "database_url", "redis_url"):
            if own in service:
                where = {"home": "home", "database_url": "database.url", "redis_url": "redis.url"}
                raise ValueError(f"service.{own} is set by {where[own]}: set that instead")
        database, redis = data.get("database"), data.get("redis")
        if "home" in data:
            service["home"] = data["home"]
        if isinstance(database, dict) and database.get("url"):
            service["database_url"] = database["url"]
        if isinstance(redis, dict) and redis.get("url"):
            service["redis_url"] = redis["url"]
        return {**data, "service": service}

    @model_validator(mode="after")
    def _profile_rules(self) -> SapphireConfig:
        env = self.exchange.env
        if self.profile != "mainnet" and env == "mainnet":
            raise ValueError(
                f"profile {self.profile!r} refuses exchange.env mainnet: use profile: mainnet"
            )
        if self.profile == "mainnet":
            problems = []
            if env != "mainnet":
                problems.append(f"exchange.env must be mainnet, not {env!r}")
            if not self.exchange.key:
                problems.append("exchange.key must name a key in the key store")
            if self.risk.profile == "aggressive":
                problems.append("risk.profile aggressive is refused (use conservative or a file)")
            if not is_loopback(self.service.host) and not self.service.trusted_proxies:
                problems.append(
                    f"service.host {self.service.host!r} is off the loopback: set "
                    "service.trusted_proxies to the TLS reverse proxy in front of it"
                )
            if problems:
                raise ValueError("profile mainnet: " + "; ".join(problems))
        return self

    def data_folder(self) -> Path:
        """The data folder, `~` expanded (not created)."""
        return self.home.expanduser()

    def database_url(self) -> str:
        """The store's URL: `database.url`/`url_file`, else the SQLite file in `home`."""
        return self.database.resolved_url() or f"sqlite:///{self.data_folder() / 'sapphire.db'}"

    def service_settings(self) -> ServiceSettings:
        """The service's settings with the data folder and database URL resolved."""
        return self.service.replace(home=self.data_folder(), database_url=self.database_url())
