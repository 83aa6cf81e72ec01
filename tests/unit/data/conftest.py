"""Real-data fixtures for the `sapphire.data` tests (independent of the code under test)."""

from __future__ import annotations

import pandas as pd
import pytest
from data_helpers import COLUMNS, feather_bars


@pytest.fixture(scope="session")
def btc_bars(btc_df: pd.DataFrame) -> pd.DataFrame:
    """The bundled BTC month as the canonical frame (ns resolution), built with plain pandas."""
    frame = btc_df[COLUMNS].copy()
    frame["timestamp"] = frame["timestamp"].dt.as_unit("ns")
    return frame


@pytest.fixture(scope="session")
def xrp_bars() -> pd.DataFrame:
    """Binance XRP/USDT perpetual 5m bars (1,999, no gaps)."""
    return feather_bars("binance-XRP_USDT_USDT-5m-futures.feather")


@pytest.fixture(scope="session")
def eth_bars() -> pd.DataFrame:
    """Binance ETH/BTC 5m bars (5,760, no gaps)."""
    return feather_bars("binance-ETH_BTC-5m.feather")


@pytest.fixture(scope="session")
def ada_bars() -> pd.DataFrame:
    """Binance ADA/BTC 5m bars (5,720, with real gaps)."""
    return feather_bars("binance-ADA_BTC-5m.feather")
