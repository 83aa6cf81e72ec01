"""Shared fixtures: every test runs with its own temporary SAPPHIRE_HOME."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def sapphire_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "sapphire-home"
    monkeypatch.setenv("SAPPHIRE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def btc_df() -> pd.DataFrame:
    """The bundled real FTX BTC-PERP 1-minute month (45,031 bars)."""
    from sapphire.data.samples import SAMPLE_PATH

    df = pd.read_csv(SAMPLE_PATH, parse_dates=["timestamp"])
    df["timestamp"] = df["timestamp"].dt.tz_localize("UTC")
    return df
