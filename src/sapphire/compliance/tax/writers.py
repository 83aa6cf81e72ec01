"""A `TaxReport` as files: the disposals, the summary, the derivative results and the
parcels held at the end of the year, each a CSV file (the HTML page is `sapphire tax
report`'s, through `sapphire.report`).

Amounts in the report currency are rounded to the cent (half away from zero) when they
are written, each from its exact value: the rounded rows of a column may differ from
the rounded total by a few cents. Quantities are written exactly.
"""

from __future__ import annotations

import csv
from datetime import UTC
from decimal import Decimal
from pathlib import Path

from sapphire.compliance.tax.common import cents, exact, plain
from sapphire.compliance.tax.files import HOLDING_COLUMNS
from sapphire.compliance.tax.report import TaxReport

__all__ = [
    "DERIVATIVE_COLUMNS",
    "DISPOSAL_COLUMNS",
    "derivative_rows",
    "disposal_rows",
    "held_rows",
    "money",
    "summary_items",
    "write_reports",
]

DISPOSAL_COLUMNS = (
    "asset", "acquired", "disposed", "quantity", "cost_base", "proceeds", "gain_loss",
    "discount_eligible", "method", "disposal_id", "parcel_id", "how",
)  # fmt: skip
DERIVATIVE_COLUMNS = (
    "time", "date", "instrument", "side", "quantity", "price", "realized_pnl", "fee", "net",
    "trade_id",
)  # fmt: skip


def money(value: Decimal) -> str:
    """An amount in the report currency as written: to the cent (``-12.30``)."""
    return f"{cents(value):.2f}"


def disposal_rows(report: TaxReport) -> list[dict[str, str]]:
    """One row per disposal and parcel used (`DISPOSAL_COLUMNS`), in time order."""
    return [
        {
            "asset": line.piece.disposal.asset,
            "acquired": line.piece.acquired_day.isoformat(),
            "disposed": line.piece.disposal.day.isoformat(),
            "quantity": plain(line.piece.quantity),
            "cost_base": money(line.piece.cost),
            "proceeds": money(line.piece.proceeds),
            "gain_loss": money(line.piece.gain),
            "discount_eligible": "yes" if line.discounted else "no",
            "method": line.piece.method.value,
            "disposal_id": line.piece.disposal.disposal_id,
            "parcel_id": line.piece.parcel_id,
            "how": line.piece.disposal.how,
        }
        for line in report.lines
    ]


def summary_items(report: TaxReport) -> list[tuple[str, str, str]]:
    """The summary as (key, label, value) rows: amounts to the cent."""
    s = report.summary
    with exact():
        rate = f"{(s.discount_rate * 100).quantize(Decimal('0.01')).normalize():f}%"
    d = report.derivatives
    earlier, forward = s.carried_losses_applied, s.loss_carried_forward
    return [
        ("jurisdiction", "Jurisdiction", report.jurisdiction),
        ("year", "Financial year", report.year.label),
        ("period", "Period", f"{report.year.start} to {report.year.end} ({report.timezone})"),
        ("entity", "Entity", report.entity),
        ("method", "Parcel matching", report.method.value),
        ("currency", "Currency", report.currency),
        ("disposals", "Disposals (parcel parts)", str(len(report.lines))),
        ("total_capital_gains", "Total current year capital gains", money(s.total_gains)),
        ("discountable_gains", "of which discountable", money(s.discountable_gains)),
        ("capital_losses", "Current year capital losses", money(s.current_losses)),
        ("capital_losses_applied", "Current year losses applied", money(s.current_losses_applied)),
        ("carried_losses", "Net capital losses from earlier years", money(s.carried_losses)),
        ("carried_losses_applied", "Earlier years' losses applied", money(earlier)),
        ("discount_rate", "CGT discount rate", rate),
        ("discount", "CGT discount", money(s.discount)),
        ("net_capital_gain", "Net capital gain", money(s.net_capital_gain)),
        ("loss_carried_forward", "Net capital losses carried forward", money(forward)),
        ("derivative_gains", "Derivative gains", money(d.gains)),
        ("derivative_losses", "Derivative losses", money(d.losses)),
        ("derivative_fees", "Derivative fees", money(d.fees)),
        ("derivative_net", "Derivative net result", money(d.net)),
        ("loss_order", "Order losses were applied in", s.loss_order),
    ]  # fmt: skip


def derivative_rows(report: TaxReport) -> list[dict[str, str]]:
    """One row per derivative fill of the year (`DERIVATIVE_COLUMNS`)."""
    return [
        {
            "time": r.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "date": r.day.isoformat(),
            "instrument": r.instrument,
            "side": r.side.value,
            "quantity": plain(r.quantity),
            "price": plain(r.price),
            "realized_pnl": money(r.realized),
            "fee": money(r.fee),
            "net": money(r.net),
            "trade_id": r.trade_id,
        }
        for r in report.derivatives.rows
    ]


def held_rows(report: TaxReport) -> list[dict[str, str]]:
    """The parcels held at the end of the year, in the opening-holdings format (the next
    year's `--holdings`); the cost base keeps its exact value."""
    return [
        {
            "id": p.parcel_id,
            "asset": p.asset,
            "acquired": p.acquired.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "quantity": plain(p.quantity),
            "cost_base": plain(p.cost),
        }
        for p in report.held
    ]


def _write(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_reports(report: TaxReport, folder: str | Path) -> dict[str, Path]:
    """Write the four CSV files into `folder` (created): {kind: path}."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    label = report.year.label
    summary = [{"item": k, "label": label_, "value": v} for k, label_, v in summary_items(report)]
    return {
        "disposals": _write(
            out / f"disposals-{label}.csv", DISPOSAL_COLUMNS, disposal_rows(report)
        ),
        "summary": _write(out / f"summary-{label}.csv", ("item", "label", "value"), summary),
        "derivatives": _write(
            out / f"derivatives-{label}.csv", DERIVATIVE_COLUMNS, derivative_rows(report)
        ),
        "held": _write(out / f"parcels-held-{label}.csv", HOLDING_COLUMNS, held_rows(report)),
    }
