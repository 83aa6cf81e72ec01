"""`sapphire graduate`: check a strategy's graduation gates, record the decision, list and
show decisions, and override a failed one (docs/governance.md)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sapphire.cli.common import console, fail, format_number, parse_params, print_json
from sapphire.cli.options import DataOpt, JsonOpt, ParamOpt, StorageOpt, StrategyOpt, run_options
from sapphire.engine.config import RunConfig

graduate_app = typer.Typer(
    help="Strategy graduation: backtest -> paper -> live through written-down gates.",
    no_args_is_help=True,
)

GatesOpt = Annotated[
    Path | None, typer.Option("--gates", help="YAML file of gate thresholds (default: built-in).")
]
ActorOpt = Annotated[str | None, typer.Option(help="Who decides (default: the login name).")]
StudyOpt = Annotated[
    str | None, typer.Option(help="The optimiser study the strategy came from (DSR, PBO).")
]


def _actor(actor: str | None) -> str:
    if actor is not None:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _gates(path: Path | None) -> Any:
    from sapphire.optimize.graduation import GateConfig

    return GateConfig() if path is None else GateConfig.from_yaml(path)


def _outcome(passed: bool | None) -> str:
    return "[dim]n/a[/]" if passed is None else "[green]PASS[/]" if passed else "[red]FAIL[/]"


def _print_decision(decision: Any) -> None:
    table = Table(
        title=f"decision {decision.id}: {decision.strategy} {decision.params} -> {decision.stage}",
        title_justify="left",
    )
    for name in ("gate", "figure", "", "threshold", "outcome", "on"):
        table.add_column(name, justify="right" if name in ("figure", "threshold") else "left")
    for g in decision.gates:
        table.add_row(
            g.name, format_number(g.figure), g.op, format_number(g.threshold),
            _outcome(g.passed), g.detail,
        )  # fmt: skip
    console.print(table)
    console.print(f"status: {decision.status.upper()}", highlight=False)
    if decision.overridden:
        console.print(
            f"override by {decision.override_actor}: {decision.override_reason}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def _record(check: Any, storage: str | None, actor: str | None, as_json: bool) -> None:
    from sapphire.compliance.graduation import GraduationDecision, GraduationLog
    from sapphire.store import Store

    decision = GraduationDecision.new(
        check.strategy, check.params, check.stage,
        check.gates, check.evidence,
        actor=_actor(actor), kind=check.kind,
    )  # fmt: skip
    with Store(storage) as store:
        stored = GraduationLog(store).record(decision)
    if as_json:
        print_json(stored.to_mapping())
    else:
        _print_decision(stored)
        if not stored.passed:
            console.print(
                f"a failed gate blocks graduation; to let it through: sapphire graduate "
                f"override {stored.id} --reason TEXT --actor NAME",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
    raise typer.Exit(code=0 if stored.passed else 1)


@graduate_app.command("check")
@run_options()
def check_command(
    config: RunConfig,
    to: Annotated[str, typer.Option("--to", help="The stage to move to: paper or live.")],
    data: DataOpt = "sample",
    strategy: StrategyOpt = "sma_cross",
    param: ParamOpt = None,
    study: StudyOpt = None,
    paper_run: Annotated[
        str | None, typer.Option(help="--to live: the paper run that earned it.")
    ] = None,
    gates: GatesOpt = None,
    storage: StorageOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every gate for STRATEGY moving to paper or live; record the decision (exit 0
    when all pass, 1 when one fails)."""
    from sapphire.data import DataError
    from sapphire.optimize.graduation import check_graduation
    from sapphire.store import Store

    try:
        with Store(storage) as store:
            check = check_graduation(
                strategy, parse_params(param), data, to=to, config=config, study=study,
                storage=storage, paper_run=paper_run, store=store, gates=_gates(gates),
            )  # fmt: skip
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    _record(check, storage, actor, as_json)


@graduate_app.command("challenger")
def challenger_command(
    champion_run: Annotated[str, typer.Option(help="The champion's live or paper run.")],
    challenger_run: Annotated[str, typer.Option(help="The challenger's shadow paper run.")],
    study: StudyOpt = None,
    gates: GatesOpt = None,
    storage: StorageOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Promote a challenger only through the paper -> live gates plus "beats the champion"
    on the bars both runs share (exit 0 when all pass, 1 otherwise)."""
    from sapphire.optimize.graduation import check_challenger
    from sapphire.store import Store

    try:
        with Store(storage) as store:
            check = check_challenger(
                champion_run, challenger_run, store=store, study=study, storage=storage,
                gates=_gates(gates),
            )  # fmt: skip
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    _record(check, storage, actor, as_json)


@graduate_app.command("history")
def history_command(
    strategy: Annotated[str | None, typer.Option(help="Only this strategy's decisions.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the graduation decisions, newest first."""
    from sapphire.compliance.graduation import GraduationLog
    from sapphire.store import Store

    with Store(storage) as store:
        decisions = GraduationLog(store).history(strategy, limit=limit)
    if as_json:
        print_json([d.to_mapping() for d in decisions])
        return
    table = Table(title="Graduation decisions", title_justify="left")
    for name in ("id", "kind", "strategy", "params", "to", "status", "actor", "failed gates"):
        table.add_column(name)
    for d in decisions:
        table.add_row(
            str(d.id), d.kind, d.strategy, str(d.params), d.stage, d.status, d.actor,
            ", ".join(g.name for g in d.failed_gates),
        )  # fmt: skip
    console.print(table)


@graduate_app.command("show")
def show_command(
    decision_id: Annotated[int, typer.Argument(help="The decision's id (see history).")],
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one decision: every gate, its evidence and any override."""
    from sapphire.compliance.graduation import GraduationLog
    from sapphire.optimize.graduation import decision_report
    from sapphire.store import Store

    try:
        with Store(storage) as store:
            decision = GraduationLog(store).get(decision_id)
    except ValueError as exc:
        raise fail(str(exc)) from None
    path = decision_report(decision.to_mapping(), report) if report is not None else None
    if as_json:
        print_json({**decision.to_mapping(), **({"report": str(path)} if path else {})})
        return
    _print_decision(decision)
    ev = decision.evidence
    console.print(
        f"data {ev.get('data_hash')}, code {ev.get('code_version')}, by {decision.actor}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if path is not None:
        console.print(f"report: {path}", soft_wrap=True)


@graduate_app.command("override")
def override_command(
    decision_id: Annotated[int, typer.Argument(help="The failed decision's id.")],
    reason: Annotated[str, typer.Option(help="Why the failed gates may be skipped.")],
    actor: Annotated[str, typer.Option(help="Who takes the responsibility.")],
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a failed decision through: stored as an override and appended to the audit log."""
    from sapphire.compliance.graduation import GraduationLog
    from sapphire.store import Store

    try:
        with Store(storage) as store:
            decision = GraduationLog(store).override(decision_id, reason=reason, actor=actor)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(decision.to_mapping())
        return
    console.print(
        f"decision {decision.id} ({decision.strategy} -> {decision.stage}) overridden by "
        f"{decision.override_actor}: {decision.override_reason}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
