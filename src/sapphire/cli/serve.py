"""`sapphire serve`: the REST and WebSocket API (uvicorn), on 127.0.0.1:8000 by default."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from sapphire.cli.common import console, err_console, fail, setup_logging

__all__ = ["serve_command"]

HostOpt = Annotated[
    str | None,
    typer.Option(
        help="Address to bind (default SAPPHIRE_HOST, else 127.0.0.1). Anything but a "
        "loopback address makes the API reachable from the network."
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="TCP port (default SAPPHIRE_PORT, else 8000)."),
]


def is_loopback(host: str) -> bool:
    """True if binding `host` keeps the service on this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_command(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the Sapphire API service until Ctrl-C.

    Settings come from the configuration (sapphire.yaml, SAPPHIRE_* variables, these
    flags: docs/operations.md); it refuses to start without a
    signing secret (SAPPHIRE_API_SECRET, SAPPHIRE_API_SECRET_FILE, or the file `sapphire
    users create-admin` makes)."""
    import uvicorn

    from sapphire.api.app import create_app
    from sapphire.ops.config_sources import load_config

    flags = {f"service.{k}": v for k, v in (("host", host), ("port", port)) if v is not None}
    try:
        config = load_config(flags=flags).config
        settings = config.service_settings()
        app = create_app(settings, notifications=config.notifications)
    except ValueError as exc:  # a bad setting, no signing secret, a bad database URL
        raise fail(str(exc)) from None
    setup_logging(config)
    bound = f"[{settings.host}]" if ":" in settings.host else settings.host
    if not is_loopback(settings.host):
        err_console.print(
            f"[bold yellow]warning:[/] binding {settings.host}: the API is reachable from "
            "the network. Serve it behind a TLS reverse proxy (SAPPHIRE_TRUSTED_PROXIES) "
            "and a firewall.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"Sapphire API on http://{bound}:{settings.port}/api/v1 "
        f"(OpenAPI at /openapi.json{', docs at /docs' if settings.docs else ''})",
        highlight=False,
        soft_wrap=True,
    )
    console.print("Ctrl-C stops it", highlight=False)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=False,  # X-Forwarded-* only from SAPPHIRE_TRUSTED_PROXIES (the app's)
        server_header=False,
        ws_max_size=settings.max_body_bytes,
        log_level="info",
        log_config=None,  # uvicorn's lines go through configure_logging's handlers
    )
