"""`sapphire audit verify` and `sapphire audit show`: check and read the hash-chained
audit log in the store (`SAPPHIRE_DATABASE_URL`, else `$SAPPHIRE_HOME/sapphire.db`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, print_json
from sapphire.cli.options import JsonOpt
from sapphire.compliance.audit import AuditLog
from sapphire.store import Store

__all__ = ["audit_app"]

audit_app = typer.Typer(
    help="The audit log: every state-changing request and every order, hash-chained.",
    no_args_is_help=True,
)


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@audit_app.command("verify")
def verify_command(
    anchor: Annotated[
        str | None,
        typer.Option(help="A head hash recorded earlier: fail unless it is still in the chain."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Walk the chain: exit 0 if intact, 1 naming the first edited/deleted/moved record."""
    try:
        with Store() as store:
            report = AuditLog(store).verify(anchor)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if json_out:
        problem = report.problem
        print_json(
            {
                "ok": report.ok, "checked": report.checked, "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "problem": None if problem is None else {
                    "kind": problem.kind, "seq": problem.seq, "message": problem.message
                },
            }
        )  # fmt: skip
    else:
        console.print(report.summary(), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(code=1)


@audit_app.command("show")
def show_command(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many (the newest).")] = 20,
    actor: Annotated[str | None, typer.Option(help="Only this actor's records.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action's records.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The newest records, oldest of them first."""
    try:
        with Store() as store:
            records = AuditLog(store).records(limit, actor=actor, action=action, newest_first=True)
    except ValueError as exc:
        raise fail(str(exc)) from None
    records.reverse()
    if json_out:
        print_json(
            [
                {
                    "seq": r.seq, "ts": _iso(r.ts_ns), "actor": r.actor, "action": r.action,
                    "target": r.target, "detail": r.detail, "ip": r.ip, "hash": r.hash,
                }
                for r in records
            ]
        )  # fmt: skip
        return
    if not records:
        console.print("The audit log has no records" + (" that match." if actor or action else "."))
        return
    table = Table(title=f"Audit log: the last {len(records)} records", title_justify="left")
    for column in ("seq", "time (UTC)", "actor", "action", "target", "ip", "detail"):
        table.add_column(column, justify="right" if column == "seq" else "left")
    for r in records:
        detail = json.dumps(r.detail, sort_keys=True)
        table.add_row(
            str(r.seq), _iso(r.ts_ns)[:23], r.actor, r.action, r.target, r.ip or "",
            detail if len(detail) <= 80 else detail[:79] + "…",
        )  # fmt: skip
    console.print(table)
