"""`sapphire backtest`, `sapphire demo` and `sapphire strategies`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.table import Table

from sapphire.cli.options import (
    CashOpt,
    DataOpt,
    EndOpt,
    EngineOpt,
    FeeOpt,
    FillAtOpt,
    FundingOpt,
    GapsOpt,
    IntrabarOpt,
    JsonOpt,
    LeverageOpt,
    LiquidationFeeOpt,
    LotSizeOpt,
    MaintenanceMarginOpt,
    MakerFeeOpt,
    ParamOpt,
    ResampleOpt,
    RiskProfileOpt,
    SizeModeOpt,
    SizeOpt,
    SlippageBpsOpt,
    SlippageTicksOpt,
    StartOpt,
    StopLossOpt,
    StrategyOpt,
    TakeProfitOpt,
    TakerFeeOpt,
    TickSizeOpt,
    TimeframeOpt,
    TrailingStopOpt,
    VenueOpt,
    backtest_kwargs,
)

console = Console()
# Wide enough for the side-by-side demo table when stdout is not a terminal.
wide_console = Console(width=max(console.width, 120))
err_console = Console(stderr=True)

SAMPLE = "sample"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def parse_params(items: list[str] | None) -> dict[str, str]:
    """Turn `--param k=v` options into a dict (values are coerced by the strategy)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r} is not of the form name=value")
        out[key.strip()] = value.strip()
    return out


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def _data_source(data: str) -> Any:
    if data == SAMPLE:
        from sapphire.data.samples import SAMPLE_PATH

        return SAMPLE_PATH
    return data


def metrics_table(columns: dict[str, dict[str, float]], title: str) -> Table:
    """A Rich table with one metric per row and one column per run."""
    from sapphire.backtest.metrics import METRIC_KEYS, format_metric

    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    for name in columns:
        table.add_column(name, justify="right")
    for key in METRIC_KEYS:
        table.add_row(key, *(format_metric(key, m.get(key, math.nan)) for m in columns.values()))
    return table


def backtest_command(
    data: DataOpt = SAMPLE,
    strategy: StrategyOpt = "sma_cross",
    param: ParamOpt = None,
    cash: CashOpt = 10_000.0,
    size: SizeOpt = 1.0,
    size_mode: SizeModeOpt = "fixed",
    leverage: LeverageOpt = None,
    fee: FeeOpt = 0.0,
    maker_fee: MakerFeeOpt = None,
    taker_fee: TakerFeeOpt = None,
    slippage_bps: SlippageBpsOpt = 0.0,
    slippage_ticks: SlippageTicksOpt = 0,
    tick_size: TickSizeOpt = None,
    lot_size: LotSizeOpt = None,
    stop_loss: StopLossOpt = None,
    take_profit: TakeProfitOpt = None,
    trailing_stop: TrailingStopOpt = None,
    intrabar: IntrabarOpt = "path",
    fill_at: FillAtOpt = "open",
    funding: FundingOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    venue: VenueOpt = None,
    timeframe: TimeframeOpt = None,
    resample: ResampleOpt = None,
    gaps: GapsOpt = "keep",
    engine: EngineOpt = "vector",
    risk_profile: RiskProfileOpt = None,
    maintenance_margin: MaintenanceMarginOpt = None,
    liquidation_fee: LiquidationFeeOpt = None,
    model: Annotated[
        str | None, typer.Option(help="--strategy ml: the registry model, NAME[@VERSION|@ALIAS].")
    ] = None,
    trades_out: Annotated[Path | None, typer.Option(help="Write the trades to this CSV.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a strategy on bars and print its metrics."""
    from sapphire.backtest import Backtest
    from sapphire.data import DataError

    try:
        params: dict[str, Any] = parse_params(param)
        if model is not None:
            params["model"] = model
        bt = Backtest(
            _data_source(data),
            strategy,
            symbol="BTC-PERP (sample)" if data == SAMPLE else None,
            start=start,
            end=end,
            engine=cast(Literal["vector", "event"], engine),
            risk_profile=_risk_profile(risk_profile),
            maintenance_margin=maintenance_margin,
            liquidation_fee=liquidation_fee,
            **backtest_kwargs(
                cash=cash,
                size=size,
                size_mode=size_mode,
                leverage=leverage,
                fee=fee,
                maker_fee=maker_fee,
                taker_fee=taker_fee,
                slippage_bps=slippage_bps,
                slippage_ticks=slippage_ticks,
                tick_size=tick_size,
                lot_size=lot_size,
                stop_loss=stop_loss,
                take_profit=take_profit,
                trailing_stop=trailing_stop,
                intrabar=intrabar,
                fill_at=fill_at,
                funding=funding,
                venue=venue,
                timeframe=timeframe,
                resample=resample,
                gaps=gaps,
            ),
            **params,
        )
        result = bt.run()
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None

    monitor = bt.event_run.monitor if bt.event_run is not None else None
    for event in monitor.events if monitor is not None else ():
        if getattr(event, "kind", None) is not None:
            err_console.print(f"[yellow]risk:[/] {event.reason}", highlight=False)

    rejected = result.orders[result.orders["status"] == "rejected"]
    if len(rejected):
        reasons = ", ".join(f"{k}: {v}" for k, v in rejected["reason"].value_counts().items())
        err_console.print(
            f"[yellow]warning:[/] {len(rejected)} orders rejected ({reasons}); "
            "raise --cash or --leverage, or lower --size",
            highlight=False,
        )
    outputs: dict[str, str] = {}
    if trades_out is not None:
        trades_out.parent.mkdir(parents=True, exist_ok=True)
        result.trades.to_csv(trades_out, index=False)
        outputs["trades_out"] = str(trades_out)
    if report is not None:
        outputs["report"] = str(result.plot(report))
    if as_json:
        print(json.dumps(_json_safe({**result.summary(), **outputs})))
        return
    title = f"{result.strategy} {result.params} on {result.symbol}"
    console.print(metrics_table({result.strategy: result.metrics}, title))
    for key, path in outputs.items():
        console.print(f"{key.replace('_', ' ')}: {path}", soft_wrap=True)


def _risk_profile(value: str | None) -> Any:
    """A built-in profile name as is, or a RiskProfile read from a YAML file."""
    if value is None or not value.endswith((".yaml", ".yml")):
        return value
    from sapphire.risk import RiskProfile

    return RiskProfile.from_yaml(Path(value).read_text(encoding="utf-8"))


def demo_command(
    fee: Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")] = 0.0005,
    ml: Annotated[bool, typer.Option(help="Also train, register and trade an ML model.")] = True,
) -> None:
    """Backtest the built-in strategies on the bundled BTC month and write a report; then
    train an ML model, promote it and trade it out of sample."""
    from rich.progress import Progress

    from sapphire.backtest import Backtest
    from sapphire.data.samples import SAMPLE_PATH
    from sapphire.strategy import builtin_strategies

    names = list(builtin_strategies())
    results = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Loading the bundled FTX BTC-PERP month", total=len(names) + 2)
        from sapphire.data import load_ohlcv

        frame, data_report = load_ohlcv(SAMPLE_PATH)
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
    console.print(f"Report ({best}, best Sharpe): [bold]{path}[/]", soft_wrap=True)
    if ml:
        from sapphire.cli.ml_demo import demo_ml

        demo_ml(fee)


def _sort_key(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


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
