"""The ML step of `sapphire demo`: train, register, promote, trade out of sample."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console
from rich.table import Table

from sapphire.cli.common import ML_STAGES, format_number

console = Console()


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
    wide = Console(width=max(console.width, 120))
    wide.print(table)
    console.print(
        f"{len(walk.retrain)} walk-forward retrains; CPCV figures are means over "
        f"{int(cv.get('n_paths', 0))} paths. Model report: [bold]{path}[/]",
        soft_wrap=True,
    )
