"""Shared fixtures: every test runs with its own temporary SAPPHIRE_HOME."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# gRPC (Ray Client) reads this when it first loads: its default epoll1 poller can abort
# a process that used a "ray://" connection (see sapphire.optimize.executor.import_ray)
os.environ.setdefault("GRPC_POLL_STRATEGY", "poll")

import pandas as pd
import pytest

DATA_DIR = Path(__file__).parent / "data"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n N` (`make test`) balances by work stealing, not xdist's default "load": the long
    end-to-end tests come first in the collection, and "load" hands each worker its first
    quarter-share as one block of consecutive tests, so one worker ran every e2e test
    (the README's, `sapphire demo`'s...) while the other idled at the end, 150 s of an
    850 s run. With work stealing an idle worker takes half of a busy one's queue. An
    explicit `--dist` other than load (loadfile, each...) is kept."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)


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
