"""`sapphire optimize`: search a strategy's parameters; `resume NAME`; `list`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
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
    changed_options,
    parse_space,
    run_options,
)
from sapphire.engine.config import RunConfig

if TYPE_CHECKING:
    from sapphire.optimize.study import StudyResult

optimize_app = typer.Typer(
    help="Search a strategy's parameters (Optuna), resume and list stored studies.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _interpret_dsr(dsr: float | None) -> str:
    if dsr is None:
        return "DSR: not computable (no complete trial with returns)"
    verdict = (
        "the best Sharpe is unlikely to be luck from the number of trials"
        if dsr >= 0.95
        else "the best Sharpe could well be luck from trying many parameter sets"
    )
    return f"DSR {dsr:.3f}: {verdict}"


def _interpret_pbo(pbo: float | None) -> str:
    if pbo is None:
        return "PBO: not computable (needs at least 2 complete trials)"
    if pbo < 0.2:
        verdict = "low risk that the in-sample winner is overfit"
    elif pbo < 0.5:
        verdict = "moderate risk of overfitting"
    else:
        verdict = "the in-sample winner tends to lose out of sample: likely overfit"
    return f"PBO {pbo:.3f}: {verdict}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def print_summary(result: StudyResult) -> None:
    """Trial counts (infeasible and ruined apart), the settings caption and the caveats
    (a model scored in-sample), best trial metrics, DSR/PBO with a one-line reading, and
    the top 10 distinct parameter sets (or the Pareto front)."""
    always = ("complete", "infeasible", "ruined")  # failed and pruned: when there are some
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items() if v or k in always)
    size = result.config.get("space_size")
    space = f" of {size:,} valid parameter sets" if size else ""
    console.print(
        f"Study [bold]{result.name}[/]: {result.strategy}, {result.n_trials} trials{space} "
        f"({counts}), {result.elapsed_s:.1f} s",
        soft_wrap=True,
    )
    caption = result.caption()
    if caption is not None:
        console.print(caption, highlight=False, soft_wrap=True)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    best = result.best_trial
    if best is None:
        console.print("[yellow]no trial completed[/]: relax --min-trades or widen --space")
        return
    console.print(
        metrics_table({f"trial {best.number}": best.metrics}, f"Best trial {best.params}")
    )
    console.print(_interpret_dsr(result.dsr))
    console.print(_interpret_pbo(result.pbo))
    top = result.top_trials()
    if len(result.objectives) > 1:
        title = f"Pareto front ({len(result.best_trials)} parameter sets), first {len(top)}"
    else:
        title = f"Top {len(top)} parameter sets (the best trial of each)"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    for name in result.objectives:
        table.add_column(name, justify="right")
    names = list(best.params)
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("trades", justify="right")
    for t in top:
        values = [_fmt(v) for v in (t.values or [])]
        table.add_row(
            str(t.number),
            *values,
            *(_fmt(t.params.get(k)) for k in names),
            _fmt(int(t.metrics.get("n_trades", 0))),
        )
    console.print(table)


def _emit(result: StudyResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
    else:
        print_summary(result)


def _interrupted() -> typer.Exit:
    return typer.Exit(code=130)


@optimize_app.callback(invoke_without_command=True)
@run_options(skip=EVENT_ONLY)
def optimize_command(
    config: RunConfig,
    ctx: typer.Context,
    strategy: Annotated[
        str | None, typer.Option(help="Built-in name, module:Class or file.py:Class.")
    ] = None,
    data: DataOpt = "sample",
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            "-o",
            help="Objective (repeat for several): sharpe, sortino, calmar, total_return, "
            "profit_factor, max_drawdown, expectancy or any metric (metric:min to minimise).",
        ),
    ] = None,
    trials: Annotated[int, typer.Option(help="Total number of trials.")] = 100,
    jobs: JobsOpt = 0,
    ray_address: RayOpt = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: generated).")] = None,
    sampler: Annotated[str, typer.Option(help="tpe, cmaes, random, grid, nsga2 or nsga3.")] = "tpe",
    seed: Annotated[int | None, typer.Option(help="Seed for a reproducible study.")] = None,
    min_trades: Annotated[int, typer.Option(help="Trials with fewer trades are infeasible.")] = 1,
    param: ParamOpt = None,
    space: Annotated[
        list[str] | None,
        typer.Option(help="Search range name=low:high[:step|:log] or choices name=a,b,c."),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Stop hopeless trials early (on 25%/50% of the bars).")
    ] = False,
    storage: StorageOpt = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Optimise a strategy's parameters and store the study (see subcommands too)."""
    if ctx.invoked_subcommand is not None:
        return
    if strategy is None:
        console.print(ctx.get_help())
        raise fail("--strategy is required (or use a subcommand: resume, list, report)")
    from sapphire.data import DataError
    from sapphire.optimize.study import optimize

    try:
        options = changed_options(config)
        fixed: dict[str, Any] = parse_params(param)
        clash = sorted(set(fixed) & set(options))
        if clash:
            raise ValueError(f"--param {clash[0]} clashes with the backtest option --{clash[0]}")
        result = optimize(
            data,
            strategy,
            objectives=objective or ["sharpe"],
            trials=trials,
            sampler=sampler,
            jobs=jobs,
            ray_address=ray_address,
            study=study,
            storage=storage,
            seed=seed,
            min_trades=min_trades,
            space=parse_space(space),
            prune=prune,
            progress=progress and not as_json,
            **options,
            **fixed,
        )
    except KeyboardInterrupt:
        raise _interrupted() from None
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    _emit(result, as_json)


@optimize_app.command("resume")
def resume_command(
    name: Annotated[str, typer.Argument(help="Name of the stored study.")],
    trials: Annotated[
        int | None, typer.Option(help="Total number of trials (default: the study's).")
    ] = None,
    jobs: JobsOpt = 0,
    ray_address: RayOpt = None,
    storage: StorageOpt = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Continue a stored study with its stored configuration."""
    from sapphire.data import DataError
    from sapphire.optimize.study import resume

    try:
        result = resume(
            name,
            trials=trials,
            storage=storage,
            jobs=jobs,
            ray_address=ray_address,
            progress=progress and not as_json,
        )
    except KeyboardInterrupt:
        raise _interrupted() from None
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    _emit(result, as_json)


@optimize_app.command("list")
def list_command(storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """List the stored studies."""
    from sapphire.optimize.study import list_studies

    try:
        studies = list_studies(storage)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(studies)
        return
    if not studies:
        console.print("no studies yet: run `sapphire optimize --strategy NAME`")
        return
    table = Table(title="Studies", title_justify="left")
    for col in ("name", "strategy", "objectives", "trials", "updated"):
        table.add_column(col, justify="right" if col == "trials" else "left")
    for s in studies:
        target = s.get("target_trials")
        trials = f"{s['n_trials']}" + (f"/{target}" if target else "")
        table.add_row(s["name"], s["strategy"], ", ".join(s["objectives"]), trials,
                      s["updated_at"][:19])  # fmt: skip
    console.print(table)


__all__ = ["err_console", "optimize_app", "parse_space", "print_summary"]
