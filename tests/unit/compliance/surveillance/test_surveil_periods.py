"""Marking the close (orders bunched before a close that move the price) and the
order-to-trade ratio (messages per execution, per strategy and window)."""

from __future__ import annotations

import pytest
from surveil_helpers import BUY, SELL, T0, Tape, at, only

from sapphire.compliance.surveillance import (
    MarkingCloseConfig,
    OrderToTradeConfig,
    Rule,
    Severity,
    SurveillanceConfig,
)

NS = 1_000_000_000
CLOSE = 14 * 3600  # 2022-01-04 00:00 UTC, in seconds after T0 (2022-01-03 10:00)


def _marking(
    prices: tuple[str, ...] = ("100.1", "100.2", "100.3", "100.4"), *, earlier: int = 2,
    side: str = "BUY", close: int = CLOSE, after: bool = False,
) -> Tape:  # fmt: skip
    """`earlier` buys at 100 during the day, then one market order per price in the last
    five minutes before `close` (and one more order after the close if `after`)."""
    tape = Tape()
    for k in range(earlier):
        tape.market(f"day{k}", BUY, "1", "100", 1000 * (k + 1))
    for k, price in enumerate(prices):
        tape.market(f"late{k}", BUY if side == "BUY" else SELL, "1", price, close - 270 + 60 * k)
    if after:
        tape.market("next-day", SELL, "1", "100", close + 60)
    return tape


@pytest.mark.parametrize("after", [False, True], ids=["stream ends in the window", "judged at"])
def test_orders_bunched_before_the_close_that_move_the_price_mark_it(after: bool) -> None:
    alert = only(_marking(after=after).alerts())
    assert (alert.rule, alert.severity) == (Rule.MARKING_THE_CLOSE, Severity.MEDIUM)
    assert alert.ts_ns == at(CLOSE)
    assert alert.client_order_ids == ("late0", "late1", "late2", "late3")
    assert alert.figures["move_bps"] == pytest.approx(40.0)
    assert alert.strategy_ids == ("s1",) and alert.run_ids == ("r1",)
    assert alert.explanation == (
        "s1 (r1): 4 of its 6 orders on BTC-PERP@SIM since the previous close (67%) came in "
        "the 5 min before the 00:00 close of 2022-01-04; its net BUY 4 in 4 execution(s) went "
        "with a move of +40.0 bps its way (100 -> 100.4)"
    )


@pytest.mark.parametrize(
    ("case", "tape"),
    [
        ("the price did not move", _marking(("100", "100", "100", "100"))),
        ("it moved against them", _marking(("99.9", "99.8", "99.7", "99.6"))),
        ("selling into a rise", _marking(side="SELL")),
        ("not bunched: 4 of 14", _marking(earlier=10)),
        ("too few: 2", _marking(("100.2", "100.4"), earlier=0)),
        ("before another time: 23:00", _marking(close=CLOSE - 3600)),
    ],
)
def test_marking_the_close_near_misses_raise_nothing(case: str, tape: Tape) -> None:
    assert tape.alerts() == [], case


def test_the_close_time_is_configurable() -> None:
    four_pm = 6 * 3600  # 16:00 UTC on 2022-01-03
    tape = _marking(close=four_pm, earlier=0)
    assert tape.alerts() == []
    config = SurveillanceConfig(marking_close=MarkingCloseConfig(close_times=("16:00",)))
    alert = only(tape.alerts(config))
    assert alert.ts_ns == at(four_pm) and "before the 16:00 close of 2022-01-03" in (
        alert.explanation
    )


def _churn(
    orders: int, fills: int, *, strategy: str = "s1", start: float = 0, step: float = 10
) -> Tape:
    """`orders` bids, the first `fills` filled and the rest canceled, one every `step` s."""
    tape = Tape()
    _add_churn(tape, orders, fills, strategy=strategy, start=start, step=step)
    return tape


def _add_churn(
    tape: Tape, orders: int, fills: int, *, strategy: str, start: float, step: float
) -> None:
    for k in range(orders):
        t = start + k * step
        cid = tape.limit(f"{strategy}-{k}", BUY, "1", "90", t, strategy=strategy)
        if k < fills:
            tape.fill(cid, t + 1, "90")
        else:
            tape.cancel(cid, t + 1)


def test_many_messages_per_execution_in_an_hour_are_flagged_per_strategy() -> None:
    alert = only(_churn(60, 2).alerts())
    assert (alert.rule, alert.severity) == (Rule.ORDER_TO_TRADE, Severity.LOW)
    assert alert.ts_ns == T0 + 3600 * NS and alert.strategy_ids == ("s1",)
    assert len(alert.client_order_ids) == 60
    assert alert.figures["ratio"] == 59.0  # 60 new + 58 cancels over 2 executions
    assert alert.explanation == (
        "s1 (r1): 118 order messages (60 new, 0 amendments, 58 cancels) and 2 execution(s) "
        "in the 60 min from 2022-01-03T10:00Z: 59.0 messages per execution, above 20"
    )


def test_amendments_count_as_messages() -> None:
    tape = Tape()
    tape.limit("a", BUY, "1", "90", 0)
    for k in range(60):
        tape.amend("a", k + 1, f"{90 + k / 100}")
    alert = only(tape.alerts())
    assert alert.figures["amendments"] == 60 and alert.figures["executions"] == 0


@pytest.mark.parametrize(
    ("case", "tape"),
    [
        ("too few messages: 40", _churn(20, 0)),
        ("ratio 11: 60 new + 50 cancels, 10 fills", _churn(60, 10)),
        ("spread over two hours: 48 + 48", _churn(48, 0, step=150)),
    ],
)
def test_order_to_trade_near_misses_raise_nothing(case: str, tape: Tape) -> None:
    assert tape.alerts() == [], case


def test_the_window_is_configurable() -> None:
    two_hours = SurveillanceConfig(order_to_trade=OrderToTradeConfig(window_min=120))
    alert = only(_churn(48, 0, step=150).alerts(two_hours))
    assert alert.figures["messages"] == 96 and alert.ts_ns == T0 + 2 * 3600 * NS


def test_strategies_are_counted_apart() -> None:
    tape = Tape()
    _add_churn(tape, 20, 0, strategy="s1", start=0, step=10)
    _add_churn(tape, 20, 0, strategy="s2", start=5, step=10)  # 80 messages together
    assert tape.alerts() == []
    low = SurveillanceConfig(order_to_trade=OrderToTradeConfig(min_messages=40))
    assert [a.strategy_ids for a in tape.alerts(low)] == [("s1",), ("s2",)]
