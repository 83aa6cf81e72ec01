"""Live trading (`sapphire live`): a session on an exchange, or on Sapphire's simulated
venue fed the exchange's market data (`--paper`).

The names load on first use (the CLI reads this package at start-up: the session and
its exchange libraries are loaded only by the commands that run one)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sapphire.live.config import LiveConfig
    from sapphire.live.session import RECONCILIATION, LiveSession, LiveView, live_dir

_EXPORTS = {
    "LiveConfig": "config",
    "LiveSession": "session",
    "LiveView": "session",
    "RECONCILIATION": "session",
    "live_dir": "session",
}

__all__ = ["RECONCILIATION", "LiveConfig", "LiveSession", "LiveView", "live_dir"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sapphire.live' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sapphire.live.{module}"), name)
