"""Fee, slippage and latency models."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    OrderBookDelta,
    OrderSide,
)
from sapphire.sim.book import BookUpdate, L2Book
from sapphire.sim.models import (
    BookWalkSlippage,
    BpsSlippage,
    FixedLatency,
    FixedRateFees,
    InstrumentFees,
    NoSlippage,
    TickSlippage,
    UniformLatency,
    against_trader,
)

D = Decimal
IID = InstrumentId("BTCUSDT", "SIM")
BUY, SELL = OrderSide.BUY, OrderSide.SELL
INST = Instrument(
    IID, "BTC", "USDT", "USDT", ContractType.PERPETUAL, D("0.1"), D("0.001"),
    maker_fee=D("-0.0001"), taker_fee=D("0.0005"),
)  # fmt: skip


def test_instrument_fees_use_maker_and_taker_rates() -> None:
    fees = InstrumentFees()
    assert fees.fee(INST, D("2"), D("100.5"), LiquiditySide.TAKER) == D("0.1005")
    assert fees.fee(INST, D("2"), D("100.5"), LiquiditySide.MAKER) == D("-0.0201")  # rebate
    assert fees.fee_currency(INST) == "USDT"


def test_fixed_rate_fees_override_and_validate() -> None:
    fees = FixedRateFees(maker="0", taker="0.001")
    assert fees.maker == D("0") and fees.taker == D("0.001")
    assert fees.fee(INST, D("3"), D("10"), LiquiditySide.TAKER) == D("0.030")
    assert fees.fee(INST, D("3"), D("10"), LiquiditySide.MAKER) == 0
    with pytest.raises(ValueError, match=r"FixedRateFees\.taker is a rate in"):
        FixedRateFees(maker=D(0), taker=D("1.5"))


def test_bps_slippage_moves_against_the_trader_and_rounds_to_the_tick() -> None:
    model = BpsSlippage(D("5"))
    assert model.fill_price(INST, BUY, D("100.0"), D(1)) == D("100.1")  # 100.05 -> up
    assert model.fill_price(INST, SELL, D("100.0"), D(1)) == D("99.9")  # 99.95 -> down
    assert BpsSlippage(D("0")).fill_price(INST, BUY, D("100.0"), D(1)) == D("100.0")
    with pytest.raises(ValueError, match="bps must be >= 0, got -1"):
        BpsSlippage(D("-1"))


def test_tick_slippage() -> None:
    model = TickSlippage(3)
    assert model.fill_price(INST, BUY, D("100.0"), D(1)) == D("100.3")
    assert model.fill_price(INST, SELL, D("100.0"), D(1)) == D("99.7")
    assert NoSlippage().fill_price(INST, SELL, D("100.05"), D(1)) == D("100.05")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="ticks must be an int >= 0"):
            TickSlippage(bad)  # type: ignore[arg-type]


def test_against_trader_rounding() -> None:
    assert against_trader(INST, BUY, D("100.01")) == D("100.1")
    assert against_trader(INST, SELL, D("100.09")) == D("100.0")
    assert against_trader(INST, BUY, D("100.1")) == D("100.1")


def _book() -> L2Book:
    book = L2Book(IID)
    levels = [(BUY, 99.5, 1.0), (BUY, 99.0, 2.0)]
    levels += [(SELL, 100.0, 1.0), (SELL, 100.5, 2.0), (SELL, 101.0, 3.0)]
    deltas = tuple(OrderBookDelta(IID, 1, s, p, q) for s, p, q in levels)
    book.apply_update(BookUpdate(IID, 1, True, deltas, 1))
    return book


def test_book_walk_slippage_adds_the_books_price_impact() -> None:
    model = BookWalkSlippage(_book())
    # 4 taken from the asks: VWAP 100.5, touch 100.0 -> impact 0.5
    assert model.fill_price(INST, BUY, D("200.0"), D("4")) == D("200.5")
    # 1 fits the touch: no impact
    assert model.fill_price(INST, BUY, D("200.0"), D("1")) == D("200.0")
    # 3 sold into the bids: VWAP (99.5 + 198) / 3 = 99.1666..., touch 99.5 -> 0.333.. -> down
    assert model.fill_price(INST, SELL, D("200.0"), D("3")) == D("199.6")
    # beyond the depth the rest is priced at the last level: (99.5 + 198 + 99) / 4 = 99.125
    assert model.fill_price(INST, SELL, D("200.0"), D("4")) == D("199.6")
    # (99.5 + 2 * 99 + 7 * 99) / 10 = 99.05 -> 200 - 0.45 = 199.55 -> down to 199.5
    assert model.fill_price(INST, SELL, D("200.0"), D("10")) == D("199.5")
    assert BookWalkSlippage(L2Book(IID)).fill_price(INST, BUY, D("5"), D("1")) == D("5")


def test_fixed_latency() -> None:
    latency = FixedLatency(submit_ns=1_500_000, report_ns=300_000)
    assert [latency.submit_delay(), latency.report_delay()] == [1_500_000, 300_000]
    assert FixedLatency().submit_delay() == 0
    with pytest.raises(ValueError, match=r"FixedLatency.report_ns must be an int >= 0 \(ns\)"):
        FixedLatency(report_ns=-1)


def test_uniform_latency_is_seeded_and_bounded() -> None:
    a = UniformLatency(submit_ns=(1_000, 5_000), report_ns=(10, 20), seed=7)
    b = UniformLatency(submit_ns=(1_000, 5_000), report_ns=(10, 20), seed=7)
    draws_a = [(a.submit_delay(), a.report_delay()) for _ in range(200)]
    draws_b = [(b.submit_delay(), b.report_delay()) for _ in range(200)]
    assert draws_a == draws_b
    assert all(1_000 <= s <= 5_000 and 10 <= r <= 20 for s, r in draws_a)
    assert len({s for s, _ in draws_a}) > 100  # it does vary
    other = UniformLatency(submit_ns=(1_000, 5_000), report_ns=(10, 20), seed=8)
    assert [other.submit_delay() for _ in range(20)] != [s for s, _ in draws_a[:20]]
    with pytest.raises(ValueError, match="low 9 > high 3"):
        UniformLatency(submit_ns=(9, 3), report_ns=(0, 0))
