"""What every command module shares: consoles, the error exit, `--param` parsing, JSON
output and the metrics table (command modules import this, never each other)."""

from __future__ import annotations

import math
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sapphire.encoding import to_json

__all__ = [
    "ML_STAGES",
    "console",
    "err_console",
    "fail",
    "format_number",
    "metrics_table",
    "parse_params",
    "print_json",
    "wide_console",
]

console = Console()
# Wide enough for the side-by-side demo table when stdout is not a terminal.
wide_console = Console(width=max(console.width, 120))
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; the exit (code 2) for the caller to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def print_json(value: Any, *, indent: int | None = None) -> None:
    """Print `value` as one JSON document (`sapphire.encoding`: NaN as null)."""
    print(to_json(value, indent=indent))


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Turn `--param k=v` options into a dict (values are coerced by the strategy)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r} is not of the form name=value")
        out[key.strip()] = value.strip()
    return out


def metrics_table(columns: dict[str, dict[str, float]], title: str) -> Table:
    """A Rich table with one metric per row and one column per run."""
    from sapphire.backtest.metrics import METRIC_KEYS, format_metric

    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for key in METRIC_KEYS:
        table.add_row(key, *(format_metric(key, m.get(key, math.nan)) for m in columns.values()))
    return table


#: the ML training stages as progress bars name them
ML_STAGES = {
    "cv": "cross-validation splits",
    "importance": "permutation importance",
    "fit": "final fit",
}


def format_number(value: Any) -> str:
    """A number in 3 significant digits, or a dash for anything else."""
    return "—" if not isinstance(value, int | float) else f"{value:.3g}"


def serve_metrics(session: Any, mode: str, port: int | None, host: str) -> None:
    """Serve a node process's Prometheus metrics when `--metrics-port` is given."""
    if port is None:
        return
    from sapphire.ops.metrics import serve_node_metrics

    try:
        serve_node_metrics(session, mode, port, host)
    except OSError as exc:
        raise fail(f"--metrics-port {port}: cannot serve metrics on {host}: {exc}") from None


def surveil_node(session: Any) -> None:
    """Surveil a paper or live node process's orders as it trades (alerts become its
    risk events: stored, published, notified)."""
    from sapphire.compliance.surveillance.monitor import watch_node

    watch_node(session.node, session.run_id)


def node_services(session: Any, mode: str, port: int | None, host: str) -> None:
    """What a paper or live node process runs beside its loop: its logs (every order
    event as a JSON line in the run's `run.log`, warnings on the terminal), its metrics
    and probes (`--metrics-port`) and the surveillance of its orders."""
    from sapphire.ops.config_sources import load_config
    from sapphire.ops.logging import configure_run_logging

    try:
        logs = load_config().config.logging
    except ValueError as exc:  # the run has started: it keeps the default logs
        err_console.print(f"warning: logging configuration ignored: {exc}", highlight=False)
        logs = None
    configure_run_logging(session.run_dir, logs)
    serve_metrics(session, mode, port, host)
    surveil_node(session)


def setup_logging(config: Any = None) -> None:
    """A long-running process's logs (serve, paper, live) from the configuration's
    `logging` section: structlog, readable on a terminal, JSON lines otherwise and in the
    file, correlation ids; a bad configuration is a one-line error (exit 2)."""
    from sapphire.ops.config_sources import load_config
    from sapphire.ops.logging import configure_logging

    if config is None:
        try:
            config = load_config().config
        except ValueError as exc:
            raise fail(str(exc)) from None
    logs = config.logging
    configure_logging(logs.level, logs.format, logs.file, logs.rotation, logs.retention)
