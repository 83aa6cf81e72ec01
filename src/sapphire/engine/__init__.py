"""The trading node: clock, message bus, strategies, order management, risk, portfolio.

One event loop for backtest, paper and live; only the clock and the venue change. See
docs/engine.md, "Event engine".
"""

from sapphire.engine.adapter import SignalArrays, VectorAdapter, prepare_signals
from sapphire.engine.bus import MessageBus
from sapphire.engine.clock import Clock, SimulatedClock, TimeEvent, WallClock
from sapphire.engine.node import BarFeed, FundingPaid, TradingNode, Venue
from sapphire.engine.risk_monitor import RiskMonitor
from sapphire.engine.strategy import EventStrategy

__all__ = [
    "BarFeed",
    "Clock",
    "EventStrategy",
    "FundingPaid",
    "MessageBus",
    "RiskMonitor",
    "SignalArrays",
    "SimulatedClock",
    "TimeEvent",
    "TradingNode",
    "VectorAdapter",
    "Venue",
    "WallClock",
    "prepare_signals",
]
