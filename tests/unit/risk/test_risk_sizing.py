"""Position sizing formulas, quantised by the instrument."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sapphire.domain import ContractType, Instrument, InstrumentId
from sapphire.risk import (
    fixed_fractional,
    fixed_notional,
    fixed_quantity,
    kelly_fraction,
    kelly_quantity,
    volatility_target,
    volatility_target_weight,
)


def test_fixed_quantity_rounds_down_to_the_lot(perp: Instrument) -> None:
    assert fixed_quantity("0.0159", perp) == Decimal("0.015")
    assert fixed_quantity(0.1, perp) == Decimal("0.100")
    assert fixed_quantity(Decimal("0.0009"), perp) == 0  # below one lot / min_qty
    with pytest.raises(ValueError, match=r"quantity must be positive, got -1"):
        fixed_quantity(-1, perp)


def test_fixed_notional(perp: Instrument) -> None:
    assert fixed_notional(1000, 50_000, perp) == Decimal("0.020")
    assert fixed_notional(1000, 30_000, perp) == Decimal("0.033")  # 0.0333.. down


def test_fixed_fractional_risks_the_fraction_between_entry_and_stop(perp: Instrument) -> None:
    # 10,000 * 1 % = 100 at risk over a 1,000 stop distance -> 0.1 BTC
    assert fixed_fractional(10_000, 0.01, 50_000, 49_000, perp) == Decimal("0.100")
    # a short: stop above entry; 100 / 300 = 0.333.. rounds down
    assert fixed_fractional(Decimal(10_000), "0.01", 50_000, 50_300, perp) == Decimal("0.333")
    # float input goes through str: 0.1 stays 0.1
    assert fixed_fractional(1000.0, 0.1, 101.0, 100.0, perp) == Decimal("100.000")


def test_fixed_fractional_with_a_contract_multiplier() -> None:
    inst = Instrument(
        InstrumentId("BTC-PERP", "VENUE"),
        "BTC",
        "USD",
        "USD",
        ContractType.PERPETUAL,
        Decimal("0.5"),
        Decimal("1"),
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
        multiplier=Decimal("0.001"),
    )
    # each contract moves 0.001 * 1,000 = 1 USD between entry and stop: 100 contracts
    assert fixed_fractional(10_000, 0.01, 50_000, 49_000, inst) == Decimal(100)


def test_fixed_fractional_rejects_bad_input(perp: Instrument) -> None:
    with pytest.raises(ValueError, match=r"stop_price 50000 equals entry_price 50000"):
        fixed_fractional(10_000, 0.01, 50_000, 50_000, perp)
    with pytest.raises(ValueError, match=r"risk_fraction must be at most 1, got 1.5"):
        fixed_fractional(10_000, 1.5, 50_000, 49_000, perp)
    with pytest.raises(ValueError, match=r"equity must be positive, got -5"):
        fixed_fractional(-5, 0.01, 50_000, 49_000, perp)
    with pytest.raises(ValueError, match=r"equity must be finite, got nan"):
        fixed_fractional(float("nan"), 0.01, 50_000, 49_000, perp)
    with pytest.raises(ValueError, match=r"equity must be a number, got True"):
        fixed_fractional(True, 0.01, 50_000, 49_000, perp)


def test_fixed_fractional_too_small_to_trade_is_zero(perp: Instrument) -> None:
    # 1 * 1 % = 0.01 at risk over 1,000 -> 0.00001 BTC, below one lot
    assert fixed_fractional(1, 0.01, 50_000, 49_000, perp) == 0


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    equity=st.decimals(min_value=100, max_value=10_000_000, places=2),
    risk=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.05"), places=4),
    entry=st.decimals(min_value=100, max_value=100_000, places=1),
    distance=st.decimals(min_value=Decimal("0.1"), max_value=5_000, places=1),
)
def test_fixed_fractional_loss_at_stop_is_within_budget_and_maximal(
    perp: Instrument, equity: Decimal, risk: Decimal, entry: Decimal, distance: Decimal
) -> None:
    stop = entry - distance if entry - distance > 0 else entry + distance
    qty = fixed_fractional(equity, risk, entry, stop, perp)
    budget = equity * risk
    assert qty % perp.lot_size == 0
    assert qty * distance <= budget  # the stop-out loss never exceeds the budget
    if qty > 0:
        assert (qty + perp.lot_size) * distance > budget  # one more lot would


def test_kelly_fraction() -> None:
    # p = 0.6, b = 1: full Kelly 0.2, half 0.1
    assert kelly_fraction(0.6, 1.0, fraction=1.0, cap=1.0) == pytest.approx(0.2)
    assert kelly_fraction(0.6, 1.0) == pytest.approx(0.1)
    assert kelly_fraction(0.6, 1.0, fraction=0.5, cap=0.05) == 0.05  # capped
    assert kelly_fraction(0.4, 1.0) == 0.0  # no edge, no bet
    # p = 0.5, b = 2: 0.5 - 0.5 / 2 = 0.25, quarter Kelly 0.0625
    assert kelly_fraction(0.5, 2.0, fraction=0.25) == pytest.approx(0.0625)
    with pytest.raises(ValueError, match=r"win_rate must be in \[0, 1\], got 1.2"):
        kelly_fraction(1.2, 1.0)
    with pytest.raises(ValueError, match=r"payoff must be positive, got 0"):
        kelly_fraction(0.6, 0)
    with pytest.raises(ValueError, match=r"cap must be in \(0, 1\], got 0"):
        kelly_fraction(0.6, 1.0, cap=0)


def test_kelly_quantity(perp: Instrument) -> None:
    # half Kelly 0.1 of 10,000 = 1,000 notional at 50,000 -> 0.02 BTC
    assert kelly_quantity(10_000, 50_000, 0.6, 1.0, perp) == Decimal("0.020")
    assert kelly_quantity(10_000, 50_000, 0.3, 1.0, perp) == 0


def test_volatility_target(perp: Instrument) -> None:
    assert volatility_target_weight(0.2, 0.8) == pytest.approx(0.25)
    assert volatility_target_weight(0.5, 0.1, max_leverage=2.0) == 2.0  # capped
    # 10,000 * 0.25 = 2,500 notional at 50,000 -> 0.05 BTC
    assert volatility_target(10_000, 50_000, 0.2, 0.8, perp) == Decimal("0.050")
    assert volatility_target(10_000, 50_000, 0.5, 0.1, perp) == Decimal("0.200")  # 1x cap
    with pytest.raises(ValueError, match=r"realised_annual_vol must be positive, got 0"):
        volatility_target(10_000, 50_000, 0.2, 0.0, perp)
