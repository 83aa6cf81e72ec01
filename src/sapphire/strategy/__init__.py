"""Strategies: the vectorised Strategy API, typed parameters and the built-ins."""

from sapphire.strategy.base import Bars, Param, Signals, Strategy
from sapphire.strategy.registry import builtin_strategies, get_strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

__all__ = [
    "Bars",
    "Param",
    "SignalArrays",
    "Signals",
    "Strategy",
    "builtin_strategies",
    "get_strategy",
    "normalize_signals",
]
