"""What `sapphire init` does besides asking: check a database and an exchange key for real,
store the key in the encrypted key store, and write a validated config file (mode 0600)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sapphire.ops.config import DatabaseConfig
from sapphire.ops.config_sources import ConfigError, LoadedConfig, load_config

__all__ = ["check_database", "check_exchange", "store_key", "write_config", "write_secrets"]


def _safe(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def check_database(url: str) -> None:
    """Connect to `url` and run `SELECT 1`; a ValueError naming the URL (password hidden)
    and why it failed."""
    import sqlalchemy as sa

    try:
        DatabaseConfig.model_validate({"url": url})  # the scheme first: a clear message
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    args: dict[str, Any] = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    try:
        engine = sa.create_engine(url, connect_args=args)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any driver's failure is the user's answer to fix
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ValueError(f"cannot connect to {_safe(url)}: {reason}") from None


def check_exchange(
    env: str, api_key: str, api_secret: str, *, url: str | None = None, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Ask the exchange about this key (`/v5/user/query-api`) and refuse one that can
    withdraw or cannot trade; the key's description. A ValueError saying why it failed."""
    from sapphire.venues.bybit import BybitConnection, BybitEnvironment, check_permissions

    environment = BybitEnvironment(env)
    connection = BybitConnection(
        environment,
        url=url if environment is BybitEnvironment.LOCAL else None,
        confirm_mainnet=environment is BybitEnvironment.MAINNET,
        timeout_ms=int(timeout_s * 1000),
    )
    environ = {
        f"{environment.prefix}_API_KEY": api_key,
        f"{environment.prefix}_API_SECRET": api_secret,
    }

    async def ask() -> dict[str, Any]:
        client = connection.client(environ)
        try:
            answer = await client.private_get_v5_user_query_api()
        finally:
            await client.close()
        result = answer.get("result") if isinstance(answer, Mapping) else None
        if not isinstance(result, Mapping):
            raise ValueError(f"the exchange answered {str(answer)[:120]!r}")
        check_permissions(result)
        return dict(result)

    try:
        return asyncio.run(ask())
    except ValueError:
        raise
    except Exception as exc:  # ccxt's errors: authentication, network, timeouts
        where = url or f"Bybit {env}"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{where} refused the key or did not answer: {message[:200]}") from None


def store_key(
    home: Path, database_url: str, name: str, env: str, api_key: str, api_secret: str
) -> str:
    """Store the key in the encrypted key store (replacing one of that name), creating the
    master key when there is none; the key's hint (its last four characters)."""
    from sapphire.store import Store
    from sapphire.store.keyvault import KeyVault, load_master_key

    master = load_master_key(home, os.environ, create=True)
    with Store(database_url) as store:
        vault = KeyVault(store, master)
        if any(info.name == name for info in vault.list()):
            info = vault.replace(name, api_key, api_secret, exchange="bybit", env=env)
        else:
            info = vault.add(name, "bybit", env, api_key, api_secret)
    return info.key_hint


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 (through a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(scratch, 0o600)
    os.replace(scratch, path)


def write_secrets(path: Path, values: Mapping[str, str]) -> None:
    """A secrets file of `NAME=value` lines (mode 0600)."""
    for name, value in values.items():
        if "\n" in value or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ValueError(f"secret {name!r} cannot be written as one NAME=value line")
    _write_private(path, "".join(f"{k}={v}\n" for k, v in values.items()))


def write_config(path: Path, data: Mapping[str, Any]) -> LoadedConfig:
    """Validate `data` as a config file (with its secrets file, without the environment)
    and write it to `path` as YAML, mode 0600; a ConfigError, nothing written, if invalid."""
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
    scratch = path.with_name(f".{path.stem}.check{path.suffix or '.yaml'}")
    _write_private(scratch, text)
    try:
        loaded = load_config(scratch, environ={})
    except ConfigError:
        scratch.unlink()
        raise
    os.replace(scratch, path)
    return LoadedConfig(loaded.config, path, loaded.sources, loaded.variables)
