"""Which database Sapphire uses: `SAPPHIRE_DATABASE_URL`, else a SQLite file in the
user's data directory. The ledger, the model registry and the optimiser's studies all
live there unless a caller passes another URL."""

from __future__ import annotations

import os

from sapphire.config import sapphire_home

__all__ = ["default_url"]


def default_url() -> str:
    """`SAPPHIRE_DATABASE_URL`, else the SQLite file `$SAPPHIRE_HOME/sapphire.db`."""
    url = os.environ.get("SAPPHIRE_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{sapphire_home() / 'sapphire.db'}"
