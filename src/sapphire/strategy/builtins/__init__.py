"""Built-in strategies, registered by name."""

from sapphire.strategy.builtins.mean_reversion import MeanReversion
from sapphire.strategy.builtins.momentum import Momentum
from sapphire.strategy.builtins.sma_cross import SmaCross
from sapphire.strategy.builtins.volatility_breakout import VolatilityBreakout

__all__ = ["MeanReversion", "Momentum", "SmaCross", "VolatilityBreakout"]
