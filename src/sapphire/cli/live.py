"""`sapphire live` (start a live session, or `--paper` on live data) and `sapphire live
resume` (after a stop or a crash)."""

from __future__ import annotations

import json
import sys
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
from sapphire.live.config import LiveConfig

live_app = typer.Typer(
    help="Live trading on Bybit (or --paper on its market data): crash safe, reconciled.",
    no_args_is_help=False,
    invoke_without_command=True,
)

SecondsOpt = Annotated[
    float | None, typer.Option(help="Stop after this many seconds (resume it later).")
]
ConfirmOpt = Annotated[
    bool,
    typer.Option(
        "--confirm-mainnet", help="Trade real money on mainnet without the typed confirmation."
    ),
]
OnExitOpt = Annotated[
    str | None, typer.Option("--on-exit", help="On stop: cancel or leave the open orders.")
]
#: what the user types to trade on mainnet
CONFIRMATION = "MAINNET"


def _mainnet_confirmed(config: LiveConfig, confirm: bool) -> bool:
    """The interlock: mainnet (real money) needs `--confirm-mainnet` or the typed word."""
    if config.env != "mainnet" or config.paper or confirm:
        return True
    if not sys.stdin.isatty():
        raise fail(
            "Bybit mainnet trades real money: pass --confirm-mainnet (scripts) or run it "
            f"in a terminal and type {CONFIRMATION} when asked"
        )
    answer = typer.prompt(f"Bybit mainnet trades real money. Type {CONFIRMATION} to go on")
    if answer.strip() != CONFIRMATION:
        raise fail(f"not confirmed (typed {answer.strip()!r}, expected {CONFIRMATION})")
    return True


def _table(view: Any) -> Group:
    where = f"{view.env}, paper" if view.paper else view.env
    head = Table(title=f"live {view.run_id} ({where}; {view.status})", title_justify="left")
    for col in ("bars", "last", "position", "avg px", "balance", "equity", "fills", "state"):
        head.add_column(col, justify="right")
    head.add_row(
        str(view.bars), "-" if view.last is None else f"{view.last:g}", str(view.position),
        "-" if view.avg_px is None else f"{view.avg_px:.2f}", f"{view.balance:.2f}",
        f"{view.equity:.2f}", str(view.fills), view.trading_state,
    )  # fmt: skip
    orders = Table(title="open orders", title_justify="left")
    for col in ("client order id", "side", "type", "qty", "status"):
        orders.add_column(col)
    for row in view.open_orders[:10]:
        orders.add_row(*row)
    if not view.positions:
        return Group(head, orders)
    markets = Table(title="positions", title_justify="left")  # several markets
    markets.add_column("market")
    markets.add_column("position", justify="right")
    for market, qty in view.positions.items():
        markets.add_row(market, qty)
    return Group(head, markets, orders)


def _summary(view: Any, still_open: list[str]) -> dict[str, Any]:
    out = dict(view.__dict__)
    for key, value in out.items():
        if isinstance(value, Decimal):
            out[key] = str(value)
    out["open_orders"] = [list(r) for r in view.open_orders]
    out["left_open"] = still_open
    return out


def _drive(session: Any, seconds: float | None, on_exit: str | None, as_json: bool) -> None:
    run_id = session.run_id
    resume = "" if session.config.paper else f"resume with: sapphire live resume {run_id}"
    try:
        view = session.run(max_seconds=seconds)
    except KeyboardInterrupt:
        still_open = session.stop(on_exit)
        what = session.config.on_exit if on_exit is None else on_exit
        err_console.print(
            f"\ninterrupted: open orders {'cancelled' if what == 'cancel' else 'left'}"
            + (f"; still open: {', '.join(still_open)}" if still_open else ""),
            highlight=False,
        )
        if resume:
            err_console.print(resume, highlight=False)
        raise typer.Exit(code=130) from None
    still_open = session.stop(on_exit)
    view = session.view()
    if as_json:
        print(json.dumps(_summary(view, still_open)))
    else:
        console.print(_table(view))
    if resume:
        err_console.print(resume, highlight=False)


@live_app.callback()
@run_options(
    cls=LiveConfig,
    skip=(
        "engine", "fill_at", "maintenance_margin", "liquidation_fee", "params", "funding",
        "start", "end", "venue", "resample", "gaps", "time_column", "columns", "date_format",
        "delimiter", "maker_fee", "taker_fee", "tick_size", "lot_size", "slippage_ticks",
    ),
)  # fmt: skip
def live_command(
    config: LiveConfig,
    ctx: typer.Context,
    param: ParamOpt = None,
    model: Annotated[
        str | None, typer.Option(help="--strategy ml: the registry model, NAME[@VERSION|@ALIAS].")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Name the run (default: generated).")] = None,
    seconds: SecondsOpt = None,
    confirm_mainnet: ConfirmOpt = False,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Start a live session: the node trades STRATEGY on the exchange (or, with --paper,
    on Sapphire's simulated venue fed the exchange's bars); Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return
    from sapphire.live import LiveSession

    try:
        params = parse_params(param)
        if model is not None:
            params["model"] = model
        config = replace(config, params=params)
        confirmed = _mainnet_confirmed(config, confirm_mainnet)
        session = LiveSession.start(config, run_id=run_id, confirm_mainnet=confirmed)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    node_services(session, "paper" if session.config.paper else "live", metrics_port, metrics_host)
    _drive(session, seconds, None, as_json)


@live_app.command("resume")
def live_resume_command(
    run_id: Annotated[str, typer.Argument(help="The live run to resume.")],
    seconds: SecondsOpt = None,
    on_exit: OnExitOpt = None,
    confirm_mainnet: ConfirmOpt = False,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Resume a live run after a stop or a crash: rebuild from the store, reconcile with
    the exchange (orders, fills, position, balance), continue."""
    from sapphire.live import LiveSession
    from sapphire.store import Store

    try:
        if on_exit is not None and on_exit not in ("cancel", "leave"):
            raise ValueError(f"--on-exit {on_exit!r} is invalid: expected cancel or leave")
        info = Store().run(run_id)
        if info.mode.value != "LIVE":
            raise ValueError(f"run {run_id!r} is a {info.mode.value} run, not a live run")
        config = LiveConfig.from_mapping(
            {k: v for k, v in info.config.items() if k not in ("run_dir", "start_cash")}
        )
        confirmed = _mainnet_confirmed(config, confirm_mainnet)
        session = LiveSession.resume(run_id, confirm_mainnet=confirmed)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    node_services(session, "paper" if session.config.paper else "live", metrics_port, metrics_host)
    _drive(session, seconds, on_exit, as_json)
