"""Real-data fixtures for the `sapphire.indicators` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

Bars = dict[str, NDArray[np.float64]]

DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def _columns(frame: pd.DataFrame) -> Bars:
    return {
        k: frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    }


@pytest.fixture(scope="session")
def btc(btc_df: pd.DataFrame) -> Bars:
    """The bundled FTX BTC-PERP 1-minute month (45,031 bars, prices ~40,000) as arrays."""
    return _columns(btc_df)


@pytest.fixture(scope="session")
def ada() -> Bars:
    """Binance ADA/BTC 5-minute bars (5,720, prices ~5e-5): checks the maths is scale-free."""
    return _columns(pd.read_feather(DATA_DIR / "binance-ADA_BTC-5m.feather"))


@pytest.fixture(scope="session")
def btc_with_gaps(btc: Bars) -> Bars:
    """10,000 BTC bars with NaNs: leading ones, lone ones in single columns, and blocks."""
    bars = {k: v[:10_000].copy() for k, v in btc.items()}
    for v in bars.values():
        v[:7] = np.nan
        v[6_000:6_040] = np.nan
    bars["close"][1_000] = np.nan
    bars["high"][3_000] = np.nan
    bars["low"][3_003] = np.nan
    bars["volume"][4_000] = np.nan
    bars["close"][8_000:8_003] = np.nan
    return bars
