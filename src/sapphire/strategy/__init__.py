"""Strategies: the vectorised Strategy API, typed parameters and the built-ins."""

from sapphire.strategy.base import Bars, Param, Signals, Strategy
from sapphire.strategy.registry import builtin_strategies, get_strategy

__all__ = ["Bars", "Param", "Signals", "Strategy", "builtin_strategies", "get_strategy"]
