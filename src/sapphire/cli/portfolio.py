"""`sapphire portfolio`: backtests over several instruments and strategies, parameter
sweeps, and allocation (walk-forward, against equal weight)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sapphire.cli.common import console, fail, metrics_table, parse_params, print_json
from sapphire.cli.options import parse_space

portfolio_app = typer.Typer(help="Portfolios: multi-instrument backtests, sweeps, allocation.")

DATA_HELP = "Bars of one instrument (a file); repeat for each instrument."


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@portfolio_app.command("backtest")
def backtest(
    strategy: Annotated[list[str], typer.Option("--strategy", help="Strategy name; repeatable.")],
    data: Annotated[list[Path], typer.Option("--data", help=DATA_HELP)],
    weights: Annotated[
        list[float] | None, typer.Option("--weights", help="Capital weight per strategy.")
    ] = None,
    cash: Annotated[float, typer.Option(help="Starting cash of the shared account.")] = 10_000.0,
    size_mode: Annotated[str, typer.Option(help="fixed, notional or equity.")] = "equity",
    size: Annotated[float, typer.Option(help="Size per position (see --size-mode).")] = 0.25,
    fee: Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")] = 0.001,
    max_weight: Annotated[
        float | None, typer.Option(help="Largest position, fraction of equity.")
    ] = None,
    max_gross: Annotated[
        float | None, typer.Option(help="Largest gross exposure, fraction of equity.")
    ] = None,
    engine: Annotated[str, typer.Option(help="vector (compiled) or event (the node).")] = "vector",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Strategy parameter name=value.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Backtest strategies over several instruments with one shared cash account."""
    from sapphire.backtest.portfolio import PortfolioBacktest

    try:
        params = parse_params(param)
        per = {strategy[0]: params} if params else None
        result = PortfolioBacktest(
            list(data), strategy, weights=weights or None, params=per, cash=cash,
            size_mode=size_mode, size=size, fee=fee, max_weight=max_weight,
            max_gross=max_gross, engine=engine,
        ).run()  # fmt: skip
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        print_json(
            {"metrics": result.metrics, "trades": len(result.trades), "weights": result.weights}
        )
    else:
        console.print(metrics_table({"portfolio": result.metrics}, "Portfolio"))
        console.print(f"{len(result.trades)} trades on {', '.join(result.symbols)}")
    if report is not None:
        console.print(f"report: {result.plot(report)}")


@portfolio_app.command("sweep")
def sweep_cmd(
    strategy: Annotated[str, typer.Option("--strategy", help="Strategy name.")],
    data: Annotated[list[Path], typer.Option("--data", help=DATA_HELP)],
    grid: Annotated[list[str], typer.Option("--grid", help="name=a,b,c; repeat per parameter.")],
    cash: Annotated[float, typer.Option(help="Starting cash.")] = 10_000.0,
    fee: Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")] = 0.001,
    metric: Annotated[str, typer.Option(help="Metric to rank and map.")] = "sharpe",
    report: Annotated[
        Path | None, typer.Option(help="Write the heatmap report here (2+ parameters).")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print every combination as JSON.")
    ] = False,
) -> None:
    """Backtest a grid of parameters on every instrument in one compiled call."""
    from sapphire.backtest.sweep import sweep

    try:
        space = parse_space(grid)
        values = {k: [_number(str(x)) for x in v] for k, v in space.items() if isinstance(v, list)}
        if len(values) != len(space):
            raise ValueError("--grid takes name=a,b,c lists of values")
        result = sweep(list(data), strategy, values, cash=cash, fee=fee)
        best = result.best(metric)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    table = result.by_params()
    if json_out:
        print_json({"best": best, "combinations": table.to_dict(orient="records")})
    else:
        console.print(table.to_string(index=False))
        console.print(f"best by {metric}: {best}")
    if report is not None and len(values) >= 2:
        x, y = list(values)[:2]
        console.print(f"report: {result.plot(x, y, report, metric)}")


