"""The trading node: clock, message bus, strategies, order management, risk, portfolio.

One event loop for backtest, paper and live; only the clock and the venue change, and
every mode assembles its node with `build_node` from one `RunConfig`. See
docs/engine.md, "Event engine". The names below load on first use, so that reading the
run configuration (as the CLI does at start-up) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the static view of the lazy names
    from sapphire.engine.adapter import VectorAdapter
    from sapphire.engine.bars import BarFeed, FundingPaid
    from sapphire.engine.builder import NodeSetup, build_node
    from sapphire.engine.bus import MessageBus
    from sapphire.engine.clock import Clock, SimulatedClock, TimeEvent, WallClock
    from sapphire.engine.config import RunConfig
    from sapphire.engine.node import TradingNode, Venue
    from sapphire.engine.risk_monitor import RiskMonitor
    from sapphire.engine.strategy import EventStrategy


_EXPORTS = {
    "BarFeed": "bars",
    "Clock": "clock",
    "EventStrategy": "strategy",
    "FundingPaid": "bars",
    "MessageBus": "bus",
    "NodeSetup": "builder",
    "RiskMonitor": "risk_monitor",
    "RunConfig": "config",
    "SimulatedClock": "clock",
    "TimeEvent": "clock",
    "TradingNode": "node",
    "VectorAdapter": "adapter",
    "Venue": "node",
    "WallClock": "clock",
    "build_node": "builder",
}

__all__ = [
    "BarFeed",
    "Clock",
    "EventStrategy",
    "FundingPaid",
    "MessageBus",
    "NodeSetup",
    "RiskMonitor",
    "RunConfig",
    "SimulatedClock",
    "TimeEvent",
    "TradingNode",
    "VectorAdapter",
    "Venue",
    "WallClock",
    "build_node",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sapphire.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sapphire.engine.{module}"), name)
