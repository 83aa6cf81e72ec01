"""Backtests: the vectorised runner, results, metrics and HTML reports."""

from sapphire.backtest.engine import Backtest, BacktestConfig, align_funding, bars_from_frame
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult

__all__ = [
    "TRADE_COLUMNS",
    "Backtest",
    "BacktestConfig",
    "BacktestResult",
    "align_funding",
    "bars_from_frame",
]
