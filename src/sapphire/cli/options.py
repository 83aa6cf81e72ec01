"""Command-line options shared by the commands that run backtests (backtest, optimize...).

Each alias is an annotated type: a command declares `cash: CashOpt = 10_000.0` and
gets the same `--cash` option and help everywhere; `backtest_kwargs(...)` turns the
values into keyword arguments of `Backtest` / `sapphire.optimize.optimize`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DataOpt = Annotated[
    str, typer.Option(help="CSV/Parquet/Feather file, catalog symbol, or 'sample'.")
]
StrategyOpt = Annotated[str, typer.Option(help="Built-in name, module:Class or file.py:Class.")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Strategy parameter name=value.")
]
CashOpt = Annotated[float, typer.Option(help="Starting cash (quote currency).")]
SizeOpt = Annotated[float, typer.Option(help="Position size; meaning set by --size-mode.")]
SizeModeOpt = Annotated[
    str, typer.Option(help="fixed (base qty), notional (quote amount), equity (fraction).")
]
LeverageOpt = Annotated[
    float | None, typer.Option(help="Max notional / equity; default: no margin limit.")
]
FeeOpt = Annotated[float, typer.Option(help="Fee per fill, fraction of notional.")]
MakerFeeOpt = Annotated[float | None, typer.Option(help="Maker fee (overrides --fee).")]
TakerFeeOpt = Annotated[float | None, typer.Option(help="Taker fee (overrides --fee).")]
SlippageBpsOpt = Annotated[float, typer.Option(help="Slippage on taker fills, in bps.")]
SlippageTicksOpt = Annotated[int, typer.Option(help="Slippage on taker fills, in ticks.")]
TickSizeOpt = Annotated[float | None, typer.Option(help="Price tick of the instrument.")]
LotSizeOpt = Annotated[float | None, typer.Option(help="Quantity step of the instrument.")]
StopLossOpt = Annotated[float | None, typer.Option(help="Stop-loss, fraction of entry.")]
TakeProfitOpt = Annotated[float | None, typer.Option(help="Take-profit, fraction.")]
TrailingStopOpt = Annotated[float | None, typer.Option(help="Trailing stop, fraction.")]
IntrabarOpt = Annotated[str, typer.Option(help="Intrabar path: path or worst.")]
FillAtOpt = Annotated[str, typer.Option(help="open (next bar) or close (signal bar).")]
FundingOpt = Annotated[Path | None, typer.Option(help="Funding-rate file for perpetuals.")]
StartOpt = Annotated[str | None, typer.Option(help="First bar time (UTC), inclusive.")]
EndOpt = Annotated[str | None, typer.Option(help="End time (UTC), exclusive.")]
VenueOpt = Annotated[str | None, typer.Option(help="Catalog venue (for a symbol).")]
TimeframeOpt = Annotated[str | None, typer.Option(help="Catalog timeframe (for a symbol).")]
ResampleOpt = Annotated[str | None, typer.Option(help="Resample bars first, e.g. 1h.")]
GapsOpt = Annotated[str, typer.Option(help="Gaps in the data: keep, ffill or fail.")]
EngineOpt = Annotated[
    str,
    typer.Option(help="vector (compiled kernel) or event (the trading node; same trades)."),
]
RiskProfileOpt = Annotated[
    str | None,
    typer.Option(
        help="Event engine: a risk profile (conservative, aggressive or a YAML file): "
        "pre-trade checks, and portfolio limits fed each bar (halt + kill switch)."
    ),
]
MaintenanceMarginOpt = Annotated[
    float | None,
    typer.Option(
        help="Event engine: liquidate when equity < |qty| * price * this rate (e.g. 0.005)."
    ),
]
LiquidationFeeOpt = Annotated[
    float | None,
    typer.Option(help="Event engine: liquidation fee, fraction of notional (default 0.005)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def backtest_kwargs(
    *,
    cash: float,
    size: float,
    size_mode: str,
    leverage: float | None,
    fee: float,
    maker_fee: float | None,
    taker_fee: float | None,
    slippage_bps: float,
    slippage_ticks: int,
    tick_size: float | None,
    lot_size: float | None,
    stop_loss: float | None,
    take_profit: float | None,
    trailing_stop: float | None,
    intrabar: str,
    fill_at: str,
    funding: Path | None,
    venue: str | None,
    timeframe: str | None,
    resample: str | None,
    gaps: str,
) -> dict[str, Any]:
    """The backtest options of a command as `Backtest` keyword arguments."""
    return {
        "cash": cash,
        "size": size,
        "size_mode": size_mode,
        "leverage": leverage,
        "fee": fee,
        "maker_fee": maker_fee,
        "taker_fee": taker_fee,
        "slippage_bps": slippage_bps,
        "slippage_ticks": slippage_ticks,
        "tick_size": tick_size,
        "lot_size": lot_size,
        "stop_loss": stop_loss,
        "take_profit": take_profit,
        "trailing_stop": trailing_stop,
        "intrabar": intrabar,
        "fill_at": fill_at,
        "funding": funding,
        "venue": venue,
        "timeframe": timeframe,
        "resample": resample,
        "gaps": gaps,
    }
