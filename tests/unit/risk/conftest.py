"""Instruments shared by the risk tests."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sapphire.domain import ContractType, Instrument, InstrumentId

PERP_ID = InstrumentId("BTC/USDT:USDT", "BYBIT")
SPOT_ID = InstrumentId("BTC/USDT", "BINANCE")


@pytest.fixture
def perp() -> Instrument:
    """A linear perpetual: tick 0.1, lot 0.001, min 0.001, max 100, min notional 5."""
    return Instrument(
        PERP_ID,
        "BTC",
        "USDT",
        "USDT",
        ContractType.PERPETUAL,
        Decimal("0.1"),
        Decimal("0.001"),
        maker_fee=Decimal("0.0002"),
        taker_fee=Decimal("0.00055"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("100"),
        min_notional=Decimal("5"),
        max_notional=Decimal("5000000"),
    )


@pytest.fixture
def spot() -> Instrument:
    return Instrument(
        SPOT_ID,
        "BTC",
        "USDT",
        "USDT",
        ContractType.SPOT,
        Decimal("0.01"),
        Decimal("0.00001"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        min_qty=Decimal("0.00001"),
        min_notional=Decimal("5"),
    )
