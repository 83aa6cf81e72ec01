"""Instrument precision: quantisation edge cases and grid properties."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sapphire.domain import ContractType, Instrument, InstrumentId, to_decimal

D = Decimal


def make(tick: str = "0.5", lot: str = "0.001", **kw: object) -> Instrument:
    options: dict[str, object] = {"maker_fee": D("0.0002"), "taker_fee": D("0.00055")}
    options.update(kw)
    return Instrument(
        InstrumentId("BTC/USDT:USDT", "BYBIT"),
        "BTC",
        "USDT",
        "USDT",
        ContractType.PERPETUAL,
        D(tick),
        D(lot),
        **options,  # type: ignore[arg-type]
    )


# -- to_decimal --------------------------------------------------------------------------


def test_to_decimal_goes_through_str_for_floats() -> None:
    assert to_decimal(0.1) == D("0.1")
    assert to_decimal(0.1) != D(0.1)  # the binary expansion is not what the user meant
    assert to_decimal(3) == D(3)
    assert to_decimal(" 1.25 ") == D("1.25")
    assert to_decimal(D("7.5")) == D("7.5")


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), "NaN", "-Infinity", "abc", None])
def test_to_decimal_refuses_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match="price"):
        to_decimal(bad, "price")


# -- quantize_price ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("100.25", "100.0"),  # tie: to even (200 ticks)
        ("100.75", "101.0"),  # tie: to even (202 ticks)
        ("100.24", "100.0"),
        ("100.26", "100.5"),
        ("100", "100.0"),
        ("0.2", "0.0"),
        ("-100.3", "-100.5"),
    ],
)
def test_quantize_price_half_even(price: str, expected: str) -> None:
    result = make().quantize_price(D(price))
    assert result == D(expected)
    assert str(result) == expected


def test_quantize_price_other_roundings() -> None:
    inst = make(tick="0.01")
    assert inst.quantize_price("1.005") == D("1.00")
    assert inst.quantize_price("1.005", rounding=ROUND_HALF_UP) == D("1.01")
    assert inst.quantize_price("1.001", rounding=ROUND_CEILING) == D("1.01")
    assert inst.quantize_price("1.009", rounding=ROUND_FLOOR) == D("1.00")


def test_quantize_price_for_ticks_above_one() -> None:
    inst = make(tick="10", lot="1")
    assert inst.quantize_price("15") == D("20")  # 1.5 ticks -> 2 (even)
    assert inst.quantize_price("25") == D("20")  # 2.5 ticks -> 2 (even)
    assert inst.quantize_price("26") == D("30")
    assert str(inst.quantize_price("26")) == "30"
    assert inst.price_precision == 0


def test_quantize_price_quarter_ticks() -> None:
    inst = make(tick="0.25")
    assert inst.quantize_price("1.12") == D("1.00")
    assert inst.quantize_price("1.13") == D("1.25")
    assert inst.price_precision == 2


def test_no_negative_zero() -> None:
    assert str(make().quantize_price("-0.1")) == "0.0"
    assert str(make().quantize_qty("-0.0001")) == "0.000"


# -- quantize_qty --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("1.23456", "1.234"),
        ("1.2349999", "1.234"),
        ("0.0009", "0.000"),
        ("2", "2.000"),
        ("-1.2345", "-1.234"),  # towards zero
    ],
)
def test_quantize_qty_rounds_down(qty: str, expected: str) -> None:
    result = make().quantize_qty(qty)
    assert result == D(expected)
    assert str(result) == expected


def test_quantize_qty_with_coarse_lots() -> None:
    inst = make(lot="5")
    assert inst.quantize_qty("14.99") == D("10")
    assert inst.quantize_qty(15) == D("15")
    assert inst.size_precision == 0


# -- make_price / make_qty -----------------------------------------------------------------


def test_make_price_accepts_every_input_type_on_the_grid() -> None:
    inst = make(tick="0.01")
    for raw in ("100.5", 100.5, D("100.50"), D("100.500")):
        assert inst.make_price(raw) == D("100.5")
    assert str(inst.make_price(100)) == "100.00"
    assert inst.make_price(0.07) == D("0.07")  # 0.07 is 0.0700000000000000067... as binary


def test_make_price_off_the_tick_names_the_value() -> None:
    with pytest.raises(ValueError, match=r"price '100\.3' is not a multiple of the tick size 0\.5"):
        make().make_price("100.3")
    with pytest.raises(ValueError, match=r"0\.30000000000000004"):
        make(tick="0.1").make_price(0.1 + 0.2)


def test_make_price_quantizes_when_asked() -> None:
    assert make().make_price("100.3", quantize=True) == D("100.5")
    assert make(tick="0.1").make_price(0.1 + 0.2, quantize=True) == D("0.3")


@pytest.mark.parametrize("bad", ["0", "-1", 0, -0.5])
def test_make_price_refuses_non_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="price must be > 0"):
        make().make_price(bad)  # type: ignore[arg-type]


def test_make_price_refuses_a_price_that_rounds_to_zero() -> None:
    with pytest.raises(ValueError, match="rounds to 0"):
        make().make_price("0.2", quantize=True)


def test_make_qty() -> None:
    inst = make()
    assert inst.make_qty("0.5") == D("0.5")
    assert str(inst.make_qty(1)) == "1.000"
    assert inst.make_qty(0.1) == D("0.1")
    with pytest.raises(ValueError, match=r"quantity '1\.0005' is not a multiple of the lot size"):
        inst.make_qty("1.0005")
    assert inst.make_qty("1.0005", quantize=True) == D("1.000")
    with pytest.raises(ValueError, match="below one lot"):
        inst.make_qty("0.0004", quantize=True)
    with pytest.raises(ValueError, match="quantity must be > 0"):
        inst.make_qty(0)
    with pytest.raises(ValueError, match="quantity"):
        inst.make_qty(float("nan"))
    with pytest.raises(ValueError, match="bool"):
        inst.make_qty(True)


# -- grid properties ----------------------------------------------------------------------

ticks = st.sampled_from(["0.5", "0.01", "0.25", "1", "10", "0.0001", "2.5"]).map(D)
values = st.decimals(
    min_value=D("-1000000"), max_value=D("1000000"), allow_nan=False, allow_infinity=False, places=6
)


@given(tick=ticks, value=values)
def test_quantize_price_lands_on_the_nearest_tick(tick: Decimal, value: Decimal) -> None:
    inst = make(tick=str(tick), lot="1")
    result = inst.quantize_price(value)
    assert result % tick == 0
    assert abs(result - value) <= tick / 2
    assert inst.quantize_price(result) == result
    down = inst.quantize_price(value, rounding=ROUND_DOWN)
    assert abs(down) <= abs(value)
    assert abs(value - down) < tick


@given(lot=ticks, value=values)
def test_quantize_qty_never_grows(lot: Decimal, value: Decimal) -> None:
    inst = make(tick="0.01", lot=str(lot))
    result = inst.quantize_qty(value)
    assert result % lot == 0
    assert abs(result) <= abs(value)
    assert abs(value - result) < lot
    assert inst.quantize_qty(result) == result


@given(value=st.floats(min_value=0.01, max_value=1e6, allow_nan=False))
def test_make_price_with_quantize_is_always_on_the_grid(value: float) -> None:
    inst = make(tick="0.01")
    price = inst.make_price(value, quantize=True)
    assert price > 0 and inst.is_price_on_tick(price)
    assert abs(price - D(str(value))) <= D("0.005")


# -- construction ----------------------------------------------------------------------


def test_inputs_are_converted_to_decimal() -> None:
    inst = make(maker_fee=-0.0001, taker_fee="0.0006", min_qty=0.001, max_notional=1_000_000)
    assert inst.maker_fee == D("-0.0001")
    assert inst.taker_fee == D("0.0006")
    assert inst.min_qty == D("0.001")
    assert inst.max_notional == D(1_000_000)
    assert isinstance(inst.max_notional, Decimal)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tick": "0"}, "tick_size must be > 0"),
        ({"lot": "-0.1"}, "lot_size must be > 0"),
        ({"multiplier": D(0)}, "multiplier must be > 0"),
        ({"taker_fee": D("1.5")}, "taker_fee is a rate"),
        ({"min_qty": D(5), "max_qty": D(1)}, r"min_qty \(5\) is above max_qty \(1\)"),
        ({"min_notional": D(-1)}, "min_notional must be >= 0"),
    ],
)
def test_bad_instruments_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kw)  # type: ignore[arg-type]


def test_bad_contract_type_and_currency() -> None:
    iid = InstrumentId("X", "Y")
    with pytest.raises(ValueError, match="contract_type"):
        Instrument(iid, "B", "Q", "Q", "SWAP", D(1), D(1), maker_fee=D(0), taker_fee=D(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quote"):
        Instrument(iid, "B", "", "Q", ContractType.SPOT, D(1), D(1), maker_fee=D(0), taker_fee=D(0))
    inst = Instrument(iid, "B", "Q", "Q", "SPOT", D(1), D(1), maker_fee=D(0), taker_fee=D(0))  # type: ignore[arg-type]
    assert inst.contract_type is ContractType.SPOT


def test_notional_and_fee() -> None:
    inst = make(multiplier=D("0.01"))
    assert inst.notional(D("-2"), D("50000")) == D("1000")
    assert inst.fee(D("2"), D("50000"), maker=False) == D("0.55")
    assert inst.fee(D("2"), D("50000"), maker=True) == D("0.2")
