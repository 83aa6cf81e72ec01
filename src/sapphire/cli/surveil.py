"""`sapphire surveil`: trade surveillance over the store's runs (`SAPPHIRE_DATABASE_URL`,
else `$SAPPHIRE_HOME/sapphire.db`): wash trades, spoofing, layering, marking the close and
order-to-trade ratios (docs/surveillance.md). Exit 0 with "no alerts" when clean, 1 when
there are alerts, 2 on an error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, print_json, wide_console
from sapphire.cli.options import JsonOpt
from sapphire.compliance.surveillance import (
    Alert,
    SurveillanceConfig,
    iso_time,
    order_events,
    surveil_events,
)
from sapphire.domain import ClientOrderId, Order, OrderEvent
from sapphire.report import Page, cell, grid_table, kv_table, note, report_path

__all__ = ["surveil_app"]

surveil_app = typer.Typer(
    help="Trade surveillance: wash trades, spoofing, layering, marking the close and "
    "order-to-trade ratios over the stored runs.",
    invoke_without_command=True,
    add_completion=False,
)

RunOpt = Annotated[
    list[str] | None,
    typer.Option("--run", help="A run to surveil (repeat for several); default: every run."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML thresholds (docs/surveillance.md).")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Also write an HTML report of the alerts here.")
]
_SHOWN_IDS = 3  # client order ids an alert's table row lists before "+N more"


@surveil_app.callback(invoke_without_command=True)
def surveil_command(
    run: RunOpt = None,
    config_file: ConfigOpt = None,
    json_out: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Check the runs' orders and fills together (across runs, strategies and accounts)."""
    from sapphire.store import Store

    try:
        config = (
            SurveillanceConfig() if config_file is None else SurveillanceConfig.load(config_file)
        )
        with Store() as store:
            runs = [r.run_id for r in store.runs()] if not run else list(dict.fromkeys(run))
            events = order_events(store, runs)
            alerts = surveil_events(events, config)
    except ValueError as exc:
        raise fail(str(exc)) from None
    run_of = {e.client_order_id: r for r, e in events}
    n_orders = len(run_of)
    written = None
    if out is not None:
        written = _html(alerts, events, runs, config, report_path(out, "surveillance"))
    if json_out:
        print_json(
            {
                "runs": runs, "orders": n_orders, "alerts": [a.to_mapping() for a in alerts],
                "report": None if written is None else str(written),
            }
        )  # fmt: skip
    elif not alerts:
        console.print(f"no alerts: {n_orders} orders in {len(runs)} run(s) checked")
    else:
        wide_console.print(_table(alerts, n_orders, len(runs)))
    if written is not None and not json_out:
        console.print(f"report: {written}", highlight=False, soft_wrap=True)
    if alerts:
        raise typer.Exit(code=1)


def _ids(alert: Alert) -> str:
    ids = [str(c) for c in alert.client_order_ids]
    more = len(ids) - _SHOWN_IDS
    return ", ".join(ids[:_SHOWN_IDS]) + (f" +{more} more" if more > 0 else "")


def _table(alerts: list[Alert], n_orders: int, n_runs: int) -> Table:
    table = Table(
        title=f"Surveillance: {len(alerts)} alert(s) in {n_orders} orders of {n_runs} run(s)",
        title_justify="left",
        show_lines=True,
    )
    for column in ("time (UTC)", "rule", "severity", "instrument", "strategy / run", "orders"):
        table.add_column(column, no_wrap=column in ("time (UTC)", "rule"))
    table.add_column("explanation", ratio=1)
    for a in alerts:
        table.add_row(
            iso_time(a.ts_ns)[:19].replace("T", " "), a.rule.value, a.severity.value,
            "—" if a.instrument_id is None else str(a.instrument_id),
            ", ".join(a.strategy_ids) + " / " + ", ".join(a.run_ids), _ids(a), a.explanation,
        )  # fmt: skip
    return table


_ORDER_COLUMNS = (
    "client_order_id", "run_id", "strategy_id", "side", "type", "quantity", "price",
    "status", "filled_qty", "avg_px", "placed (UTC)", "last event (UTC)",
)  # fmt: skip
_NUMERIC = {"quantity", "price", "filled_qty", "avg_px"}


def _order_row(order: Order, run_id: str) -> str:
    values = {
        "client_order_id": str(order.client_order_id), "run_id": run_id,
        "strategy_id": str(order.strategy_id), "side": order.side.value,
        "type": order.type.value, "quantity": str(order.quantity),
        "price": "" if order.price is None else str(order.price),
        "status": order.status.value, "filled_qty": str(order.filled_qty),
        "avg_px": "" if order.avg_px is None else str(order.avg_px),
        "placed (UTC)": iso_time(order.ts_init), "last event (UTC)": iso_time(order.ts_last),
    }  # fmt: skip
    return (
        "<tr>" + "".join(cell(values[c], numeric=c in _NUMERIC) for c in _ORDER_COLUMNS) + "</tr>"
    )


def _html(
    alerts: list[Alert], events: list[tuple[str, OrderEvent]], runs: list[str],
    config: SurveillanceConfig, path: Path,
) -> Path:  # fmt: skip
    """The alerts, each with its orders (rebuilt from their events), on one page in the
    shared report style."""
    history: dict[ClientOrderId, list[OrderEvent]] = {}
    run_of: dict[ClientOrderId, str] = {}
    for run, event in events:
        history.setdefault(event.client_order_id, []).append(event)
        run_of[event.client_order_id] = run
    orders = {c: Order.from_events(history[c]) for a in alerts for c in a.client_order_ids}
    page = Page()
    page.h2("Summary")
    by_rule = Counter(a.rule.value for a in alerts)
    summary = {"runs": ", ".join(runs) or "none", "orders checked": len(run_of)}
    summary.update({f"{rule} alerts": n for rule, n in sorted(by_rule.items())})
    page.html(kv_table("summary", summary))
    head = ["#", "time (UTC)", "rule", "severity", "instrument", "strategies", "runs", "orders"]
    rows = (
        "<tr>" + "".join((
            cell(str(i), numeric=True), cell(iso_time(a.ts_ns)), cell(a.rule.value),
            cell(a.severity.value), cell("" if a.instrument_id is None else str(a.instrument_id)),
            cell(", ".join(a.strategy_ids)), cell(", ".join(a.run_ids)),
            cell(str(len(a.client_order_ids)), numeric=True),
        )) + "</tr>"
        for i, a in enumerate(alerts, 1)
    )  # fmt: skip
    page.h2(f"Alerts ({len(alerts)})")
    page.html(grid_table("alerts", head, rows) if alerts else note("No alerts."))
    for i, a in enumerate(alerts, 1):
        page.h2(f"#{i} {a.rule.value} ({a.severity.value}) at {iso_time(a.ts_ns)}")
        page.note(a.explanation)
        body = (_order_row(orders[c], run_of[c]) for c in a.client_order_ids)
        page.html(grid_table(f"alert-{i}-orders", list(_ORDER_COLUMNS), body))
    page.h2("Thresholds")
    flat: dict[str, object] = {}
    for section, values in config.to_mapping().items():
        if isinstance(values, dict):
            flat.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            flat[section] = values
    page.html(kv_table("thresholds", flat))
    title = "Trade surveillance"
    subtitle = f"{len(alerts)} alert(s) over {len(run_of)} orders of {len(runs)} run(s)"
    return page.write(path, title, title, subtitle)
