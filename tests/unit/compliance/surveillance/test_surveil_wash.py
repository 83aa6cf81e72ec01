"""Wash trades: own buy and sell that could have matched (one resting, one taking) at the
same price and time, across strategies and runs; a shared trade id is a self-match."""

from __future__ import annotations

import pytest
from surveil_helpers import BUY, SELL, TAKER, Tape, at, only

from sapphire.compliance.surveillance import Rule, Severity, SurveillanceConfig, WashConfig


def _cross(
    *, sell_px: str = "100.0", buy_px: str = "100.0", buy_qty: str = "2", sell_t: float = 3,
    buy_t: float = 3, buy_strategy: str = "s2", buy_run: str = "r1",
) -> Tape:  # fmt: skip
    """s1 rests a sell, filled at `sell_t`; another strategy buys with a market order at
    `buy_t`."""
    tape = Tape()
    tape.limit("s1-sell", SELL, "2", sell_px, 0, strategy="s1")
    tape.fill("s1-sell", sell_t, sell_px)
    tape.market("s2-buy", BUY, buy_qty, buy_px, buy_t, strategy=buy_strategy, run=buy_run)
    return tape


def test_a_cross_strategy_wash_trade_is_flagged_with_both_orders_and_the_figures() -> None:
    alert = only(_cross().alerts())
    assert (alert.rule, alert.severity) == (Rule.WASH_TRADE, Severity.MEDIUM)
    assert alert.client_order_ids == ("s2-buy", "s1-sell")
    assert alert.strategy_ids == ("s1", "s2") and alert.run_ids == ("r1",)
    assert alert.ts_ns == at(3)
    assert alert.figures["price_gap_bps"] == 0.0
    assert alert.explanation == (
        "BUY 2 @ 100.0 (TAKER, r1/s2) and SELL 2 @ 100.0 (MAKER, r1/s1) 0.0 s and 0.0 bps "
        "apart on BTC-PERP@SIM: own orders that could have traded with each other"
    )


def test_a_wash_trade_across_runs_of_one_strategy_name_is_flagged() -> None:
    alert = only(_cross(buy_strategy="s1", buy_run="r2", sell_t=0, buy_t=10).alerts())
    assert alert.run_ids == ("r1", "r2") and alert.strategy_ids == ("s1",)
    assert alert.figures["seconds_apart"] == 10.0


def test_fills_sharing_a_trade_id_are_a_self_match_even_within_one_strategy() -> None:
    tape = Tape()
    tape.limit("a", SELL, "1", "100", 0)
    tape.fill("a", 5, "100", trade_id="X1")
    tape.market("b", BUY, "1", "100", 5, trade_id="X1")
    alert = only(tape.alerts())
    assert alert.severity is Severity.HIGH and alert.strategy_ids == ("s1",)
    assert "one trade id X1: own orders traded with each other" in alert.explanation


@pytest.mark.parametrize(
    ("case", "tape"),
    [
        ("price apart", _cross(buy_px="100.02")),  # 2 bps > 0
        ("too far apart in time", _cross(sell_t=0, buy_t=11)),  # 11 s > 10
        ("sizes differ", _cross(buy_qty="1")),  # 1 vs 2: 50 % < 90 %
        ("same strategy", _cross(buy_strategy="s1")),
    ],
)
def test_near_misses_raise_nothing(case: str, tape: Tape) -> None:
    assert tape.alerts() == [], case


def test_two_takers_cannot_have_traded_with_each_other() -> None:
    tape = Tape()
    tape.market("a", SELL, "2", "100", 0, strategy="s1")
    tape.market("b", BUY, "2", "100", 0, strategy="s2")
    assert tape.alerts() == []


def test_the_thresholds_are_configurable_and_the_rule_can_be_switched_off() -> None:
    tape = _cross(buy_strategy="s1")
    config = SurveillanceConfig(wash=WashConfig(same_strategy=True))
    assert only(tape.alerts(config)).rule is Rule.WASH_TRADE
    tolerant = SurveillanceConfig(wash=WashConfig(price_tolerance_bps=5))
    assert only(_cross(buy_px="100.02").alerts(tolerant)).figures["price_gap_bps"] == (
        pytest.approx(2.0)
    )
    assert _cross().alerts(SurveillanceConfig(wash=WashConfig(enabled=False))) == []


def test_a_pair_of_orders_is_reported_once_however_many_fills_match() -> None:
    tape = Tape()
    tape.limit("s", SELL, "4", "100", 0, strategy="s1")
    tape.limit("b", BUY, "4", "100", 0, strategy="s2")
    for k in range(4):  # four partial crosses, each maker/taker in turn
        tape.fill("s", k, "100", "1")
        tape.fill("b", k, "100", "1", TAKER)
    assert len(tape.alerts()) == 1
