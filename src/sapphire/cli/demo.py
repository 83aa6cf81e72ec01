"""`sapphire demo`: the built-in strategies on the bundled month, then the ML step (train,
register, promote, trade out of sample)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import typer
from rich.table import Table

from sapphire.cli.common import ML_STAGES, console, format_number, metrics_table, wide_console


def demo_command(
    fee: Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")] = 0.0005,
    ml: Annotated[bool, typer.Option(help="Also train, register and trade an ML model.")] = True,
) -> None:
    """Backtest the built-in strategies on the bundled BTC month and write a report; then
    train an ML model, promote it and trade it out of sample."""
    from rich.progress import Progress

    from sapphire.backtest import Backtest
    from sapphire.strategy import builtin_strategies

    names = list(builtin_strategies())
    results = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Loading the bundled FTX BTC-PERP month", total=len(names) + 2)
        from sapphire.data import load_ohlcv

        frame, data_report = load_ohlcv("sample")
        progress.advance(task)
        for name in names:
            progress.update(task, description=f"Backtesting {name}")
            results[name] = Backtest(
                frame,
                name,
                symbol="BTC-PERP",
                fee=fee,
                size=0.95,
                size_mode="equity",
            ).run()
            progress.advance(task)
        best = max(results, key=lambda k: _sort_key(results[k].metrics.get("sharpe")))
        progress.update(task, description=f"Writing the HTML report of {best}")
        path = results[best].plot()
        progress.advance(task)
    console.print(data_report.summary())
    wide_console.print(
        metrics_table(
            {k: r.metrics for k, r in results.items()},
            f"Built-in strategies on FTX BTC-PERP 1m, fee {fee:.2%} per fill, 95% of equity",
        )
    )
    console.print(results[best].caption(), highlight=False, soft_wrap=True)
    console.print(f"Report ({best}, best Sharpe): [bold]{path}[/]", soft_wrap=True)
    if ml:
        demo_ml(fee)


def _sort_key(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


DEMO_MODEL = "demo-btc"


def demo_ml(fee: float) -> None:
    """The demo's ML step: train on the first 60% of the bundled month, promote to champion,
    then trade it on the whole month with walk-forward retraining and on the last 40% as
    registered, printing the out-of-sample metrics."""

    from rich.progress import Progress

    from sapphire.ml.evaluate import evaluate
    from sapphire.ml.pipeline import TrainConfig, load_bars, train
    from sapphire.ml.strategy import default_registry

    bars = load_bars("sample")
    cut = int(len(bars) * 0.6)
    first = replace(
        bars, time=bars.time[:cut], open=bars.open[:cut], high=bars.high[:cut],
        low=bars.low[:cut], close=bars.close[:cut], volume=bars.volume[:cut],
    )  # fmt: skip
    later = replace(
        bars, time=bars.time[cut:], open=bars.open[cut:], high=bars.high[cut:],
        low=bars.low[cut:], close=bars.close[cut:], volume=bars.volume[cut:],
    )  # fmt: skip
    registry = default_registry()
    config = TrainConfig(fee=fee)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("ML: training with CPCV on the first 60% of the month", total=4)

        def update(stage: str, done: int, total: int) -> None:
            progress.update(task, description=f"ML: {ML_STAGES.get(stage, stage)} {done}/{total}")

        result = train(first, config, progress=update)
        version = result.register(DEMO_MODEL, registry)
        registry.promote(f"{DEMO_MODEL}@{version.version}", "champion")
        progress.advance(task)
        progress.update(task, description="ML: champion on the last 40% (out of sample)")
        held_out = evaluate(f"{DEMO_MODEL}@champion", later, registry=registry)
        progress.advance(task)
        progress.update(task, description="ML: walk-forward retraining over the whole month")
        walk = evaluate(f"{DEMO_MODEL}@champion", bars, retrain="sliding", train_bars=15_000,
                        retrain_every=5_000, registry=registry, record=False)  # fmt: skip
        progress.advance(task)
        progress.update(task, description="ML: writing the model report")
        path = held_out.report()
        progress.advance(task)
    cv = result.metrics["cv"]
    table = Table(
        title=f"ML: {DEMO_MODEL} v{version.version} (LightGBM, triple-barrier labels, "
        f"{len(result.lineage['features'])} features), out of sample, fee {fee:.2%} per fill",
        title_justify="left",
    )
    table.add_column("metric", style="bold")
    for col in ("CPCV (first 60%)", "champion, last 40%", "walk-forward retrained"):
        table.add_column(col, justify="right")
    from sapphire.backtest.metrics import format_metric

    for label, key in (("rank IC", "rank_ic"), ("accuracy", "accuracy")):
        values = (cv.get(key), held_out.ic.get(key, held_out.prediction.get(key)),
                  walk.ic.get(key, walk.prediction.get(key)))  # fmt: skip
        table.add_row(label, *(format_number(v) for v in values))
    for label, key in (("Sharpe", "sharpe"), ("total return", "total_return"),
                       ("max drawdown", "max_drawdown"), ("trades", "n_trades")):  # fmt: skip
        values = (cv.get(f"path_{key}_mean"), held_out.backtest.metrics[key],
                  walk.backtest.metrics[key])  # fmt: skip
        table.add_row(label, *(format_metric(key, v) for v in values))
    wide_console.print(table)
    console.print(
        f"{len(walk.retrain)} walk-forward retrains; CPCV figures are means over "
        f"{int(cv.get('n_paths', 0))} paths. Model report: [bold]{path}[/]",
        soft_wrap=True,
    )
