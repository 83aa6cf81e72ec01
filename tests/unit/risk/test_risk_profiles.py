"""Risk profiles: the built-ins, balance-scaled risk, and user profiles from mappings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import InstrumentId, TradingState
from sapphire.risk import (
    AGGRESSIVE,
    CONSERVATIVE,
    BalanceScaledRisk,
    PortfolioLimits,
    RiskConfig,
    RiskEngine,
    RiskProfile,
    profile,
)


def test_conservative_profile_values() -> None:
    p = profile("conservative")
    assert p is CONSERVATIVE
    for balance in (100, 10_000, 55_000, 1_000_000):
        assert p.risk_fraction(balance) == Decimal("0.01")
    assert p.max_drawdown == Decimal("0.25")
    assert p.strategy_max_drawdown == Decimal("0.15")
    assert p.daily_var_limit == Decimal("0.03")
    assert p.risk_amount(20_000) == Decimal("200.00")


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        (5_000, "0.02"),
        (10_000, "0.02"),  # 2 % at or below 10,000
        (55_000, "0.01"),  # halfway in the exponent: 0.02 * 0.25 ** 0.5
        (100_000, "0.005"),  # 0.5 % at or above 100,000
        (1_000_000, "0.005"),
    ],
)
def test_aggressive_risk_decays_with_balance(balance: int, expected: str) -> None:
    assert AGGRESSIVE.risk_fraction(balance) == pytest.approx(
        Decimal(expected), abs=Decimal("1e-20")
    )
    assert profile("aggressive").max_drawdown == Decimal("0.40")


def test_aggressive_matches_the_formula_between_the_anchors() -> None:
    for b in (10_001, 25_000, 32_500, 77_777, 99_999):
        expected = 0.02 * 0.25 ** ((b - 10_000) / 90_000)
        assert float(AGGRESSIVE.risk_fraction(b)) == pytest.approx(expected, rel=1e-12)
    # 32,500 is a quarter of the way: 0.02 * 0.25 ** 0.25 = 0.01414..
    assert float(AGGRESSIVE.risk_fraction(32_500)) == pytest.approx(0.014142135623731, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200_000), st.integers(0, 200_000))
def test_aggressive_risk_is_monotone_and_bounded(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    r_lo, r_hi = AGGRESSIVE.risk_fraction(lo), AGGRESSIVE.risk_fraction(hi)
    assert Decimal("0.005") <= r_hi <= r_lo <= Decimal("0.02")


def test_balance_scaled_risk_validates() -> None:
    with pytest.raises(ValueError, match=r"high_balance 1000 must exceed .*low_balance 5000"):
        BalanceScaledRisk(
            high=Decimal("0.02"), low=Decimal("0.01"), low_balance=5000, high_balance=1000
        )
    with pytest.raises(
        ValueError, match=r"risk_per_trade.high must be a fraction in \(0, 1\], got 2"
    ):
        BalanceScaledRisk(high=2, low=Decimal("0.01"), low_balance=1, high_balance=2)
    with pytest.raises(ValueError, match=r"balance must not be negative, got -1"):
        AGGRESSIVE.risk_fraction(-1)


def test_user_profile_from_a_mapping() -> None:
    p = RiskProfile.from_mapping(
        {
            "name": "mine",
            "risk_per_trade": 0.015,
            "max_drawdown": "0.2",
            "daily_loss_limit": 0.04,
            "var_confidence": 0.99,
            "var_method": "parametric",
            "pre_trade": {
                "max_notional_per_order": 50_000,
                "max_position_qty": {"BTC/USDT:USDT@BYBIT": "2"},
                "max_open_orders": 20,
                "price_band": 0.05,
            },
        }
    )
    assert p.risk_fraction(1_000_000) == Decimal("0.015")
    assert p.max_drawdown == Decimal("0.2")
    assert p.strategy_max_drawdown is None
    assert p.var_method == "parametric"
    assert p.pre_trade.max_notional_per_order == Decimal(50_000)
    assert p.pre_trade.max_position_qty == {InstrumentId("BTC/USDT:USDT", "BYBIT"): Decimal(2)}
    assert p.pre_trade.price_band == Decimal("0.05")
    assert RiskProfile.from_mapping(p.to_mapping()) == p  # round trip


def test_user_profile_extends_a_built_in() -> None:
    p = RiskProfile.from_mapping(
        {
            "base": "aggressive",
            "name": "aggressive-tight",
            "max_drawdown": 0.3,
            "risk_per_trade": {
                "high": 0.03,
                "low": 0.01,
                "low_balance": 1_000,
                "high_balance": 50_000,
            },
        }
    )
    assert p.name == "aggressive-tight"
    assert p.max_drawdown == Decimal("0.3")
    assert p.strategy_max_drawdown == AGGRESSIVE.strategy_max_drawdown  # inherited
    assert p.risk_fraction(500) == Decimal("0.03")
    assert p.risk_fraction(50_000) == Decimal("0.01")


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown risk profile key\(s\): max_dd, risk"):
        RiskProfile.from_mapping({"name": "x", "risk_per_trade": 0.01, "max_dd": 0.2, "risk": 1})
    with pytest.raises(ValueError, match=r"unknown pre_trade key\(s\): max_notional"):
        RiskProfile.from_mapping({"base": "conservative", "pre_trade": {"max_notional": 1}})
    with pytest.raises(ValueError, match=r"unknown risk_per_trade key\(s\): mid"):
        RiskProfile.from_mapping(
            {"name": "x", "risk_per_trade": {"high": 0.02, "low": 0.01, "mid": 1}}
        )
    with pytest.raises(ValueError, match=r"missing key\(s\): high_balance, low_balance"):
        RiskProfile.from_mapping({"name": "x", "risk_per_trade": {"high": 0.02, "low": 0.01}})
    with pytest.raises(ValueError, match=r"needs name and risk_per_trade"):
        RiskProfile.from_mapping({"max_drawdown": 0.2})
    with pytest.raises(
        ValueError, match=r"unknown risk profile 'yolo'; built-in: aggressive, conservative"
    ):
        RiskProfile.from_mapping({"base": "yolo"})


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"max_drawdown must be a fraction in \(0, 1\], got 1.5"):
        RiskProfile.from_mapping({"name": "x", "risk_per_trade": 0.01, "max_drawdown": 1.5})
    with pytest.raises(ValueError, match=r"unknown var_method 'garch'"):
        RiskProfile(name="x", risk_per_trade=Decimal("0.01"), var_method="garch")
    with pytest.raises(ValueError, match=r"max_open_orders must be a positive integer, got 0"):
        RiskConfig.from_mapping({"max_open_orders": 0})
    with pytest.raises(ValueError, match=r"an instrument id looks like 'SYMBOL@VENUE', got 'BTC'"):
        RiskConfig.from_mapping({"max_position_qty": {"BTC": 1}})


def test_profile_from_yaml() -> None:
    p = RiskProfile.from_yaml(
        "base: conservative\nname: conservative-small\npre_trade:\n  max_gross_exposure: 20000\n"
    )
    assert p.risk_fraction(10_000) == Decimal("0.01")
    assert p.pre_trade.max_gross_exposure == Decimal(20_000)
    with pytest.raises(ValueError, match=r"must be a mapping, got \[1, 2\]"):
        RiskProfile.from_yaml("[1, 2]")


def test_profile_builds_its_limits_and_engine() -> None:
    limits = CONSERVATIVE.portfolio_limits()
    assert isinstance(limits, PortfolioLimits)
    assert limits.max_drawdown == Decimal("0.25")
    assert limits.strategy_max_drawdown == Decimal("0.15")
    assert limits.var_limit == pytest.approx(0.03)
    assert limits.state is TradingState.ACTIVE
    engine = CONSERVATIVE.with_pre_trade(max_open_orders=3).risk_engine()
    assert isinstance(engine, RiskEngine)
    assert engine.config.max_open_orders == 3