@portfolio_app.command("allocate")
def allocate_cmd(
    data: Annotated[list[Path], typer.Option("--data", help=DATA_HELP)],
    method: Annotated[str, typer.Option(help="equal, inverse_vol, risk_parity, hrp, ...")] = "hrp",
    resample: Annotated[str, typer.Option(help="Return period.")] = "1h",
    train: Annotated[int, typer.Option(help="Periods to fit on.")] = 168,
    step: Annotated[int, typer.Option(help="Periods between rebalances.")] = 24,
    cost: Annotated[float, typer.Option(help="Cost per unit of turnover.")] = 0.001,
    max_weight: Annotated[float | None, typer.Option(help="Largest weight.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print weights and metrics as JSON.")
    ] = False,
) -> None:
    """Weights by `method` on the latest window, and its walk-forward against equal weight."""
    import pandas as pd

    from sapphire.backtest.portfolio import load_instruments
    from sapphire.portfolio.allocation import allocate, walk_forward

    try:
        frames = load_instruments(list(data))
        closes = pd.DataFrame({k: f.set_index("timestamp")["close"] for k, f in frames.items()})
        returns = closes.dropna().resample(resample).last().pct_change().dropna()
        per_year = pd.Timedelta("365D") / pd.Timedelta(resample)
        wf = walk_forward(
            returns, method, train=train, step=step, cost=cost, max_weight=max_weight,
            periods_per_year=per_year,
        )  # fmt: skip
        weights = allocate(returns.iloc[-train:], method, max_weight=max_weight)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        print_json({"weights": weights.to_dict(), "walk_forward": wf.metrics})
    else:
        for name, w in weights.items():
            console.print(f"{name}: {w:.4f}")
        console.print(metrics_table(wf.metrics, f"Walk-forward {method} vs equal (out of sample)"))
    if report is not None:
        from sapphire.backtest.portfolio_report import write_allocation_report

        path = write_allocation_report(wf.equity, wf.weights, wf.metrics, report)
        console.print(f"report: {path}")


def _sources(data: list[str]) -> dict[str, str] | list[str]:
    """`--data` values: files (named by their stem), or NAME=file for each."""
    if not any("=" in d for d in data):
        return data
    out: dict[str, str] = {}
    for d in data:
        name, sep, path = d.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--data {d!r} is invalid: give every instrument as NAME=file")
        out[name] = path
    return out


@portfolio_app.command("rebalance")
def rebalance_cmd(
    data: Annotated[
        list[str], typer.Option("--data", help="Bars of one instrument: a file or NAME=file.")
    ],
    weights: Annotated[
        str | None, typer.Option(help="Target weights, e.g. ETH=0.6,ADA=0.4 (sum <= 1).")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="Or weights by equal, inverse_vol, risk_parity, hrp, ...")
    ] = None,
    every: Annotated[
        str, typer.Option(help="Schedule: a number of bars, or a period: 4h, 1D, 1W, 1M.")
    ] = "1D",
    drift: Annotated[
        float, typer.Option(help="Trade only weights off target by more than this.")
    ] = 0.0,
    lookback: Annotated[int, typer.Option(help="Returns the method is fitted on.")] = 100,
    max_weight: Annotated[float | None, typer.Option(help="Largest weight (method).")] = None,
    budget: Annotated[
        float, typer.Option(help="Fraction of the equity the method's weights share.")
    ] = 1.0,
    cash: Annotated[float, typer.Option(help="Starting cash of the shared account.")] = 10_000.0,
    fee: Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")] = 0.001,
    lot_size: Annotated[float, typer.Option(help="Quantity step (0: none).")] = 0.0,
    leverage: Annotated[
        float, typer.Option(help="Max notional / equity; 0: no margin limit.")
    ] = 1.0,
    risk_profile: Annotated[
        str | None, typer.Option(help="Pre-trade limits: conservative, aggressive or a YAML file.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Backtest holding target weights across instruments, rebalanced on a schedule
    through the node's pre-trade risk engine."""
    from sapphire.backtest.rebalance import run_rebalance
    from sapphire.engine.rebalance import parse_weights

    try:
        result = run_rebalance(
            _sources(data), weights=parse_weights(weights) if weights is not None else None,
            method=method, every=int(every) if every.isdigit() else every, drift=drift,
            lookback=lookback, max_weight=max_weight, budget=budget, cash=cash, fee=fee,
            lot_size=lot_size, leverage=leverage, risk_profile=risk_profile,
        )  # fmt: skip
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    refused = result.orders[result.orders["reason"] != ""]
    refusals = refused[["rebalance", "symbol", "reason"]].astype(str).to_dict("records")
    if json_out:
        print_json(
            {
                "metrics": result.metrics,
                "rebalances": len(result.rebalances),
                "orders": len(result.orders),
                "refused": refusals,
                "weights": result.weights,
            }
        )
    else:
        console.print(metrics_table({"portfolio": result.metrics}, "Rebalanced portfolio"))
        console.print(
            f"{len(result.rebalances)} rebalances, {len(result.orders)} orders "
            f"({len(refused)} refused) on {', '.join(result.symbols)}"
        )
        # one line per reason: its count, the first and last time it refused
        for reason, group in refused.groupby("reason", sort=False):
            first, last = group["rebalance"].iloc[0], group["rebalance"].iloc[-1]
            when = f"at {first}" if len(group) == 1 else f"{len(group)}x, {first} to {last}"
            symbols = ", ".join(dict.fromkeys(group["symbol"].astype(str)))
            console.print(f"refused ({symbols}) {when}: {reason}", soft_wrap=True)
    if report is not None:
        console.print(f"report: {result.plot(report)}")
