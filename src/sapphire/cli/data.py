"""`sapphire data`: import bar files or download history into the local catalog, list and
inspect it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sapphire.engine.config import RunConfig, option_help

if TYPE_CHECKING:
    import pandas as pd

    from sapphire.data import CatalogEntry
    from sapphire.data.download import DownloadResult, FundingResult, Progress

data_app = typer.Typer(
    help="Import, download, list and inspect market data in the local catalog.",
    no_args_is_help=True,
)


def _help(name: str) -> str:
    """The help text of a data-reading option: the run option's (`RunConfig`), word for word."""
    return option_help(RunConfig, name)


def _fail(message: str) -> typer.Exit:
    """Print a one-line red error (no markup parsing, no wrapping) and return exit code 2."""
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    return typer.Exit(code=2)


@data_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV (.csv, .csv.gz), Parquet or Feather file.")],
    symbol: Annotated[str, typer.Option(help="Symbol, e.g. BTC/USDT:USDT.")],
    venue: Annotated[str, typer.Option(help="Venue the data came from, e.g. binance.")],
    timeframe: Annotated[
        str | None, typer.Option(help="Bar size, e.g. 1m; checked against the data.")
    ] = None,
    gaps: Annotated[str, typer.Option(help="Gaps in the data: keep, ffill or fail.")] = "keep",
    tick_size: Annotated[float | None, typer.Option(help="Price increment.")] = None,
    lot_size: Annotated[float | None, typer.Option(help="Quantity increment.")] = None,
    time_column: Annotated[str | None, typer.Option(help=_help("time_column"))] = None,
    columns: Annotated[str | None, typer.Option(help=_help("columns"))] = None,
    date_format: Annotated[str | None, typer.Option(help=_help("date_format"))] = None,
    delimiter: Annotated[str | None, typer.Option(help=_help("delimiter"))] = None,
) -> None:
    """Validate a bar file and add it to the catalog (merging with bars already there)."""
    from sapphire.data import Catalog, DataError, ReadOptions

    console = Console()  # per call: it reads the terminal width when the command runs

    try:
        read = ReadOptions(
            time_column=time_column, columns=columns, date_format=date_format, delimiter=delimiter
        )
        with console.status(f"Importing {file.name}"):
            entry = Catalog().import_file(
                file,
                symbol=symbol,
                venue=venue,
                timeframe=timeframe,
                gaps=gaps,
                tick_size=tick_size,
                lot_size=lot_size,
                read=read,
            )
    except (DataError, OSError) as exc:
        raise _fail(str(exc)) from None
    console.print(_entry_table(entry, title=f"Imported {entry.describe()}"))


@data_app.command("download")
def download_command(
    exchange: Annotated[str, typer.Option(help="ccxt exchange id, e.g. bybit or binance.")],
    symbol: Annotated[str, typer.Option(help="ccxt symbol, e.g. BTC/USDT:USDT.")],
    start: Annotated[str, typer.Option(help="First bar time (UTC), e.g. 2024-01-01.")],
    timeframe: Annotated[str, typer.Option(help="Bar size, e.g. 1m, 1h, 1d.")] = "1m",
    end: Annotated[
        str | None, typer.Option(help="End time (UTC, exclusive); default: now.")
    ] = None,
    funding: Annotated[
        bool, typer.Option("--funding", help="Download the funding-rate history too.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(help="Host that speaks the exchange's API, e.g. a local exchange."),
    ] = None,
) -> None:
    """Download bars (and funding rates) from a ccxt exchange; resumes where it stopped."""
    from rich.progress import BarColumn, TaskProgressColumn, TextColumn
    from rich.progress import Progress as ProgressBar

    from sapphire.data import DataError
    from sapphire.data.download import download_funding, download_ohlcv, open_exchange

    console = Console()
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rows]:,} rows"))  # fmt: skip
    try:
        client = open_exchange(exchange, url)
        with ProgressBar(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"{symbol} {timeframe}", total=None, rows=0)

            def show(p: Progress) -> None:
                bar.update(task, total=max(p.total_ms, 1), completed=p.done_ms, rows=p.rows)

            bars = download_ohlcv(
                exchange, symbol, timeframe, start, end, exchange=client, progress=show
            )
            rates = None
            if funding:
                task = bar.add_task(f"{symbol} funding", total=None, rows=0)
                rates = download_funding(
                    exchange, symbol, start, end, exchange=client, progress=show
                )
    except DataError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; what was downloaded is stored: run the same command to resume"
        ) from None
    console.print(_download_table(bars, rates))


@data_app.command("list")
def list_command() -> None:
    """List the catalog: one row per venue, symbol and timeframe."""
    from sapphire.data import Catalog, DataError

    console = Console()

    try:
        catalog = Catalog()
        entries = catalog.entries()
    except (DataError, OSError) as exc:
        raise _fail(str(exc)) from None
    if not entries:
        console.print(
            f"The catalog at {catalog.root} is empty. Add data with "
            "`sapphire data import FILE --symbol S --venue V`.",
            highlight=False,
            markup=False,
        )
        return
    table = Table(title=Text(f"Catalog at {catalog.root} (times in UTC)"))
    for column in ("symbol", "venue", "timeframe", "bars", "from", "to", "gaps"):
        table.add_column(column, justify="right" if column in {"bars", "gaps"} else "left")
    table.add_column("tick size", justify="right")
    table.add_column("lot size", justify="right")
    for entry in entries:
        table.add_row(
            Text(entry.symbol),
            Text(entry.venue),
            entry.timeframe,
            f"{entry.rows:,}",
            _time(entry.start),
            _time(entry.end),
            f"{entry.gap_count:,}",
            _number(entry.tick_size),
            _number(entry.lot_size),
        )
    console.print(table)


