"""Live trading (`sapphire live`): a session on an exchange, or on Sapphire's simulated
venue fed the exchange's market data (`--paper`)."""

from sapphire.live.config import LiveConfig
from sapphire.live.session import RECONCILIATION, LiveSession, LiveView, live_dir

__all__ = ["RECONCILIATION", "LiveConfig", "LiveSession", "LiveView", "live_dir"]
