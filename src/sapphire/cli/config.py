"""`sapphire config validate|show`: check the configuration, and see its effective values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, err_console, print_json
from sapphire.cli.options import JsonOpt
from sapphire.ops.config_report import effective_values
from sapphire.ops.config_sources import ConfigError, LoadedConfig, load_config

__all__ = ["config_app"]

config_app = typer.Typer(
    help="The configuration: validate a file, show the effective values.", no_args_is_help=True
)

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The config file (default $SAPPHIRE_CONFIG, else $SAPPHIRE_HOME/sapphire.yaml).",
    ),
]


def _load(file: Path | None) -> LoadedConfig:
    """The configuration, or exit 1 listing every problem."""
    try:
        return load_config(file)
    except ConfigError as exc:
        where = f" in {file}" if file is not None else ""
        err_console.print(
            f"[bold red]invalid[/]{where}: {len(exc.problems)} problem(s)",
            highlight=False,
            soft_wrap=True,
        )
        for problem in exc.problems:
            err_console.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


@config_app.command("validate")
def validate_command(
    file: Annotated[
        Path | None, typer.Argument(help="The file (default: the one `config show` reads).")
    ] = None,
) -> None:
    """Check the configuration: every problem with its path, value and what is allowed."""
    loaded = _load(file)
    where = str(loaded.file) if loaded.file is not None else "no config file"
    console.print(f"valid: {where} (profile {loaded.config.profile})", highlight=False)


@config_app.command("show")
def show_command(file: FileOpt = None, json_out: JsonOpt = False) -> None:
    """The effective values and where each came from, secrets masked."""
    loaded = _load(file)
    values = effective_values(loaded)
    if json_out:
        print_json(
            {
                "file": str(loaded.file) if loaded.file is not None else None,
                "values": {e.path: {"value": e.value, "source": e.source} for e in values},
            }
        )
        return
    title = f"Configuration ({loaded.file or 'no config file'})"
    table = Table(title=title, title_justify="left")
    for column in ("key", "value", "source"):
        table.add_column(column, overflow="fold")
    for entry in values:
        shown = entry.value if isinstance(entry.value, str) else json.dumps(entry.value)
        table.add_row(entry.path, shown, entry.source)
    console.print(table)
