"""`sapphire init`: a wizard that asks for the data folder, the database, the exchange and
its key, the risk profile and notifications, checks each answer for real (a database is
connected to, a key is tried on the exchange), and writes a validated `sapphire.yaml`
(mode 0600). A wrong answer is asked again with the reason."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from sapphire.cli.common import console, err_console
from sapphire.ops.config import ENVIRONMENTS, has_password
from sapphire.ops.config_setup import (
    check_database,
    check_exchange,
    store_key,
    write_config,
    write_secrets,
)
from sapphire.ops.config_sources import ConfigError
from sapphire.risk.profiles import PROFILES

__all__ = ["init_command"]

_PROFILE_OF_ENV = {"local": "development", "testnet": "testnet", "demo": "testnet",
                   "mainnet": "mainnet"}  # fmt: skip


def _ask(text: str, check: Any = None, **kwargs: Any) -> Any:
    """A prompt whose answer `check` turns into a value or refuses (click re-asks, saying why)."""

    if check is None:
        return click.prompt(text, **kwargs)

    def proc(value: str) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    return click.prompt(text, value_proc=proc, **kwargs)


def _folder(value: str) -> Path:
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{path} cannot be created: {exc.strerror}") from None
    return path


def _database(value: str) -> str:
    url = value.strip()
    if url.lower() in ("", "sqlite"):
        return ""
    check_database(url)
    return url


def _local_url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s):// URL")
    return url


def _chat_id(value: str) -> int | None:
    text = value.strip()
    if not text or text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a chat id (a number, e.g. 123456789)") from None


def init_command(
    env: Annotated[
        str | None, typer.Option(help=f"The exchange environment: {', '.join(ENVIRONMENTS)}.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The local exchange's URL (--env local).")] = None,
    home: Annotated[Path | None, typer.Option(help="The data folder (asked when absent).")] = None,
) -> None:
    """Set Sapphire up: answer a few questions, get a checked sapphire.yaml."""
    default_home = os.environ.get("SAPPHIRE_HOME") or str(Path.home() / ".sapphire")
    folder = _folder(str(home)) if home else _ask("Data folder", _folder, default=default_home)
    target = folder / "sapphire.yaml"
    if target.exists() and not click.confirm(f"{target} exists: overwrite it?", default=False):
        err_console.print(f"Left {target} as it was.", highlight=False)
        raise typer.Exit(code=1)
    secrets: dict[str, str] = {}
    data: dict[str, Any] = {"home": str(folder)}

    database = _ask("Database URL (empty: SQLite in the data folder)", _database, default="")
    if database:
        if has_password(database):
            secrets["SAPPHIRE_DATABASE__URL"] = database  # a password: never in the file
        else:
            data["database"] = {"url": database}
    database_url = database or f"sqlite:///{folder / 'sapphire.db'}"

    chosen_env = env or _ask(
        "Exchange environment", default="testnet", type=click.Choice(list(ENVIRONMENTS))
    )
    if chosen_env not in ENVIRONMENTS:
        raise typer.BadParameter(f"--env {chosen_env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    exchange: dict[str, Any] = {"venue": "bybit", "env": chosen_env}
    if chosen_env == "local":
        exchange["url"] = _local_url(url) if url else _ask(
            "Local exchange URL", _local_url, default="http://127.0.0.1:8787"
        )  # fmt: skip
    if chosen_env == "mainnet":
        if not click.confirm("Mainnet trades real money. Confirm?", default=False):
            raise typer.Exit(code=1)
        exchange["confirm_mainnet"] = True
    profile = _PROFILE_OF_ENV[chosen_env]
    if click.confirm("Store an exchange API key now?", default=True):
        name = _ask("Key name", default=f"bybit-{chosen_env}")
        while True:
            api_key = click.prompt("API key").strip()
            api_secret = click.prompt("API secret", hide_input=True).strip()
            try:
                info = check_exchange(chosen_env, api_key, api_secret, url=exchange.get("url"))
            except ValueError as exc:
                err_console.print(f"Error: {exc}", highlight=False, markup=False)
                continue
            break
        console.print(f"The exchange accepted the key ({info.get('note') or 'no note'}).")
        hint = store_key(folder, database_url, name, chosen_env, api_key, api_secret)
        console.print(f"Stored key {name!r} ({hint}) in the encrypted key store.")
        exchange["key"] = name
    data["profile"] = profile
    data["exchange"] = exchange

    risk_choices = ["conservative"] if profile == "mainnet" else sorted(PROFILES)
    risk = _ask("Risk profile", default="conservative", type=click.Choice(risk_choices))
    data["risk"] = {"profile": risk}

    chat = _ask("Telegram chat id for notifications (empty: none)", _chat_id, default="")
    if chat is not None:
        token = click.prompt("Telegram bot token", hide_input=True).strip()
        secrets["SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN"] = token
        data["notifications"] = {"enabled": True, "telegram": {"chat_ids": [chat]}}
    data["logging"] = {"level": "INFO", "format": "json" if profile == "mainnet" else "auto"}

    if secrets:
        secrets_path = folder / "secrets" / "sapphire.env"
        write_secrets(secrets_path, secrets)
        data["secrets_file"] = str(secrets_path)
        console.print(f"Wrote the secrets to {secrets_path} (mode 0600).", highlight=False)
    try:
        write_config(target, data)
    except ConfigError as exc:
        err_console.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(code=1) from None
    console.print(
        f"Wrote {target} (mode 0600, profile {profile}). Check it any time with "
        f"`sapphire config validate {target}`.",
        highlight=False,
        soft_wrap=True,
    )
