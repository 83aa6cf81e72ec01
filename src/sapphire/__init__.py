"""Sapphire: machine-learning-driven algorithmic trading, from research to production."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Backtest", "BacktestResult", "Bars", "Param", "Signals", "Strategy", "__version__"]

if TYPE_CHECKING:
    from sapphire.backtest import Backtest, BacktestResult
    from sapphire.strategy import Bars, Param, Signals, Strategy

_LAZY = {
    "Backtest": "sapphire.backtest",
    "BacktestResult": "sapphire.backtest",
    "Bars": "sapphire.strategy",
    "Param": "sapphire.strategy",
    "Signals": "sapphire.strategy",
    "Strategy": "sapphire.strategy",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so `import sapphire` (and the CLI) start fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sapphire' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
