"""`sapphire check lookahead`: find strategies whose signals peek at future bars."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.backtest import (
    SAMPLE,
    _data_source,
    _fail,
    _json_safe,
    console,
    parse_params,
    wide_console,
)
from sapphire.cli.options import (
    DataOpt,
    EndOpt,
    JsonOpt,
    ParamOpt,
    ResampleOpt,
    StartOpt,
    TimeframeOpt,
    VenueOpt,
)

check_app = typer.Typer(
    help="Check a strategy for mistakes such as look-ahead.",
    no_args_is_help=True,
    add_completion=False,
)

SHOWN = 20


@check_app.command("lookahead")
def lookahead_command(
    strategy: Annotated[str, typer.Argument(help="Built-in name, module:Class or file.py:Class.")],
    data: DataOpt = SAMPLE,
    param: ParamOpt = None,
    checkpoints: Annotated[
        int, typer.Option(help="How many truncated copies of the data to recompute on.")
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random cut points.")] = 0,
    start: StartOpt = None,
    end: EndOpt = None,
    venue: VenueOpt = None,
    timeframe: TimeframeOpt = None,
    resample: ResampleOpt = None,
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
            _data_source(data),
            params=parse_params(param),
            checkpoints=checkpoints,
            seed=seed,
            start=start,
            end=end,
            venue=venue,
            timeframe=timeframe,
            resample=resample,
        )
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(_json_safe(report.to_json())))
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
