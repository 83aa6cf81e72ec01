"""Where Sapphire keeps a user's state: one data directory, `$SAPPHIRE_HOME`."""

from __future__ import annotations

import os
from pathlib import Path


def sapphire_home() -> Path:
    """Return the data directory (`$SAPPHIRE_HOME`, default `~/.sapphire`), creating it."""
    raw = os.environ.get("SAPPHIRE_HOME")
    home = Path(raw).expanduser() if raw else Path.home() / ".sapphire"
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_subdir(name: str) -> Path:
    """Return `$SAPPHIRE_HOME/<name>` (catalog, reports, db, models...), creating it."""
    path = sapphire_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
