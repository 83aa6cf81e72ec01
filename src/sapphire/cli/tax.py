"""`sapphire tax report`: a financial year's capital gains from a run's fills or an
exchange's trade history, as CSV files and one HTML page (not tax advice: docs/tax.md)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, print_json
from sapphire.cli.options import JsonOpt
from sapphire.compliance.tax import (
    DerivativeFill,
    TaxReport,
    Trade,
    build_report,
    derivative_rows,
    disposal_rows,
    from_run,
    held_rows,
    jurisdiction,
    money,
    read_holdings,
    read_identification,
    read_trades,
    summary_items,
    write_reports,
)
from sapphire.compliance.tax.events import DEFAULT_CASH
from sapphire.compliance.tax.rates import RateTable
from sapphire.compliance.tax.writers import DERIVATIVE_COLUMNS, DISPOSAL_COLUMNS
from sapphire.report import Page, cell, grid_table, kv_table

__all__ = ["tax_app"]

tax_app = typer.Typer(
    help="Tax reports: capital gains per financial year, Australian rules (not tax advice).",
    no_args_is_help=True,
    add_completion=False,
)


@tax_app.callback()
def tax_callback() -> None:
    """Tax reports: capital gains per financial year, Australian rules (not tax advice)."""


_NUMERIC = {"quantity", "cost_base", "proceeds", "gain_loss", "price", "realized_pnl", "fee", "net"}


@tax_app.command("report")
def report_command(
    year: Annotated[str, typer.Option(help="Financial year, e.g. 2024-25 (1 July to 30 June).")],
    out: Annotated[Path, typer.Option(help="Folder for the CSV files and the HTML page.")],
    rates: Annotated[
        Path | None,
        typer.Option(help="CSV of daily rates into AUD: date,currency,rate (e.g. USDT)."),
    ] = None,
    run: Annotated[
        list[str] | None, typer.Option("--run", help="A run id in the store (repeatable).")
    ] = None,
    trades: Annotated[
        list[Path] | None,
        typer.Option(
            "--trades", help="Trade history: Sapphire's CSV or a Bybit spot export (repeatable)."
        ),
    ] = None,
    method: Annotated[str, typer.Option(help="Parcel matching: fifo, lifo, hifo, specific.")] = (
        "fifo"
    ),
    entity: Annotated[str, typer.Option(help="individual, trust, super or company.")] = (
        "individual"
    ),
    carried_loss: Annotated[
        str, typer.Option(help="Net capital losses carried forward from earlier years.")
    ] = "0",
    holdings: Annotated[
        Path | None,
        typer.Option(
            help="Parcels held before the first trade: id,asset,acquired,quantity,cost_base."
        ),
    ] = None,
    identify: Annotated[
        Path | None,
        typer.Option(help="With --method specific: disposal_id,parcel_id,quantity rows."),
    ] = None,
    cash: Annotated[
        list[str] | None,
        typer.Option(help="Treat this currency as money, not a CGT asset (repeatable), e.g. USDT."),
    ] = None,
    country: Annotated[str, typer.Option("--jurisdiction", help="Tax rules.")] = "AU",
    json_out: JsonOpt = False,
) -> None:
    """Write the year's disposals, summary, derivative results and parcels held (CSV) and
    an HTML report into --out, from --run and/or --trades. Exit 2 on bad input."""
    if not run and not trades:
        raise fail("give the trades: --run RUN_ID (a run in the store) or --trades FILE")
    try:
        loss = Decimal(carried_loss)
    except InvalidOperation:
        raise fail(f"--carried-loss must be an amount, got {carried_loss!r}") from None
    try:
        rules = jurisdiction(country)
        spot, derivatives = _trades(run or [], trades or [])
        report = build_report(
            spot,
            year=year,
            rates=RateTable.load(rates, rules.currency)
            if rates
            else RateTable(rules.currency, source="the rates (no --rates file given)"),
            method=method,
            entity=entity,
            jurisdiction_code=country,
            carried_loss=loss,
            derivatives=derivatives,
            holdings=read_holdings(holdings, ZoneInfo(rules.timezone)) if holdings else (),
            identification=read_identification(identify) if identify else None,
            cash=DEFAULT_CASH | {c.upper() for c in cash or []},
        )
        written = write_reports(report, out)
        written["html"] = _html(report, out / f"tax-report-{report.year.label}.html")
    except ValueError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    items = summary_items(report)
    if json_out:
        print_json(
            {
                "summary": {key: value for key, _label, value in items},
                "files": {kind: str(path) for kind, path in written.items()},
            }
        )
        return
    table = Table(title=f"Tax report {report.year.label}", title_justify="left")
    table.add_column("item", style="bold")
    table.add_column("value", justify="right")
    for _key, label, value in items[:-1]:
        table.add_row(label, value)
    console.print(table)
    console.print(items[-1][2], soft_wrap=True, highlight=False)
    for kind, path in written.items():
        console.print(f"{kind}: {path}", soft_wrap=True, highlight=False)


def _trades(runs: list[str], files: list[Path]) -> tuple[list[Trade], list[DerivativeFill]]:
    spot: list[Trade] = []
    derivatives: list[DerivativeFill] = []
    if runs:
        from sapphire.store import Store

        with Store() as store:
            for run_id in runs:
                found, fills = from_run(store, run_id)
                spot.extend(found)
                derivatives.extend(fills)
    for file in files:
        spot.extend(read_trades(file))
    return spot, derivatives


def _html(report: TaxReport, path: Path) -> Path:
    """The report as one page in the shared style of Sapphire's reports."""
    page = Page()
    page.h2("Summary")
    page.html(kv_table("summary", {label: value for _k, label, value in summary_items(report)}))
    page.h2("Notes")
    for text in report.notes:
        page.note(text)
    page.h2(f"Disposals ({len(report.lines)})")
    page.html(_grid("disposals", DISPOSAL_COLUMNS, disposal_rows(report)))
    page.h2(f"Derivatives ({len(report.derivatives.rows)} fills)")
    page.html(_grid("derivatives", DERIVATIVE_COLUMNS, derivative_rows(report)))
    page.h2(f"Parcels held on {report.year.end} ({len(report.held)})")
    held = [
        {**row, "cost_base": money(p.cost)}
        for row, p in zip(held_rows(report), report.held, strict=True)
    ]
    page.html(_grid("held", ("id", "asset", "acquired", "quantity", "cost_base"), held))
    subtitle = (
        f"{report.jurisdiction} · {report.entity} · {report.method.value} · amounts in "
        f"{report.currency}, rounded to the cent · {report.year.start} to {report.year.end}"
    )
    title = f"Tax report {report.year.label}"
    return page.write(path, title, title, subtitle)


def _grid(table_id: str, columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    body = (
        "<tr>" + "".join(cell(row[c], numeric=c in _NUMERIC) for c in columns) + "</tr>"
        for row in rows
    )
    return grid_table(table_id, list(columns), body)
