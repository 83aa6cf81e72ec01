"""Helpers shared by the `sapphire.data` tests: real data built with plain pandas only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume"]


def feather_bars(name: str) -> pd.DataFrame:
    """A freqtrade-style feather file as the canonical frame, built without sapphire."""
    raw = pd.read_feather(DATA_DIR / name)
    frame = raw.rename(columns={"date": "timestamp"})[COLUMNS]
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("UTC").dt.as_unit("ns")
    return frame
