"""The service's users, refresh-token families and API keys (migration 0004)."""

from __future__ import annotations
