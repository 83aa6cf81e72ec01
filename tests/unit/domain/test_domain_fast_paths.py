"""The fast paths of the domain give exactly what the validating paths give: events built
without validation (`trusted_builder`), the cached `InstrumentId` hash, the generator's
pre-validated client order ids, the whitespace check of identifiers."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from decimal import Decimal

import pytest

from sapphire.domain import (
    ClientOrderId,
    ClientOrderIdGenerator,
    InstrumentId,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    PositionOpened,
    PositionSide,
    RiskEvent,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.events import new_event_id, trusted, trusted_builder

IID = InstrumentId("BTC/USDT:USDT", "SIM")
CID = ClientOrderId("r-s-1")

EVENTS = [
    (OrderSubmitted, {"event_id": "r-1", "ts_ns": 5, "client_order_id": CID}),
    (OrderCanceled, {"event_id": "r-2", "ts_ns": 0, "client_order_id": CID}),
    (
        OrderAccepted,
        {"event_id": "SIM-E1", "ts_ns": 7, "client_order_id": CID,
         "venue_order_id": VenueOrderId("SIM-1")},
    ),
    (
        OrderFilled,
        {"event_id": "SIM-E2", "ts_ns": 9, "client_order_id": CID,
         "trade_id": TradeId("SIM-T1"), "last_qty": Decimal("0.010"),
         "last_px": Decimal("50000.1"), "liquidity": LiquiditySide.TAKER,
         "fee": Decimal("-0.25"), "fee_currency": "USDT",
         "venue_order_id": VenueOrderId("SIM-1")},
    ),
    (
        PositionOpened,
        {"event_id": "x", "ts_ns": 9, "strategy_id": StrategyId("s"), "instrument_id": IID,
         "side": PositionSide.SHORT, "quantity": Decimal("-0.01"),
         "avg_px": Decimal("50000.1"), "realized_pnl": Decimal(0), "currency": "USDT"},
    ),
]  # fmt: skip


@pytest.mark.parametrize("cls,values", EVENTS, ids=[c.__name__ for c, _ in EVENTS])
def test_trusted_events_equal_validated_ones(cls: type, values: dict[str, object]) -> None:
    fast = trusted_builder(cls)(**values)
    slow = cls(**values)
    assert type(fast) is cls
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    for f in dataclasses.fields(cls):
        assert getattr(fast, f.name) is getattr(slow, f.name), f.name
    assert trusted(cls, **values) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.ts_ns = 1  # type: ignore[attr-defined]


def test_trusted_builder_fills_defaults_and_refuses_unknown_fields() -> None:
    event = trusted(RiskEvent, ts_ns=3, kind="pre_trade", reason="no")
    assert event.detail == {} and event.strategy_id is None
    assert len(event.event_id) == 32  # a fresh random id, as the validating constructor
    other = trusted(RiskEvent, ts_ns=3, kind="pre_trade", reason="no")
    assert other.detail is not event.detail and other.event_id != event.event_id
    with pytest.raises(TypeError, match="bogus"):
        trusted(OrderCanceled, ts_ns=1, client_order_id=CID, bogus=1)
    with pytest.raises(TypeError):
        trusted(OrderCanceled, ts_ns=1)  # client_order_id is required
    assert trusted_builder(OrderFilled) is trusted_builder(OrderFilled)


def test_new_event_ids_are_uuid4_hex() -> None:
    import uuid

    ids = {new_event_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4 and parsed.hex == value


def test_instrument_id_hash_pickle_copy_and_fields() -> None:
    iid = InstrumentId("ETH/USDT:USDT", "BYBIT")
    assert hash(iid) == hash(("ETH/USDT:USDT", "BYBIT"))
    assert [f.name for f in dataclasses.fields(iid)] == ["symbol", "venue"]
    assert dataclasses.asdict(iid) == {"symbol": "ETH/USDT:USDT", "venue": "BYBIT"}
    for twin in (
        pickle.loads(pickle.dumps(iid)),
        copy.copy(iid),
        copy.deepcopy(iid),
        InstrumentId.parse(str(iid)),
    ):
        assert twin == iid and hash(twin) == hash(iid)
        assert {iid: 1}[twin] == 1
    moved = dataclasses.replace(iid, venue="OKX")
    assert moved == InstrumentId("ETH/USDT:USDT", "OKX") and hash(moved) != hash(iid)
    with pytest.raises(dataclasses.FrozenInstanceError):
        iid.venue = "X"
    with pytest.raises(ValueError, match="whitespace"):
        InstrumentId("ETH USDT", "BYBIT")


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\x1c", "\x85", "\u2003", "\u3000"])
def test_identifiers_refuse_every_unicode_whitespace(space: str) -> None:
    assert space.isspace()
    for value in (f"a{space}b", f"{space}ab", f"ab{space}"):
        with pytest.raises(ValueError, match="whitespace"):
            ClientOrderId(value)
    assert ClientOrderId("a\u200bb") == "a\u200bb"  # a zero-width space is not whitespace


def test_generated_client_order_ids_are_typed_like_validated_ones() -> None:
    gen = ClientOrderIdGenerator(StrategyId("sma"), "run")
    first = gen.next()
    assert type(first) is ClientOrderId and first == ClientOrderId("run-sma-1")
    assert first == gen.id_for(1) and repr(first) == "ClientOrderId('run-sma-1')"
    assert gen.next() == "run-sma-2" and gen.last_seq == 2
    gen.restore(41)
    assert gen.next() == "run-sma-42"


def test_order_side_sign_and_opposite() -> None:
    assert OrderSide.BUY.sign == 1 and OrderSide.SELL.sign == -1
    assert OrderSide.BUY.opposite is OrderSide.SELL
    assert OrderSide.SELL.opposite is OrderSide.BUY


def test_a_forked_child_draws_its_own_event_ids() -> None:
    import os

    new_event_id()  # the pool now holds ids drawn by this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = new_event_id()
    assert len(child) == 32 and child != mine
