"""`sapphire keys add|list|remove`: exchange API keys, encrypted at rest in the store.

The secret is read from a hidden prompt, or from standard input when it is not a
terminal (two lines: the API key, then the secret), never from the command line (which
other users see in `ps` and the shell keeps in its history). The master key is
`$SAPPHIRE_MASTER_KEY`, `$SAPPHIRE_MASTER_KEY_FILE` or `$SAPPHIRE_HOME/secrets/master.key`,
which `keys add` creates on first use. Adding, replacing and removing are audited.
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, print_json
from sapphire.cli.options import JsonOpt
from sapphire.compliance.audit import AuditLog
from sapphire.config import sapphire_home
from sapphire.store import Store
from sapphire.store.keyvault import (
    ENVIRONMENTS,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    KeyVault,
    load_master_key,
    master_key_path,
    remove_key,
    stored_keys,
)

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Exchange API keys, encrypted at rest (AES-256-GCM under the master key).",
    no_args_is_help=True,
)


def _operator() -> str:
    """The audit actor of a command: `cli:<OS user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return f"cli:uid-{os.getuid()}"


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_credentials() -> tuple[str, str]:
    """(API key, secret) from the prompt, or from two lines of a piped standard input."""
    if sys.stdin.isatty():
        key = typer.prompt("API key").strip()
        secret = typer.prompt("API secret", hide_input=True).strip()
        return key, secret
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if len(lines) != 2:
        raise ValueError(
            f"standard input must hold two lines, the API key then the secret; it held "
            f"{len(lines)} non-empty lines"
        )
    return lines[0], lines[1]


@keys_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. bybit-testnet.")],
    env: Annotated[str, typer.Option(help=f"The environment: {', '.join(ENVIRONMENTS)}.")],
    exchange: Annotated[str, typer.Option(help="The ccxt exchange id.")] = "bybit",
    replace: Annotated[bool, typer.Option(help="Replace a stored key of that name.")] = False,
) -> None:
    """Store an exchange API key and secret (prompted for, or read from stdin)."""
    home = sapphire_home()
    creating = (
        not os.environ.get(MASTER_KEY_ENV)
        and not os.environ.get(MASTER_KEY_FILE_ENV)
        and not master_key_path(home).exists()
    )
    try:
        api_key, api_secret = _read_credentials()
        master = load_master_key(home, os.environ, create=True)
        with Store() as store, store.atomic():  # the key and its audit record, or neither
            vault = KeyVault(store, master)
            if replace:
                info = vault.replace(name, api_key, api_secret, exchange=exchange, env=env)
            else:
                info = vault.add(name, exchange, env, api_key, api_secret)
            AuditLog(store).append(
                _operator(), "keys.replace" if replace else "keys.add", f"name={info.name}",
                {"exchange": info.exchange, "env": info.env, "key_hint": info.key_hint},
            )  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    if creating:
        console.print(
            f"Created the master key {master_key_path(home)} (mode 0600): back it up, the "
            "stored keys cannot be decrypted without it.",
            highlight=False,
        )
    verb = "Replaced" if replace else "Stored"
    console.print(
        f"{verb} exchange key {info.name!r}: {info.exchange} {info.env}, API key "
        f"{info.key_hint}, encrypted.",
        highlight=False,
    )


@keys_app.command("list")
def list_command(json_out: JsonOpt = False) -> None:
    """The stored keys, masked (no secret is ever shown)."""
    try:
        with Store() as store:
            infos = stored_keys(store)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out:
        print_json(
            [
                {
                    "name": i.name, "exchange": i.exchange, "env": i.env,
                    "key_hint": i.key_hint, "created": _iso(i.ts_created),
                    "updated": _iso(i.ts_updated),
                }
                for i in infos
            ]
        )  # fmt: skip
        return
    if not infos:
        console.print("No exchange keys stored: add one with `sapphire keys add NAME --env ...`.")
        return
    table = Table(title="Exchange keys", title_justify="left")
    for column in ("name", "exchange", "env", "API key", "created", "updated"):
        table.add_column(column)
    for i in infos:
        table.add_row(i.name, i.exchange, i.env, i.key_hint, _iso(i.ts_created), _iso(i.ts_updated))
    console.print(table)


@keys_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="The key to remove.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stored key."""
    if not yes and not typer.confirm(f"Remove exchange key {name!r}?"):
        raise fail("not removed")
    try:
        with Store() as store, store.atomic():
            info = remove_key(store, name)
            AuditLog(store).append(
                _operator(), "keys.remove", f"name={info.name}",
                {"exchange": info.exchange, "env": info.env, "key_hint": info.key_hint},
            )  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"Removed exchange key {info.name!r}.", highlight=False)
