"""`sapphire check lookahead`: find strategies whose signals peek at future bars."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, parse_params, print_json, wide_console
from sapphire.cli.options import DataOpt, JsonOpt, ParamOpt, run_options
from sapphire.engine.config import READ_FIELDS, RunConfig

check_app = typer.Typer(
    help="Check a strategy for mistakes such as look-ahead.",
    no_args_is_help=True,
    add_completion=False,
)

SHOWN = 20


@check_app.command("lookahead")
@run_options(keep=("start", "end", "venue", "timeframe", "resample", *READ_FIELDS))
def lookahead_command(
    config: RunConfig,
    strategy: Annotated[str, typer.Argument(help="Built-in name, module:Class or file.py:Class.")],
    data: DataOpt = "sample",
    param: ParamOpt = None,
    checkpoints: Annotated[
        int, typer.Option(help="How many truncated copies of the data to recompute on.")
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random cut points.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Recompute STRATEGY's signals on truncated data; exit 1 if any past signal changes.

    A signal of bar t must not depend on bars after t: the strategy is rerun on the
    first k bars for several k and every signal array is compared with the run on
    all bars. Exit code 0: clean; 1: look-ahead found; 2: bad input.
    """
    from sapphire.check import check_lookahead
    from sapphire.data import DataError

    try:
        report = check_lookahead(
            strategy,
            data,
            params=parse_params(param),
            checkpoints=checkpoints,
            seed=seed,
            start=config.start,
            end=config.end,
            venue=config.venue,
            timeframe=config.timeframe,
            resample=config.resample,
            **{name: getattr(config, name) for name in READ_FIELDS},
        )
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(report.to_json())
    elif report.clean:
        console.print(f"[green]ok[/] {report.summary()}", soft_wrap=True, highlight=False)
    else:
        params = f" {report.params}" if report.params else ""
        table = Table(
            title=f"Look-ahead in {report.strategy}{params}: first offending bars",
            title_justify="left",
        )
        for column in ("bar", "time (UTC)", "signal", "all bars", "truncated", "cut at", "ahead"):
            left = column in ("time (UTC)", "signal")
            table.add_column(column, justify="left" if left else "right", no_wrap=True)
        for v in report.violations[:SHOWN]:
            table.add_row(
                str(v.bar),
                v.time[:19].replace("T", " "),
                v.array,
                str(v.full),
                str(v.truncated),
                str(v.cut),
                str(v.ahead),
            )
        wide_console.print(table)
        console.print(f"[bold red]error:[/] {report.summary()}", soft_wrap=True, highlight=False)
        console.print(
            "A signal changed when later bars were removed: it uses data from the future "
            "(e.g. shift(-1), np.roll(x, -1), a centred window, or a whole-series statistic).",
            soft_wrap=True,
        )
    if not report.clean:
        raise typer.Exit(code=1)
