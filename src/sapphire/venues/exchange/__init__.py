"""The local Bybit-compatible exchange: Bybit's v5 REST API and WebSocket streams over
Sapphire's simulated venue, fed by replayed bars, for testing live trading without an
exchange.

``create_app(ExchangeState())`` is the app; `BackgroundServer` serves it on a thread.
See `state` for what fills when, `auth` for signatures and rate limits, `errors` for
the codes, `ws` for the WebSocket paths and ops and `streams` for what they push.
"""

from sapphire.venues.exchange.app import BackgroundServer, create_app
from sapphire.venues.exchange.auth import Credentials
from sapphire.venues.exchange.state import ExchangeState, Market, default_markets

__all__ = [
    "BackgroundServer",
    "Credentials",
    "ExchangeState",
    "Market",
    "create_app",
    "default_markets",
]
