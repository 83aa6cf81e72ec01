"""Accounting: positions, account balances and margin, PnL attribution, equity.

See `docs/engine.md`, "Portfolio and accounting".
"""

from sapphire.portfolio.account import Account, Marks
from sapphire.portfolio.fx import FxRates, convert, to_reporting
from sapphire.portfolio.portfolio import EquitySnapshot, FillResult, Portfolio, StrategyPnl
from sapphire.portfolio.position import Position, PositionBook

__all__ = [
    "Account",
    "EquitySnapshot",
    "FillResult",
    "FxRates",
    "Marks",
    "Portfolio",
    "Position",
    "PositionBook",
    "StrategyPnl",
    "convert",
    "to_reporting",
]
