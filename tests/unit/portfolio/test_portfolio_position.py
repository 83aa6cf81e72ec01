"""Position and PositionBook: hand-worked examples, validation, and an exact reference."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import InstrumentId, OrderSide, PositionSide, StrategyId
from sapphire.portfolio import Position, PositionBook

BUY, SELL = OrderSide.BUY, OrderSide.SELL
BTC = InstrumentId("BTC/USDT:USDT", "BYBIT")
ETH = InstrumentId("ETH/USDT:USDT", "BYBIT")
S1 = StrategyId("s1")


def test_increase_moves_the_average_and_partial_close_realises():
    pos = Position(BTC, S1)
    assert pos.apply_fill(BUY, D(1), D(100), D("0.1"), 1) == 0
    assert pos.apply_fill(BUY, D(2), D(103), D("0.2"), 2) == 0
    assert pos.quantity == 3 and pos.avg_px == 102 and pos.side is PositionSide.LONG
    assert pos.unrealized_pnl(D(110)) == 24
    # sell 1.5 at 110: realises 1.5 * (110 - 102) = 12; the rest keeps its average
    assert pos.apply_fill(SELL, D("1.5"), D(110), D("0.15"), 3) == 12
    assert pos.quantity == D("1.5") and pos.avg_px == 102
    assert pos.realized_pnl == 12 and pos.fees == D("0.45")
    assert pos.unrealized_pnl(D(100)) == -3
    assert pos.total_pnl(D(100)) == 12 - 3 - D("0.45")
    assert pos.buy_qty == 3 and pos.sell_qty == D("1.5") and pos.fill_count == 3
    assert pos.opened_ts_ns == 1 and pos.last_ts_ns == 3 and pos.closed_ts_ns is None
    # the docs' example goes on: sell 3 at 90 closes 1.5 (1.5 * (90 - 102) = -18) and
    # opens short 1.5 at 90
    assert pos.apply_fill(SELL, D(3), D(90), ts_ns=4) == -18
    assert pos.quantity == D("-1.5") and pos.avg_px == 90 and pos.realized_pnl == -6


def test_flip_closes_then_opens_the_remainder_at_the_fill_price():
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, D(2), D(100), ts_ns=1)
    # sell 5 at 90: closes 2 (realised 2 * (90 - 100) = -20), opens short 3 at 90
    assert pos.apply_fill(SELL, D(5), D(90), ts_ns=2) == -20
    assert pos.quantity == -3 and pos.avg_px == 90 and pos.side is PositionSide.SHORT
    assert pos.opened_ts_ns == 2
    assert pos.unrealized_pnl(D(80)) == 30  # a short gains when the price falls
    # buy 4 at 85: closes the short 3 (realised 3 * (90 - 85) = 15), opens long 1 at 85
    assert pos.apply_fill(BUY, D(4), D(85), ts_ns=3) == 15
    assert pos.quantity == 1 and pos.avg_px == 85 and pos.realized_pnl == -5


def test_full_close_resets_cost_and_records_the_close():
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, D(1), D(100))
    pos.apply_fill(BUY, D(2), D(101))  # average 100.666... (not a finite decimal)
    pos.apply_fill(SELL, D(1), D(101))
    pos.apply_fill(SELL, D(2), D(99), ts_ns=9)
    assert pos.is_flat and pos.side is PositionSide.FLAT and pos.avg_px is None
    assert pos.cost_basis == 0 and pos.closed_ts_ns == 9
    # exactly the cash result: -100 - 202 + 101 + 198 = -3
    assert pos.realized_pnl == -3
    assert pos.unrealized_pnl(D(1)) == 0 and pos.notional(D(1)) == 0


def test_short_average_and_partial_cover():
    pos = Position(BTC, S1)
    pos.apply_fill(SELL, D(1), D(200))
    pos.apply_fill(SELL, D(1), D(210))
    assert pos.quantity == -2 and pos.avg_px == 205
    assert pos.apply_fill(BUY, D("0.5"), D(200)) == D("2.5")
    assert pos.quantity == D("-1.5") and pos.avg_px == 205
    assert pos.notional(D(200)) == -300


def test_funding_long_pays_a_positive_rate_short_receives():
    long_ = Position(BTC, S1)
    long_.apply_fill(BUY, D(2), D(100))
    assert long_.apply_funding(D("0.0001"), D(150)) == D("-0.03")
    short = Position(ETH, S1)
    short.apply_fill(SELL, D(2), D(100))
    assert short.apply_funding(D("0.0001"), D(150)) == D("0.03")
    assert short.apply_funding(D("-0.0002"), D(100)) == D("-0.04")
    assert short.funding == D("-0.01")
    flat = Position(BTC, S1)
    assert flat.apply_funding(D("0.01"), D(100)) == 0 and flat.funding == 0
    assert long_.total_pnl(D(100)) == D("-0.03")


def test_multiplier_scales_pnl_notional_and_funding():
    pos = Position(BTC, S1, multiplier=D("0.001"))
    pos.apply_fill(BUY, D(10), D(30000))
    assert pos.notional(D(31000)) == 310
    assert pos.unrealized_pnl(D(31000)) == 10
    assert pos.apply_fill(SELL, D(4), D(32000)) == 8
    assert pos.apply_funding(D("0.001"), D(32000)) == D("-0.192")


def test_negative_fee_is_a_rebate():
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, D(1), D(100), D("-0.01"))
    assert pos.fees == D("-0.01") and pos.total_pnl(D(100)) == D("0.01")


def test_floats_are_converted_through_str():
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, 0.1, 0.3)
    assert pos.quantity == D("0.1") and pos.avg_px == D("0.3")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"qty": D(0)}, "fill qty"),
        ({"qty": D(-1)}, "fill qty"),
        ({"px": D(0)}, "fill price"),
        ({"px": "abc"}, "fill price"),
        ({"px": float("nan")}, "fill price"),
        ({"fee": True}, "fee"),
        ({"side": "BUY?"}, "side"),
        ({"ts_ns": 1.5}, "ts_ns"),
    ],
)
def test_bad_fill_input_is_refused_and_leaves_the_position_unchanged(kwargs, match):
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, D(1), D(100))
    args = {"side": BUY, "qty": D(1), "px": D(100), "fee": D(0), "ts_ns": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        pos.apply_fill(**args)
    assert pos.quantity == 1 and pos.fill_count == 1


def test_bad_constructor_and_mark_inputs():
    with pytest.raises(ValueError, match="instrument_id"):
        Position("BTC", S1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiplier"):
        Position(BTC, S1, multiplier=D(0))
    with pytest.raises(ValueError, match="hedge leg"):
        Position(BTC, S1, leg=PositionSide.FLAT)
    pos = Position(BTC, S1)
    pos.apply_fill(BUY, D(1), D(100))
    with pytest.raises(ValueError, match="mark price"):
        pos.unrealized_pnl(D(0))
    with pytest.raises(ValueError, match="funding rate"):
        pos.apply_funding("x", D(1))


def test_hedge_legs_do_not_flip():
    long_leg = Position(BTC, S1, leg=PositionSide.LONG)
    long_leg.apply_fill(BUY, D(1), D(100))
    with pytest.raises(ValueError, match=r"LONG leg .* below zero"):
        long_leg.apply_fill(SELL, D(2), D(100))
    assert long_leg.quantity == 1
    short_leg = Position(BTC, S1, leg=PositionSide.SHORT)
    with pytest.raises(ValueError, match=r"SHORT leg .* above zero"):
        short_leg.apply_fill(BUY, D(1), D(100))
    short_leg.apply_fill(SELL, D(1), D(100))
    assert short_leg.quantity == -1


def test_position_book_netting_and_hedge():
    net = PositionBook()
    net.apply_fill(BTC, BUY, D(1), D(100))
    net.apply_fill(BTC, SELL, D(3), D(100))
    assert net.net_quantity(BTC) == -2 and len(net) == 1
    with pytest.raises(ValueError, match="which is netted in this book"):
        net.apply_fill(BTC, BUY, D(1), D(1), position_side=PositionSide.LONG)
    with pytest.raises(ValueError, match="multiplier"):
        net.apply_fill(BTC, BUY, D(1), D(1), multiplier=D(2))

    hedge = PositionBook(hedge=True, strategy_id=S1)
    hedge.apply_fill(BTC, BUY, D(2), D(100), position_side=PositionSide.LONG)
    hedge.apply_fill(BTC, SELL, D(3), D(110), position_side=PositionSide.SHORT)
    assert hedge.net_quantity(BTC) == -1
    long_leg = hedge.get(BTC, PositionSide.LONG)
    short_leg = hedge.get(BTC, PositionSide.SHORT)
    assert long_leg is not None and short_leg is not None
    assert long_leg.quantity == 2 and short_leg.quantity == -3 and long_leg.strategy_id == S1
    # a SELL on the LONG leg reduces it: realises 1 * (120 - 100)
    _, realized = hedge.apply_fill(BTC, SELL, D(1), D(120), position_side=PositionSide.LONG)
    assert realized == 20
    assert hedge.apply_funding(BTC, D("0.01"), D(100)) == D(2)  # long 1 pays 1, short 3 gets 3
    with pytest.raises(ValueError, match="needs position_side"):
        hedge.apply_fill(BTC, BUY, D(1), D(1))
    assert [p.leg for p in hedge.positions(BTC)] == [PositionSide.LONG, PositionSide.SHORT]
    assert hedge.instruments() == [BTC] and len(hedge.open_positions()) == 2
    assert hedge.is_hedged(ETH)


def test_position_book_hedges_only_the_listed_instruments():
    book = PositionBook(hedge=[BTC])
    assert book.is_hedged(BTC) and not book.is_hedged(ETH)
    book.apply_fill(BTC, BUY, D(1), D(100), position_side=PositionSide.LONG)
    book.apply_fill(ETH, SELL, D(1), D(100))
    assert book.net_quantity(ETH) == -1
    with pytest.raises(ValueError, match="needs position_side"):
        book.apply_fill(BTC, BUY, D(1), D(100))
    with pytest.raises(ValueError, match="InstrumentIds"):
        PositionBook(hedge=["BTC"])  # type: ignore[list-item]


# ------------------------------------------------------------------------ properties

fills = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.decimals(D("0.001"), D(50), places=3),
        st.decimals(D("0.01"), D(100000), places=2),
        st.decimals(D(-1), D(5), places=4),
    ),
    min_size=1,
    max_size=40,
)


class _Reference:
    """Average-cost accounting in exact rationals, written from the definition."""

    def __init__(self) -> None:
        self.qty = Fraction(0)
        self.avg = Fraction(0)
        self.realized = Fraction(0)

    def fill(self, sign: int, qty: Fraction, px: Fraction) -> None:
        if self.qty == 0 or (self.qty > 0) == (sign > 0):
            total = abs(self.qty) + qty
            self.avg = (abs(self.qty) * self.avg + qty * px) / total
            self.qty += sign * qty
            return
        closed = min(qty, abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        self.realized += direction * closed * (px - self.avg)
        self.qty += sign * closed
        if qty > closed:
            self.qty = sign * (qty - closed)
            self.avg = px
        elif self.qty == 0:
            self.avg = Fraction(0)


@settings(max_examples=150, deadline=None)
@given(fills, st.decimals(D("0.01"), D(100000), places=2), st.sampled_from([D(1), D("0.01")]))
def test_random_fills_match_exact_average_cost_accounting(seq, mark, multiplier):
    pos = Position(BTC, S1, multiplier=multiplier)
    ref = _Reference()
    cash = D(0)
    partial_closes = 0
    for side, qty, px, fee in seq:
        if pos.quantity * side.sign < 0 and qty < abs(pos.quantity):
            partial_closes += 1
        pos.apply_fill(side, qty, px, fee)
        ref.fill(side.sign, Fraction(qty), Fraction(px))
        cash += -side.sign * qty * px * multiplier - fee
        # the sum of signed fills is the position
        assert pos.quantity == sum((s.sign * q for s, q, _, _ in seq[: pos.fill_count]), D(0))
        assert pos.buy_qty - pos.sell_qty == pos.quantity
        assert Fraction(pos.quantity) == ref.qty
    # cash + marked position == realised + unrealised - fees, exactly
    assert cash + pos.quantity * mark * multiplier == pos.total_pnl(mark)
    # the split between realised and unrealised is the exact average-cost one, up to the
    # 1e-16 rounding of each partial close's cost share
    tolerance = Fraction(partial_closes) * Fraction(1, 10**16) * Fraction(multiplier)
    assert abs(Fraction(pos.realized_pnl) - ref.realized * Fraction(multiplier)) <= tolerance
    if pos.is_open:
        assert pos.avg_px is not None
        cost_error = partial_closes * Fraction(1, 10**16) / abs(ref.qty)
        assert abs(Fraction(pos.avg_px) - ref.avg) <= cost_error + Fraction(1, 10**20)
