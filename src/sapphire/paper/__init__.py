"""Paper trading: the trading node against an out-of-process simulated venue, with every
state change persisted (write-ahead) and crash recovery by reconciliation.

See docs/engine.md, "Paper trading and crash safety".
"""

from sapphire.paper.client import RemoteVenue, VenueClient, ensure_venue
from sapphire.paper.config import PaperConfig, parse_speed
from sapphire.paper.server import NEVER_REACHED, VenueBook, serve
from sapphire.paper.session import PaperSession, SessionView, paper_dir

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
