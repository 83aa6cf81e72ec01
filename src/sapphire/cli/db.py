"""`sapphire db backup`, `db restore` and `db verify`: the whole store (ledger, model
registry, studies, service tables) and the model files, for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sapphire.cli.common import console, fail, print_json
from sapphire.cli.options import JsonOpt
from sapphire.ops.backup import BackupError, backup, restore, verify

__all__ = ["db_app"]

db_app = typer.Typer(help="Back up, restore and verify the database.", no_args_is_help=True)

UrlOpt = Annotated[
    str | None,
    typer.Option(help="Database URL (default: SAPPHIRE_DATABASE_URL, else the SQLite file)."),
]


@db_app.command("backup")
def backup_command(
    url: UrlOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Archive to write (default: $SAPPHIRE_HOME/backups/).")
    ] = None,
    models: Annotated[bool, typer.Option(help="Include $SAPPHIRE_HOME/models.")] = True,
    check: Annotated[
        bool, typer.Option(help="Verify the backup by restoring it into a scratch database.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Write a backup archive, then verify it (exit 1 if it does not restore exactly)."""
    try:
        path, manifest = backup(url, out, include_models=models)
        report = verify(path, url) if check else None
    except (BackupError, ValueError) as exc:
        raise fail(str(exc)) from None
    rows = sum(t.rows for t in manifest.tables.values())
    problems = list(report.problems) if report is not None else []
    if json_out:
        print_json(
            {
                "path": str(path), "dialect": manifest.dialect, "revision": manifest.revision,
                "tables": len(manifest.tables), "rows": rows, "models": len(manifest.models),
                "verified": report is not None and report.ok, "problems": problems,
            }
        )  # fmt: skip
    else:
        console.print(
            f"backup {path}: {manifest.dialect} at revision {manifest.revision}, "
            f"{len(manifest.tables)} tables, {rows} rows, {len(manifest.models)} model files",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        if report is not None:
            console.print("verified" if report.ok else "VERIFY FAILED", highlight=False)
        for problem in problems:
            console.print(f"  {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(code=1)


@db_app.command("restore")
def restore_command(
    file: Annotated[Path, typer.Argument(help="A backup archive from `sapphire db backup`.")],
    url: UrlOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace a database that holds data (and model files).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup; a newer one is refused, an older one is upgraded."""
    try:
        manifest = restore(file, url, replace=yes)
    except (BackupError, ValueError) as exc:
        raise fail(str(exc)) from None
    rows = sum(t.rows for t in manifest.tables.values())
    if json_out:
        print_json({"path": str(file), "revision": manifest.revision, "rows": rows})
    else:
        console.print(
            f"restored {file}: {rows} rows from revision {manifest.revision}, "
            f"{len(manifest.models)} model files",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


@db_app.command("verify")
def verify_command(
    file: Annotated[Path, typer.Argument(help="A backup archive.")],
    url: UrlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore into a scratch database and compare every table and model file (exit 1 on a
    difference). A PostgreSQL backup needs a PostgreSQL server (`--url`) for its scratch
    schema."""
    try:
        report = verify(file, url)
    except (BackupError, ValueError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        print_json({"ok": report.ok, "problems": list(report.problems)})
    else:
        console.print("verified" if report.ok else "VERIFY FAILED", highlight=False)
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(code=1)
