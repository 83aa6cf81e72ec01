"""`sapphire backtest` and `sapphire strategies`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sapphire.cli.common import (
    console,
    err_console,
    fail,
    metrics_table,
    parse_params,
    print_json,
)
from sapphire.cli.options import DataOpt, JsonOpt, ParamOpt, StrategyOpt, run_options
from sapphire.engine.config import RunConfig


@run_options()
def backtest_command(
    config: RunConfig,
    data: DataOpt = "sample",
    strategy: StrategyOpt = "sma_cross",
    param: ParamOpt = None,
    model: Annotated[
        str | None, typer.Option(help="--strategy ml: the registry model, NAME[@VERSION|@ALIAS].")
    ] = None,
    trades_out: Annotated[Path | None, typer.Option(help="Write the trades to this CSV.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy (vectorised, or event-driven from file.py:Class) on bars and
    print its metrics."""
    from sapphire.backtest import Backtest
    from sapphire.data import DataError

    try:
        params = parse_params(param)
        if model is not None:
            params["model"] = model
        bt = Backtest(data, strategy, config=config, **params)
        result = bt.run()
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None

    monitor = bt.event_run.monitor if bt.event_run is not None else None
    for event in monitor.events if monitor is not None else ():
        if getattr(event, "kind", None) is not None:
            err_console.print(f"[yellow]risk:[/] {event.reason}", highlight=False)

    from sapphire.engine.risk_monitor import refusal_summary

    summary = refusal_summary(_refusals(bt, result))
    if summary is not None:
        err_console.print(
            f"[yellow]warning:[/] {summary}; raise --cash or --leverage, or lower --size",
            highlight=False,
        )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    outputs: dict[str, str] = {}
    if trades_out is not None:
        trades_out.parent.mkdir(parents=True, exist_ok=True)
        result.trades.to_csv(trades_out, index=False)
        outputs["trades_out"] = str(trades_out)
    if report is not None:
        outputs["report"] = str(result.plot(report))
    if as_json:
        print_json({**result.summary(), **outputs})
        return
    title = f"{result.strategy} {result.params} on {result.symbol}"
    console.print(metrics_table({result.strategy: result.metrics}, title))
    console.print(result.caption(), highlight=False, soft_wrap=True)
    for key, path in outputs.items():
        console.print(f"{key.replace('_', ' ')}: {path}", soft_wrap=True)


def _refusals(bt: Any, result: Any) -> dict[str, int]:
    """The run's refused orders by main reason: the event engine's in the risk engine's or
    venue's own words (`EventRun.refusals`), the kernel's by its rejection reason."""
    from sapphire.engine.risk_monitor import refusal_counts

    rejected = result.orders[result.orders["status"] == "rejected"]
    run = bt.event_run
    words = [reason for _bar, _cid, reason in run.refusals] if run is not None else []
    # rows the event engine refused itself (no stop to size from, a bad entry price)
    own = rejected["reason"].isin(["no stop-loss to size from", "invalid entry price"])
    rows = rejected[own] if words else rejected
    return refusal_counts([*words, *rows["reason"]])


def strategies_command() -> None:
    """List the built-in strategies and their parameters."""
    from sapphire.strategy import builtin_strategies

    table = Table(title="Built-in strategies", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("what")
    table.add_column("parameters (default, range)")
    from sapphire.strategy.registry import model_strategies

    for name, cls in {**builtin_strategies(), **model_strategies()}.items():
        params = []
        for p in cls.params().values():
            bounds = "" if p.low is None and p.high is None else f" [{p.low}, {p.high}]"
            params.append(f"{p.name}={p.default!r}{bounds}")
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        table.add_row(name, doc, "\n".join(params))
    console.print(table)
