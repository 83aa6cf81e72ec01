"""`sapphire optimize report NAME --html out.html`: the HTML report of a stored study.

NAME is a study, or a walk-forward (its folds are studies `NAME-fold<k>`): then the
report covers the last fold's study and adds the stitched out-of-sample equity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err_console = Console(stderr=True)


def report_command(
    name: Annotated[str, typer.Argument(help="Study name, or a walk-forward's name.")],
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Write the report here (default: under reports/)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Study storage URL (default: $SAPPHIRE_HOME/sapphire.db)."),
    ] = None,
) -> None:
    """Write a study's HTML report: trials, importance, Pareto front, DSR/PBO, robustness."""
    from sapphire.optimize.report import study_report
    from sapphire.optimize.study import load_study
    from sapphire.optimize.walkforward import load_walkforward

    try:
        walkforward = load_walkforward(name)
        if walkforward is not None and walkforward.folds:
            url = storage or walkforward.config.get("storage")
            study = load_study(walkforward.folds[-1].study, url)
        else:
            study = load_study(name, storage)
        path = study_report(study, html, walkforward=walkforward)
    except (ValueError, FileNotFoundError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    print(path)
