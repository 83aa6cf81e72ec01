"""What a backtest returns: trades, orders, fills, equity, metrics and a report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import pandas as pd

from sapphire.encoding import jsonable
from sapphire.strategy.base import Bars

TRADE_COLUMNS = [
    "entry_time",
    "exit_time",
    "side",
    "size",
    "entry_price",
    "exit_price",
    "pnl",
    "return",
    "fees",
    "funding",
    "exit_reason",
    "entry_bar",
    "exit_bar",
]


@dataclass(eq=False)
class BacktestResult:
    """The outcome of one backtest run.

    `trades` has one row per closed trade (columns `TRADE_COLUMNS`), `equity` the
    marked equity at each bar's close (UTC index), `metrics` the performance figures
    (see docs/backtest.md); `trades`, `orders` and `fills` are built on first access
    (an optimiser that reads only the metrics never pays for the tables).
    `warnings` are the caveats a reader must see beside the figures (results scored
    in-sample, a run stopped at zero equity...): the CLI prints them, `summary()` and the
    HTML report carry them.
    """

    strategy: str
    params: dict[str, Any]
    config: dict[str, Any]
    symbol: str
    bars: Bars
    equity: pd.Series
    metrics: dict[str, float]
    _trades: Callable[[], pd.DataFrame] = field(repr=False)
    _orders: Callable[[], pd.DataFrame] = field(repr=False)
    _fills: Callable[[], pd.DataFrame] = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    #: the bars scored by a model inside its training window (None: none; see the ml strategy)
    in_sample: dict[str, Any] | None = None
    #: the bar whose close found the equity at zero or below: nothing traded after it
    stopped_at: pd.Timestamp | None = None

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every closed trade: times, side, size, prices, pnl, fees, funding, exit reason."""
        return self._trades()

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every order: type, side, quantity, price, status and reason."""
        return self._orders()

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Every fill: time, side, quantity, price, fee and liquidity (maker/taker)."""
        return self._fills()

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown of equity from its running peak (initial cash is the first peak)."""
        initial = float(self.config["cash"])
        peak = self.equity.cummax().clip(lower=initial)
        return (self.equity / peak - 1.0).rename("drawdown")

    def plot(self, path: str | Path | None = None, *, open_browser: bool = False) -> Path:
        """Write the interactive HTML report and return its path."""
        from sapphire.backtest.report import write_report

        return write_report(self, path, open_browser=open_browser)

    def summary(self) -> dict[str, Any]:
        """Return strategy, parameters and metrics as one JSON-ready dict (times as ISO
        text, NaN and infinite metrics as None; see `sapphire.encoding.jsonable`)."""
        summary = {
            "strategy": self.strategy,
            "symbol": self.symbol,
            "params": self.params,
            "start": self.equity.index[0] if len(self.equity) else None,
            "end": self.equity.index[-1] if len(self.equity) else None,
            "bars": len(self.equity),
            "metrics": self.metrics,
            "warnings": self.warnings,
            "in_sample": self.in_sample,
            "stopped_at": self.stopped_at,
            "settings": self.settings(),
        }
        return cast(dict[str, Any], jsonable(summary, "summary", str_keys=True))

    def settings(self) -> dict[str, Any]:
        """The costs and sizing the figures depend on: fees, size mode and size,
        leverage (None: no margin limit) and the intrabar model."""
        keys = ("maker_fee", "taker_fee", "size_mode", "size", "leverage", "intrabar")
        return {k: self.config.get(k) for k in keys}

    def caption(self) -> str:
        """One line stating the fees, sizing, leverage and intrabar model of the run."""
        return settings_caption(self.config)

    def __repr__(self) -> str:
        ret = self.metrics.get("total_return", float("nan"))
        return (
            f"BacktestResult({self.strategy} {self.params} on {self.symbol}: "
            f"{len(self.trades)} trades, total return {ret:.2%})"
        )


def settings_caption(config: Mapping[str, Any]) -> str:
    """`fee 0.1% taker / 0.02% maker · size 95% of equity · leverage 1× · intrabar path`
    from a run's settings (`RunConfig.to_mapping()`)."""
    taker, maker = float(config["taker_fee"]) * 100, float(config["maker_fee"]) * 100
    fee = f"fee {taker:.4g}%" if taker == maker else f"fee {taker:.4g}% taker / {maker:.4g}% maker"
    size, mode = float(config["size"]), config["size_mode"]
    sizing = {
        "equity": f"size {size * 100:.4g}% of equity",
        "fixed": f"size {size:g} (fixed, base units)",
        "notional": f"size {size:,.2f} quote (notional)",
        "risk": f"size from risk per trade ({config.get('risk_profile')} profile)",
    }.get(mode, f"size {size:g} ({mode})")
    lev = config.get("leverage")
    leverage = "no margin limit" if lev is None else f"leverage {float(lev):g}×"
    return f"{fee} · {sizing} · {leverage} · intrabar {config['intrabar']}"
