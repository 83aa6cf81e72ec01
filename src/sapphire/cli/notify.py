"""`sapphire notify`: send a test message on a channel; run the notifier and watchdog."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sapphire.cli.common import console, err_console, fail, print_json

if TYPE_CHECKING:
    from sapphire.ops.notify.config import NotificationsConfig

__all__ = ["notify_app"]

notify_app = typer.Typer(
    help="Notifications (Telegram, Slack, Discord, webhooks, email) and the node watchdog.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c",
        help="YAML file with a `notifications` section (secrets come from "
        "SAPPHIRE_NOTIFICATIONS__... variables or --secrets-file, never from this file).",
    ),
]  # fmt: skip
SecretsOpt = Annotated[
    Path | None,
    typer.Option("--secrets-file", help="File of NAME=value lines holding the secrets."),
]


def _config(config: Path | None, secrets_file: Path | None) -> NotificationsConfig:
    from sapphire.ops.notify.config import read_notifications

    try:
        return read_notifications(config, secrets_file=secrets_file)
    except ValueError as exc:
        raise fail(str(exc)) from None


@notify_app.command("test")
def test_command(
    channel: Annotated[
        str, typer.Argument(help="telegram, slack, discord, email or a webhook's name.")
    ],
    config: ConfigOpt = None,
    secrets_file: SecretsOpt = None,
) -> None:
    """Send a test message on one channel now (exit 2 when it fails)."""
    from sapphire.ops.notify.channels import DeliveryError, send_test

    cfg = _config(config, secrets_file)
    try:
        console.print(send_test(cfg, channel), highlight=False)
    except (ValueError, DeliveryError) as exc:
        raise fail(str(exc)) from None


@notify_app.command("watch")
def watch_command(
    config: ConfigOpt = None,
    secrets_file: SecretsOpt = None,
    interval: Annotated[
        float, typer.Option(min=0.1, max=60.0, help="Seconds between two checks.")
    ] = 1.0,
) -> None:
    """Follow every node: send its messages and alert when one stops (until Ctrl-C)."""
    from sapphire.config import sapphire_home
    from sapphire.engine.session import REDIS_ENV
    from sapphire.engine.stream import open_stream
    from sapphire.ops.notify.service import watch

    cfg = _config(config, secrets_file)
    home = sapphire_home()
    try:
        stream = open_stream(os.environ.get(REDIS_ENV), home)
    except ValueError as exc:
        raise fail(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err_console.print(
        f"watching the nodes of {home} on {stream.describe()} (Ctrl-C to stop)", highlight=False
    )
    try:
        stats = watch(cfg, stream, home, stop, interval_s=interval)
    finally:
        stream.close()
    print_json(stats)
