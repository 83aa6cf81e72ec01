"""`sapphire walkforward`: walk-forward optimisation from the command line.

The data and backtest options (--cash, --fee, --size, --stop-loss, --start, ...) are the
shared ones of `sapphire backtest` (`sapphire.cli.options`); --space, --jobs,
--ray-address and --storage are those of `sapphire optimize`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sapphire.cli.common import console, err_console, fail, metrics_table, parse_params, print_json
from sapphire.cli.options import (
    EVENT_ONLY,
    DataOpt,
    JobsOpt,
    JsonOpt,
    ParamOpt,
    ProgressOpt,
    RayOpt,
    StorageOpt,
    StrategyOpt,
    changed_options,
    parse_space,
    run_options,
)
from sapphire.engine.config import RunConfig

wide_console = Console(width=max(console.width, 140))


def _folds_table(payload: dict[str, Any]) -> Table:
    from sapphire.backtest.metrics import format_metric

    table = Table(title=f"Walk-forward {payload['study']}", title_justify="left")
    for column in ("fold", "test window", "best parameters", "IS return", "OOS return",
                   "OOS sharpe", "OOS trades", "efficiency", "model-trained OOS bars"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("test window",
                         "best parameters") else "right")  # fmt: skip
    for fold in payload["folds"]:
        params = fold["best_params"]
        shown = "—" if params is None else ", ".join(f"{k}={v}" for k, v in params.items())
        ins, oos = fold["in_sample"], fold["out_of_sample"]
        eff = fold["efficiency"]
        table.add_row(
            str(fold["fold"]),
            f"{fold['test_start'][:16].replace('T', ' ')} → {fold['test_end'][11:16]}"
            if fold["test_start"][:10] == fold["test_end"][:10]
            else f"{fold['test_start'][:16].replace('T', ' ')} → "
            f"{fold['test_end'][:16].replace('T', ' ')}",
            shown,
            format_metric("total_return", ins.get("total_return")),
            format_metric("total_return", oos.get("total_return")),
            format_metric("sharpe", oos.get("sharpe")),
            format_metric("n_trades", oos.get("n_trades")),
            "—" if eff is None or not math.isfinite(eff) else f"{eff:.2f}",
            # an out-of-sample window scored by a model trained on it is not out of sample
            str((fold.get("model_overlap") or {}).get("test_window_bars", "—")),
        )
    return table


@run_options(skip=EVENT_ONLY)
def walkforward_command(
    config: RunConfig,
    strategy: StrategyOpt = "sma_cross",
    data: DataOpt = "sample",
    train: Annotated[
        str, typer.Option(help="Train window: a duration (30d, 12h) or a bar count.")
    ] = "30d",
    test: Annotated[str, typer.Option(help="Test window: a duration or a bar count.")] = "7d",
    step: Annotated[
        str | None, typer.Option(help="Shift between folds (default: the test window).")
    ] = None,
    anchored: Annotated[
        bool, typer.Option("--anchored", help="Every train window starts at the first bar.")
    ] = False,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective", "-o", help="Objective (repeat for several), as `sapphire optimize`."
        ),
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials per fold.")] = 50,
    sampler: Annotated[str, typer.Option(help="tpe, cmaes, random, grid, nsga2 or nsga3.")] = "tpe",
    jobs: JobsOpt = 1,
    ray_address: RayOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed of fold 1 (fold k: seed+k-1).")] = None,
    min_trades: Annotated[int, typer.Option(help="Trials with fewer trades are infeasible.")] = 1,
    param: ParamOpt = None,
    space: Annotated[
        list[str] | None,
        typer.Option(help="Search range name=low:high[:step|:log] or choices name=a,b,c."),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Name; the folds are stored as studies NAME-fold<k>.")
    ] = None,
    storage: StorageOpt = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Walk-forward analysis: optimise on each train window, trade the next test window."""
    from sapphire.data import DataError
    from sapphire.optimize.walkforward import walk_forward

    def window(value: str) -> str | int:
        return int(value) if value.strip().isdigit() else value

    try:
        options = changed_options(config)
        fixed: dict[str, Any] = parse_params(param)
        clash = sorted(set(fixed) & set(options))
        if clash:
            raise ValueError(f"--param {clash[0]} clashes with the backtest option --{clash[0]}")
        result = walk_forward(
            data,
            strategy,
            train=window(train),
            test=window(test),
            step=None if step is None else window(step),
            anchored=anchored,
            objectives=tuple(objective or ["sharpe"]),
            trials=trials,
            sampler=sampler,
            seed=seed,
            jobs=jobs,
            ray_address=ray_address,
            min_trades=min_trades,
            space=parse_space(space) or None,
            progress=progress,
            study=study,
            storage=storage,
            **options,
            **fixed,
        )
    except KeyboardInterrupt:
        err_console.print(
            "\ninterrupted: the folds' studies run so far are stored (sapphire optimize list)",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None

    payload = result.to_json()
    if report is not None:
        payload["report"] = str(result.plot(report))
    if as_json:
        print_json(payload)
        return
    wide_console.print(_folds_table(payload))
    caption = result.caption()
    if caption is not None:
        console.print(caption, highlight=False, soft_wrap=True)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(metrics_table({"out of sample": result.metrics}, "Stitched out-of-sample"))
    eff = result.efficiency
    console.print(
        f"walk-forward efficiency: {'—' if eff is None else f'{eff:.2f}'}; "
        f"{result.n_trials} trials in {len(result.folds)} folds, {result.elapsed_s:.1f} s; "
        f"report: sapphire optimize report {result.name} --html report.html",
        soft_wrap=True,
        highlight=False,
    )
    if "report" in payload:
        console.print(f"report: {payload['report']}", soft_wrap=True)
