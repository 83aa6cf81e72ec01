"""Backtests: the runner (compiled kernel or event-driven node), results, metrics and HTML
reports."""

from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.backtest.runner import Backtest, align_funding, bars_from_frame
from sapphire.engine.config import RunConfig

__all__ = [
    "TRADE_COLUMNS",
    "Backtest",
    "BacktestResult",
    "RunConfig",
    "align_funding",
    "bars_from_frame",
]
