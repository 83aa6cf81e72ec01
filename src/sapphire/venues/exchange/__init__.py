"""The local Bybit-compatible exchange: Bybit's v5 REST API and WebSocket streams over
Sapphire's simulated venue, fed by replayed bars, for testing live trading without an
exchange.

``create_app(ExchangeState())`` is the app; `BackgroundServer` serves it on a thread.
See `state` for what fills when, `auth` for signatures and rate limits, `errors` for
the codes, `ws` for the WebSocket paths and ops and `streams` for what they push,
`faults` for fault injection and `journal` for the state kept across restarts.
"""

from sapphire.venues.exchange.app import MUTATIONS, BackgroundServer, create_app
from sapphire.venues.exchange.auth import Credentials
from sapphire.venues.exchange.faults import FaultPlan
from sapphire.venues.exchange.journal import Journal
from sapphire.venues.exchange.state import ExchangeState, Market, default_markets, markets_for

__all__ = [
    "MUTATIONS",
    "BackgroundServer",
    "Credentials",
    "ExchangeState",
    "FaultPlan",
    "Journal",
    "Market",
    "create_app",
    "default_markets",
    "markets_for",
]