@data_app.command("show")
def show_command(
    symbol: Annotated[str, typer.Argument(help="Symbol as imported, e.g. BTC/USDT:USDT.")],
    venue: Annotated[str | None, typer.Option(help="Venue, when the symbol has several.")] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="Timeframe, when the symbol has several.")
    ] = None,
    rows: Annotated[int, typer.Option(min=0, help="Bars to show from each end.")] = 5,
) -> None:
    """Show one catalog entry: its metadata and its first and last bars."""
    from sapphire.data import Catalog, DataError

    console = Console()

    try:
        catalog = Catalog()
        entry = catalog.entry(symbol, venue=venue, timeframe=timeframe)
        frame = catalog.load(symbol, venue=entry.venue, timeframe=entry.timeframe)
    except (DataError, OSError) as exc:
        raise _fail(str(exc)) from None
    console.print(_entry_table(entry, title=entry.describe()))
    if rows:
        console.print(_bars_table(frame.head(rows), f"First {min(rows, len(frame))} bars"))
        console.print(_bars_table(frame.tail(rows), f"Last {min(rows, len(frame))} bars"))


def _entry_table(entry: CatalogEntry, *, title: str) -> Table:
    table = Table(title=Text(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    lines: list[tuple[str, str]] = [
        ("symbol", entry.symbol),
        ("venue", entry.venue),
        ("timeframe", entry.timeframe),
        ("bars", f"{entry.rows:,}"),
        ("from (UTC)", _time(entry.start)),
        ("to (UTC)", _time(entry.end)),
        ("gaps", _gaps(entry)),
        ("tick size", _number(entry.tick_size)),
        ("lot size", _number(entry.lot_size)),
        ("stored at", str(entry.path)),
    ]
    last = entry.last_import
    if last is not None:
        lines.append(("last import", f"{last.source} at {_time(last.imported_at.floor('s'))} UTC"))
        changes = f"{last.rows_read:,} bars read, {last.added:,} added, {last.replaced:,} replaced"
        if last.replaced:
            changes += f" ({last.changed:,} with different values)"
        if last.filled:
            changes += f", {last.filled:,} filled with the previous close"
        lines.append(("import result", changes))
        lines.extend(("note", note) for note in last.notes)
    for field, value in lines:
        table.add_row(field, Text(value))
    return table


def _download_table(bars: DownloadResult, rates: FundingResult | None) -> Table:
    table = Table(title=Text(f"Downloaded {bars.symbol} ({bars.exchange} {bars.timeframe})"),
                  show_header=False)  # fmt: skip
    table.add_column("field", style="bold")
    table.add_column("value")
    asked = f"{_time(bars.start)} to {_time(bars.end)} UTC"
    if not bars.fetched:
        fetched = "nothing: the catalog already covered the range"
    else:
        fetched = f"{bars.pages:,} pages, {bars.added:,} new bars"
        if bars.resumed_from is not None:
            fetched += f", resumed from {_time(bars.resumed_from)} UTC"
    lines = [("range asked", asked), ("fetched", fetched)]
    report = bars.report
    if report is None:
        lines.append(("bars in range", "none: the exchange has no bars there"))
    else:
        lines.append(
            ("bars in range", f"{bars.rows:,}, {_time(report.start)} to {_time(report.end)} UTC")
        )
        gaps = "none"
        if report.gap_count:
            from sapphire.data.timeframes import format_duration

            largest = format_duration(report.largest_gap) if report.largest_gap else "?"
            gaps = f"{report.gap_count:,} ({report.missing_bars:,} missing bars, largest {largest})"
        lines.append(("gaps", gaps))
    if bars.entry is not None:
        lines.append(("stored at", str(bars.entry.path)))
    if rates is not None:
        span = ""
        if rates.first is not None and rates.last is not None:
            span = f", {_time(rates.first)} to {_time(rates.last)} UTC"
        lines.append(("funding rates", f"{rates.rows:,} in range{span}, {rates.added:,} new"))
        lines.append(("funding file", f"{rates.path} (use it with --funding)"))
    for field, value in lines:
        table.add_row(field, Text(value))
    return table


def _bars_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    table.add_column("timestamp (UTC)")
    for column in ("open", "high", "low", "close", "volume"):
        table.add_column(column, justify="right")
    columns = [frame[name].tolist() for name in ("open", "high", "low", "close", "volume")]
    for stamp, *values in zip(frame["timestamp"], *columns, strict=True):
        table.add_row(_time(stamp), *(_price(value) for value in values))
    return table


def _gaps(entry: CatalogEntry) -> str:
    if entry.gap_count == 0:
        return "none"
    from sapphire.data.timeframes import format_duration

    largest = format_duration(entry.largest_gap) if entry.largest_gap is not None else "?"
    return f"{entry.gap_count:,} ({entry.missing_bars:,} missing bars, largest {largest})"


def _time(value: pd.Timestamp) -> str:
    from sapphire.data.validate import format_time

    return format_time(value.tz_convert("UTC"))


def _price(value: float) -> str:
    import numpy as np

    # Positional, never scientific: 0.0000533 reads as a price, 5.33e-05 does not.
    return np.format_float_positional(value, precision=10, trim="-")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
