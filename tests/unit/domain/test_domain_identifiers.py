"""Identifiers and enums: formatting, parsing, validation, typing by class."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sapphire.domain import (
    AccountId,
    ClientOrderId,
    ContingencyType,
    ContractType,
    InstrumentId,
    LiquiditySide,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionSide,
    StrategyId,
    TimeInForce,
    TradeId,
    TradingState,
    TrailingOffsetType,
    VenueOrderId,
)

token = st.text(
    alphabet=st.characters(blacklist_categories=("Z", "C"), blacklist_characters="@"),
    min_size=1,
    max_size=20,
)


def test_instrument_id_str_and_parse() -> None:
    iid = InstrumentId("BTC/USDT:USDT", "BYBIT")
    assert str(iid) == "BTC/USDT:USDT@BYBIT"
    assert InstrumentId.parse("BTC/USDT:USDT@BYBIT") == iid
    assert InstrumentId.parse("BTCUSDT@BYBIT") != iid


@given(symbol=token, venue=token)
def test_instrument_id_round_trips_through_str(symbol: str, venue: str) -> None:
    iid = InstrumentId(symbol, venue)
    assert InstrumentId.parse(str(iid)) == iid
    assert hash(InstrumentId.parse(str(iid))) == hash(iid)


@pytest.mark.parametrize("bad", ["BTCUSDT", "A@B@C", "@BYBIT", "BTC@", "", " BTC@BYBIT"])
def test_instrument_id_parse_refuses_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)instrument|symbol|venue"):
        InstrumentId.parse(bad)


def test_instrument_id_refuses_bad_parts() -> None:
    with pytest.raises(ValueError, match="'@'"):
        InstrumentId("BTC@X", "BYBIT")
    with pytest.raises(ValueError, match="venue"):
        InstrumentId("BTC", "")
    with pytest.raises(ValueError, match="symbol"):
        InstrumentId("BTC USDT", "BYBIT")
    with pytest.raises(ValueError, match="symbol"):
        InstrumentId(123, "BYBIT")  # type: ignore[arg-type]


def test_instrument_id_is_frozen() -> None:
    iid = InstrumentId("BTCUSDT", "BYBIT")
    with pytest.raises(AttributeError):
        iid.symbol = "ETHUSDT"  # type: ignore[misc]


@pytest.mark.parametrize("cls", [StrategyId, ClientOrderId, VenueOrderId, TradeId, AccountId])
def test_string_ids_behave_as_their_string(cls: type[str]) -> None:
    value = cls("abc-1")
    assert value == "abc-1"
    assert hash(value) == hash("abc-1")
    assert isinstance(value, str)
    assert type(value) is cls
    assert repr(value) == f"{cls.__name__}('abc-1')"
    restored = pickle.loads(pickle.dumps(value))
    assert restored == value and type(restored) is cls


@pytest.mark.parametrize("cls", [StrategyId, ClientOrderId, VenueOrderId, TradeId, AccountId])
@pytest.mark.parametrize("bad", ["", " x", "x ", "a b", "a\tb", 5, None])
def test_string_ids_refuse_bad_values(cls: type[str], bad: object) -> None:
    with pytest.raises(ValueError, match=cls.__name__):
        cls(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "enum",
    [
        OrderSide,
        OrderType,
        TimeInForce,
        OrderStatus,
        LiquiditySide,
        PositionSide,
        TrailingOffsetType,
        ContingencyType,
        TradingState,
        ContractType,
    ],
)
def test_enum_values_are_their_names(enum: type) -> None:
    for member in enum:
        assert member.value == member.name
        assert enum(member.name) is member


def test_enum_members_match_the_contract() -> None:
    assert [m.name for m in OrderType] == [
        "MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT", "TRAILING_STOP",
    ]  # fmt: skip
    assert [m.name for m in TimeInForce] == ["GTC", "IOC", "FOK", "GTD"]
    assert [m.name for m in OrderStatus] == [
        "INITIALIZED", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED",
        "PENDING_CANCEL", "CANCELED", "REJECTED", "EXPIRED",
    ]  # fmt: skip
    assert [m.name for m in ContingencyType] == ["NONE", "OCO", "OTO", "BRACKET"]
    assert [m.name for m in TradingState] == ["ACTIVE", "REDUCING", "HALTED"]
    assert [m.name for m in ContractType] == ["SPOT", "PERPETUAL", "FUTURE"]
    assert [m.name for m in PositionSide] == ["FLAT", "LONG", "SHORT"]


def test_order_side_sign_and_opposite() -> None:
    assert OrderSide.BUY.sign == 1
    assert OrderSide.SELL.sign == -1
    assert OrderSide.BUY.opposite is OrderSide.SELL
    assert OrderSide.SELL.opposite is OrderSide.BUY


def test_terminal_statuses() -> None:
    terminal = {s for s in OrderStatus if s.is_terminal}
    assert terminal == {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
    }
