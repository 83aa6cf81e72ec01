"""Paper trading: the trading node against an out-of-process simulated venue, with every
state change persisted (write-ahead) and crash recovery by reconciliation.

See docs/engine.md, "Paper trading and crash safety". The names below load on first use
(`sapphire.paper.config` alone, as the CLI needs it, stays light).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the static view of the lazy names
    from sapphire.paper.client import RemoteVenue, VenueClient, ensure_venue
    from sapphire.paper.config import PaperConfig, parse_speed
    from sapphire.paper.server import NEVER_REACHED, VenueBook, serve
    from sapphire.paper.session import PaperSession, SessionView, paper_dir


_EXPORTS = {
    "NEVER_REACHED": "server",
    "PaperConfig": "config",
    "PaperSession": "session",
    "RemoteVenue": "client",
    "SessionView": "session",
    "VenueBook": "server",
    "VenueClient": "client",
    "ensure_venue": "client",
    "paper_dir": "session",
    "parse_speed": "config",
    "serve": "server",
}

__all__ = [
    "NEVER_REACHED",
    "PaperConfig",
    "PaperSession",
    "RemoteVenue",
    "SessionView",
    "VenueBook",
    "VenueClient",
    "ensure_venue",
    "paper_dir",
    "parse_speed",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sapphire.paper' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sapphire.paper.{module}"), name)
