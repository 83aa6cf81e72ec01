"""Shared fixtures: every test runs with its own temporary SAPPHIRE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

# gRPC (Ray Client) reads this when it first loads: its default epoll1 poller can abort
# a process that used a "ray://" connection (see sapphire.optimize.executor.import_ray)
os.environ.setdefault("GRPC_POLL_STRATEGY", "poll")

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
