"""Spoofing and layering: resting orders canceled unfilled after an execution on the
other side, one large order near the touch or several stepped ones."""

from __future__ import annotations

import pytest
from surveil_helpers import BUY, SELL, Tape, at, only

from sapphire.compliance.surveillance import (
    LayeringConfig,
    Rule,
    Severity,
    SpoofingConfig,
    SurveillanceConfig,
)
from sapphire.domain import TimeInForce

NO_LAYERING = SurveillanceConfig(layering=LayeringConfig(enabled=False))
NO_SPOOFING = SurveillanceConfig(spoofing=SpoofingConfig(enabled=False))


def _spoof(
    *, qty: str = "10", price: str = "99.95", sell_at: float = 5, cancel_at: float = 8,
    filled: str | None = None, tif: TimeInForce = TimeInForce.GTC,
) -> Tape:  # fmt: skip
    """A big bid near the touch, a small sell executed while it rests, then the bid
    canceled (partly filled first when `filled`)."""
    tape = Tape()
    tape.limit("bid", BUY, qty, price, 0, tif=tif)
    if filled is not None:
        tape.fill("bid", 1, price, filled)
    tape.market("sell", SELL, "2", "100", sell_at)
    tape.cancel("bid", cancel_at)
    return tape


def test_a_large_bid_canceled_after_an_opposite_execution_is_spoofing() -> None:
    alert = only(_spoof().alerts())
    assert (alert.rule, alert.severity) == (Rule.SPOOFING, Severity.HIGH)
    assert alert.client_order_ids == ("bid", "sell") and alert.ts_ns == at(8)
    assert alert.figures["size_ratio"] == 5.0
    assert alert.figures["touch_distance_bps"] == pytest.approx(5.0)
    assert alert.explanation == (
        "BUY LIMIT 10 @ 99.95 (r1/s1) rested 8.0 s 5.0 bps from the touch while 1 SELL "
        "execution(s) of 2 at 100 were made, 5.0x their size, and was canceled unfilled"
    )


@pytest.mark.parametrize(
    ("case", "tape"),
    [
        ("small: 5 < 3 x 2", _spoof(qty="5")),
        ("far from the touch: 50 bps", _spoof(price="99.5")),
        ("executed after the cancel", _spoof(sell_at=9)),
        ("rested too long: 400 s", _spoof(sell_at=350, cancel_at=400)),
        ("half filled", _spoof(filled="5")),
        ("never rested: IOC", _spoof(tif=TimeInForce.IOC)),
    ],
)
def test_spoofing_near_misses_raise_nothing(case: str, tape: Tape) -> None:
    assert tape.alerts(NO_LAYERING) == [], case


def test_an_order_that_fills_is_not_spoofing() -> None:
    tape = Tape()
    tape.limit("bid", BUY, "10", "99.95", 0)
    tape.market("sell", SELL, "2", "100", 5)
    tape.fill("bid", 8, "99.95")
    assert tape.alerts() == []


def test_the_thresholds_are_configurable() -> None:
    strict = SurveillanceConfig(spoofing=SpoofingConfig(size_ratio=6))
    assert _spoof().alerts(strict) == []
    loose = SurveillanceConfig(spoofing=SpoofingConfig(near_touch_bps=60))
    assert only(_spoof(price="99.5").alerts(loose)).rule is Rule.SPOOFING


def _layers(
    prices: tuple[str, ...] = ("99.97", "99.95", "99.93", "99.91"), *, cancel_at: float = 20,
    sell_side: bool = True,
) -> Tape:  # fmt: skip
    """Stepped bids (two strategies), a sell executed while they rest, then the bids
    canceled `cancel_at` s after the start (the sell at 10 s)."""
    tape = Tape()
    for k, price in enumerate(prices):
        tape.limit(f"bid{k}", BUY, "1", price, k * 0.5, strategy="s1" if k % 2 else "s2")
    side = SELL if sell_side else BUY
    tape.market("hit", side, "1", "100", 10, strategy="s3")
    for k in range(len(prices)):
        tape.cancel(f"bid{k}", cancel_at + k)
    return tape


def test_stepped_orders_canceled_after_an_opposite_execution_are_layering() -> None:
    """The pattern is complete when the third layer goes: the alert comes then, with
    those three, and the fourth cancel raises no second alert."""
    alert = only(_layers().alerts(NO_SPOOFING))
    assert (alert.rule, alert.severity) == (Rule.LAYERING, Severity.HIGH)
    assert alert.client_order_ids == ("bid2", "bid1", "bid0", "hit")
    assert alert.strategy_ids == ("s1", "s2", "s3")
    assert alert.ts_ns == at(22)
    assert alert.figures["price_levels"] == 3 and alert.figures["layers"] == 3
    assert alert.explanation == (
        "3 BUY LIMIT orders of 3 in all, stepped over 3 prices 99.93-99.97 (nearest 3.0 bps "
        "from the touch), rested while SELL 1 executed at 100 (r1/s3) and were canceled "
        "within 12.0 s of it"
    )


@pytest.mark.parametrize(
    ("case", "tape"),
    [
        ("one price level", _layers(("99.95",) * 4)),
        ("two layers only", _layers(("99.97", "99.95"))),
        ("canceled too late: 70 s after", _layers(cancel_at=80)),
        ("the execution on the same side", _layers(sell_side=False)),
        ("far from the touch: 1 %", _layers(("99.0", "98.9", "98.8"))),
    ],
)
def test_layering_near_misses_raise_nothing(case: str, tape: Tape) -> None:
    assert tape.alerts(NO_SPOOFING) == [], case


def test_layers_that_were_placed_after_the_execution_are_not_layering() -> None:
    tape = Tape()
    tape.market("hit", SELL, "1", "100", 0)
    for k, price in enumerate(("99.97", "99.95", "99.93")):
        tape.limit(f"bid{k}", BUY, "1", price, 1)
        tape.cancel(f"bid{k}", 5)
    assert tape.alerts() == []
