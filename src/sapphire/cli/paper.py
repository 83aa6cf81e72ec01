"""`sapphire paper` (start / resume a paper session) and `sapphire runs` (list / show)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from sapphire.cli.common import (
    console,
    err_console,
    fail,
    node_services,
    parse_params,
)
from sapphire.cli.options import (
    JsonOpt,
    MetricsHostOpt,
    MetricsPortOpt,
    ParamOpt,
    run_options,
)
from sapphire.paper.config import PaperConfig

paper_app = typer.Typer(
    help="Paper trading against the simulated venue (out of process, crash safe).",
    no_args_is_help=False,
    invoke_without_command=True,
)
runs_app = typer.Typer(
    help="List and inspect stored runs (paper, backtest...).", no_args_is_help=True
)

LiveOpt = Annotated[bool, typer.Option("--live/--no-live", help="Live terminal view.")]
SecondsOpt = Annotated[
    float | None, typer.Option(help="Stop after this many seconds (resume it later).")
]


def _view_table(view: Any) -> Group:
    head = Table(title=f"paper {view.run_id} ({view.status})", title_justify="left")
    for col in ("bar", "last", "position", "avg px", "balance", "equity", "realised", "fills"):
        head.add_column(col, justify="right")
    head.add_row(
        f"{view.bar + 1}/{view.bars}", "-" if view.last is None else f"{view.last:g}",
        str(view.position), "-" if view.avg_px is None else f"{view.avg_px:.2f}",
        f"{view.balance:.2f}", f"{view.equity:.2f}", f"{view.realized:.2f}", str(view.fills),
    )  # fmt: skip
    orders = Table(title="open orders", title_justify="left")
    for col in ("client order id", "side", "type", "qty", "status"):
        orders.add_column(col)
    for row in view.open_orders[:10]:
        orders.add_row(*row)
    return Group(head, orders)


def _summary(view: Any) -> dict[str, Any]:
    out = dict(view.__dict__)
    for key, value in out.items():
        if isinstance(value, Decimal):
            out[key] = str(value)
    out["open_orders"] = [list(r) for r in view.open_orders]
    return out


def _settings(config: PaperConfig) -> dict[str, Any]:
    """The costs and sizing of a run (as a backtest's `--json` gives them)."""
    keys = ("maker_fee", "taker_fee", "size_mode", "size", "leverage", "intrabar")
    return {k: getattr(config, k) for k in keys}


def _warn(denied: dict[str, int], stopped: str | None, caveats: list[str]) -> None:
    """The strategy's caveats (a model scoring its own training bars), the refused
    orders by main reason, and a stop at zero equity, as warnings."""
    from sapphire.engine.risk_monitor import refusal_summary

    for caveat in caveats:
        err_console.print(f"[yellow]warning:[/] {caveat}", highlight=False, soft_wrap=True)
    summary = refusal_summary(denied)
    if summary is not None:
        err_console.print(f"[yellow]warning:[/] {summary}", highlight=False)
    if stopped is not None:
        err_console.print(f"[yellow]warning:[/] {stopped}", highlight=False)


def _refused(orders: list[Any]) -> dict[str, int]:
    """The stored orders' refusals (risk denials, venue rejections) by main reason."""
    from sapphire.domain import OrderDenied, OrderRejected
    from sapphire.engine.risk_monitor import refusal_counts

    return refusal_counts(
        e.reason for o in orders for e in o.events if isinstance(e, OrderDenied | OrderRejected)
    )


def _drive(session: Any, live: bool, as_json: bool, seconds: float | None) -> None:
    try:
        if live and not as_json:
            from rich.live import Live

            with Live(_view_table(session.view()), console=console, refresh_per_second=4) as lv:
                view = session.run(lambda v: lv.update(_view_table(v)), max_seconds=seconds)
        else:
            view = session.run(max_seconds=seconds)
    except KeyboardInterrupt:
        # everything is committed as it happens: the run resumes where it stopped
        err_console.print(
            f"\ninterrupted: resume with: sapphire paper resume {session.run_id}",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    if as_json:
        print(json.dumps({**_summary(view), "settings": _settings(session.config)}))
    elif not live:
        console.print(_view_table(view))
    if not as_json:
        from sapphire.backtest.result import settings_caption

        console.print(settings_caption(session.config.to_mapping()), highlight=False)
    _warn(view.denied, view.stopped, view.warnings)
    if view.status != "finished":
        err_console.print(f"resume with: sapphire paper resume {view.run_id}", highlight=False)


@paper_app.callback()
@run_options(
    cls=PaperConfig,
    skip=("engine", "fill_at", "maintenance_margin", "liquidation_fee", "params"),
)
def paper_command(
    config: PaperConfig,
    ctx: typer.Context,
    param: ParamOpt = None,
    model: Annotated[
        str | None, typer.Option(help="--strategy ml: the registry model, NAME[@VERSION|@ALIAS].")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Name the run (default: generated).")] = None,
    seconds: SecondsOpt = None,
    live: LiveOpt = True,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Start a paper session: the node trades STRATEGY against the simulated venue,
    which runs as its own process and keeps its orders, fills and balances."""
    if ctx.invoked_subcommand is not None:
        return
    from sapphire.data import DataError
    from sapphire.paper import PaperSession

    try:
        params = parse_params(param)
        if model is not None:
            params["model"] = model
        config = replace(config, params=params)
        session = PaperSession.start(config, run_id=run_id)
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    node_services(session, "paper", metrics_port, metrics_host)
    _drive(session, live, as_json, seconds)


@paper_app.command("resume")
def paper_resume_command(
    run_id: Annotated[str, typer.Argument(help="The paper run to resume.")],
    speed: Annotated[
        str | None, typer.Option(help="Change the venue's pace: 1x, 100x... or max.")
    ] = None,
    seconds: SecondsOpt = None,
    live: LiveOpt = True,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Resume a paper run after a stop or a crash: restore from the store, reconcile
    with the venue, continue."""
    from sapphire.paper import PaperSession

    try:
        session = PaperSession.resume(run_id, speed=speed)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    node_services(session, "paper", metrics_port, metrics_host)
    _drive(session, live, as_json, seconds)


def _run_json(info: Any) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "mode": info.mode.value,
        "status": info.status.value,
        "strategy_ids": [str(s) for s in info.strategy_ids],
        "ts_started": info.ts_started,
        "ts_finished": info.ts_finished,
        "reason": info.reason,
        "config": info.config,
    }


def _ts(ns: int | None) -> str:
    if ns is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
def runs_list_command(
    status: Annotated[str | None, typer.Option(help="Only RUNNING, FINISHED or FAILED.")] = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Every stored run, oldest first."""
    from sapphire.store import Store

    try:
        runs = Store().runs(status)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps([_run_json(r) for r in runs]))
        return
    table = Table(title="runs", title_justify="left")
    for col in ("run id", "mode", "status", "strategy", "started", "finished"):
        table.add_column(col)
    for r in runs:
        mode = r.mode.value
        if "env" in r.config:  # a live run: where it traded (and whether on paper)
            mode += f" {r.config['env']}" + (" paper" if r.config.get("paper") else "")
        table.add_row(
            r.run_id, mode, r.status.value, str(r.config.get("strategy", "-")),
            _ts(r.ts_started), _ts(r.ts_finished),
        )  # fmt: skip
    console.print(table)


@runs_app.command("show")
def runs_show_command(
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """A run's configuration, positions, balances, orders and fills."""
    from sapphire.store import Store

    store = Store()
    try:
        info = store.run(run_id)
    except ValueError as exc:
        raise fail(str(exc)) from None
    positions = store.positions(run_id)
    balances = store.balances(run_id)
    orders = store.orders(run_id)
    fills = store.fills(run_id)
    from sapphire.paper.session import read_in_sample

    run_dir = info.config.get("run_dir")
    caveats = read_in_sample(run_dir) if run_dir else {}
    if as_json:
        out = _run_json(info)
        out["warnings"] = list(caveats.get("warnings", []))
        out["in_sample"] = caveats.get("in_sample")
        out["positions"] = [
            {"instrument_id": str(p.instrument_id), "strategy_id": p.strategy_id,
             "quantity": str(p.quantity), "avg_px": None if p.avg_px is None else str(p.avg_px),
             "realized_pnl": str(p.realized_pnl), "fees": str(p.fees)}
            for p in positions
        ]  # fmt: skip
        out["balances"] = {
            str(a): {b.currency: str(b.total) for b in s.balances} for a, s in balances.items()
        }
        out["orders"] = [
            {"client_order_id": str(o.client_order_id), "side": o.side.value,
             "type": o.type.value, "quantity": str(o.quantity), "status": o.status.value,
             "filled_qty": str(o.filled_qty),
             "avg_px": None if o.avg_px is None else str(o.avg_px)}
            for o in orders
        ]  # fmt: skip
        out["fills"] = len(fills)
        out["denied"] = _refused(orders)
        print(json.dumps(out))
        return
    head = Table(title=f"run {info.run_id}", title_justify="left", show_header=False)
    head.add_column("key", style="bold")
    head.add_column("value")
    for key, value in (
        ("mode", info.mode.value), ("status", info.status.value),
        ("started", _ts(info.ts_started)), ("finished", _ts(info.ts_finished)),
        ("reason", info.reason or "-"), ("orders", str(len(orders))), ("fills", str(len(fills))),
        *((k, str(v)) for k, v in info.config.items()),
    ):  # fmt: skip
        head.add_row(key, value)
    pos = Table(title="positions", title_justify="left")
    for col in ("instrument", "strategy", "quantity", "avg px", "realised", "fees"):
        pos.add_column(col)
    for p in positions:
        pos.add_row(
            str(p.instrument_id), str(p.strategy_id), str(p.quantity),
            "-" if p.avg_px is None else f"{p.avg_px:.2f}", f"{p.realized_pnl:.4f}",
            f"{p.fees:.4f}",
        )  # fmt: skip
    bal = Table(title="balances", title_justify="left")
    for col in ("account", "currency", "total"):
        bal.add_column(col)
    for account, state in balances.items():
        for b in state.balances:
            bal.add_row(str(account), b.currency, str(b.total))
    open_t = Table(title="open orders", title_justify="left")
    for col in ("client order id", "side", "type", "qty", "status"):
        open_t.add_column(col)
    for o in orders:
        if o.is_open:
            open_t.add_row(
                str(o.client_order_id), o.side.value, o.type.value, str(o.quantity),
                o.status.value,
            )  # fmt: skip
    console.print(Group(head, pos, bal, open_t))
    if {"taker_fee", "maker_fee", "size", "size_mode", "intrabar"} <= set(info.config):
        from sapphire.backtest.result import settings_caption

        console.print(settings_caption(info.config), highlight=False)
    stopped = info.reason if info.reason and "equity reached zero" in info.reason else None
    _warn(_refused(orders), stopped, list(caveats.get("warnings", [])))
