"""Parcel matching: the order of each method, exact splits of partial parcels, specific
identification and its errors, and (Hypothesis) conservation of quantity and cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tax_helpers import acquisition, at, disposal

from sapphire.compliance.tax import (
    Acquisition,
    Disposal,
    Method,
    Parcel,
    ParcelPool,
    Piece,
    TaxInputError,
)
from sapphire.compliance.tax.common import exact

D = Decimal


def _pool(
    method: Method, identification: dict[str, list[tuple[str, Decimal]]] | None = None
) -> ParcelPool:
    pool = ParcelPool(method, identification)
    pool.acquire(acquisition("p1", "2024-07-01", "1", "100"))  # 100 a unit
    pool.acquire(acquisition("p2", "2024-07-02", "1", "300"))  # 300
    pool.acquire(acquisition("p3", "2024-07-03", "1", "200"))  # 200
    return pool


@pytest.mark.parametrize(
    ("method", "order"),
    [
        (Method.FIFO, ["p1", "p2"]),
        (Method.LIFO, ["p3", "p2"]),
        (Method.HIFO, ["p2", "p3"]),
    ],
)
def test_each_method_takes_its_parcels_in_its_order(method: Method, order: list[str]) -> None:
    pieces = _pool(method).dispose(disposal("d", "2024-08-01", "1.5", "900"))
    assert [p.parcel_id for p in pieces] == order
    assert [p.quantity for p in pieces] == [D(1), D("0.5")]
    assert sum(p.proceeds for p in pieces) == D(900)
    assert [p.proceeds for p in pieces] == [D(600), D(300)]  # by quantity


def test_a_partial_parcel_is_split_exactly_into_thirds() -> None:
    pool = ParcelPool(Method.FIFO)
    pool.acquire(acquisition("p", "2024-07-01", "3", "100"))
    taken = [pool.dispose(disposal(f"d{i}", "2024-08-01", "1", "50"))[0].cost for i in range(2)]
    (left,) = pool.remaining()
    # 100/3, then half of the 66.66...67 left (rounded at the 18th place, half to even)
    assert taken == [D("33.333333333333333333"), D("33.333333333333333334")]
    assert taken[0] + taken[1] + left.cost == D(100) and left.quantity == D(1)
    assert left.cost == D("33.333333333333333333")
    last = pool.dispose(disposal("d2", "2024-08-02", "1", "50"))[0]
    assert last.cost == left.cost and pool.remaining() == []


def test_hifo_ties_go_to_the_earliest_parcel() -> None:
    pool = ParcelPool(Method.HIFO)
    pool.acquire(acquisition("late", "2024-07-05", "2", "400"))
    pool.acquire(acquisition("early", "2024-07-01", "1", "200"))
    (piece,) = pool.dispose(disposal("d", "2024-08-01", "1", "250"))
    assert piece.parcel_id == "early"


def test_disposing_of_more_than_is_held_names_the_disposal() -> None:
    with pytest.raises(TaxInputError, match=r"disposes of 3.5 BTC on 2024-08-01 but only 3 BTC"):
        _pool(Method.FIFO).dispose(disposal("d", "2024-08-01", "3.5", "1"))
    with pytest.raises(TaxInputError, match="only 0 ETH"):
        _pool(Method.FIFO).dispose(disposal("d", "2024-08-01", "1", "1", asset="ETH"))


def test_specific_identification_takes_the_named_parcels() -> None:
    chosen = {"d": [("p3", D("0.25")), ("p1", D("0.75"))]}
    pool = _pool(Method.SPECIFIC, chosen)
    pieces = pool.dispose(disposal("d", "2024-08-01", "1", "400"))
    assert [(p.parcel_id, p.quantity, p.cost) for p in pieces] == [
        ("p3", D("0.25"), D(50)), ("p1", D("0.75"), D(75)),
    ]  # fmt: skip
    assert {p.parcel_id: p.quantity for p in pool.remaining()} == {
        "p1": D("0.25"), "p2": D(1), "p3": D("0.75"),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        ({}, "names no parcels for disposal d"),
        ({"d": [("nope", D(1))]}, "parcel nope is not held on 2024-08-01"),
        ({"d": [("p1", D("0.5"))]}, "names 0.5 BTC, the disposal is 1"),
        ({"d": [("p1", D("0.75")), ("p1", D("0.75"))]}, "takes 1.5 from parcel p1, which holds 1"),
    ],
)
def test_a_bad_identification_is_named(
    chosen: dict[str, list[tuple[str, Decimal]]], message: str
) -> None:
    with pytest.raises(TaxInputError, match=message):
        _pool(Method.SPECIFIC, chosen).dispose(disposal("d", "2024-08-01", "1", "400"))


def test_a_parcel_acquired_after_the_disposal_cannot_be_identified() -> None:
    pool = ParcelPool(Method.SPECIFIC, {"d": [("later", D(1))]})
    pool.acquire(acquisition("p1", "2024-07-01", "1", "100"))
    with pytest.raises(TaxInputError, match="parcel later is not held"):
        pool.dispose(disposal("d", "2024-08-01", "1", "400"))


def test_specific_identification_needs_the_file() -> None:
    with pytest.raises(TaxInputError, match="needs the file"):
        ParcelPool(Method.SPECIFIC)


# -- properties --------------------------------------------------------------------------

amounts = st.decimals(min_value=D("0.00000001"), max_value=D(1000), places=8)
costs = st.decimals(min_value=D(0), max_value=D(10_000_000), places=6)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Acquisition], list[Disposal]]:
    """Acquisitions, then disposals of parts of what is held (never more)."""
    n = draw(st.integers(1, 8))
    buys = [
        Acquisition(f"p{i}", "BTC", at("2024-07-01") + timedelta(hours=i), at("2024-07-01").date(),
                    draw(amounts), draw(costs), "t", "b")
        for i in range(n)
    ]  # fmt: skip
    held = sum(b.quantity for b in buys)
    sells = []
    for i in range(draw(st.integers(1, 6))):
        share = draw(st.decimals(min_value=D(0), max_value=D(1), places=4))
        quantity = (held * share).quantize(D("0.00000001"))
        if quantity <= 0:
            continue
        held -= quantity
        sells.append(
            Disposal(f"d{i}", "BTC", at("2024-09-01") + timedelta(hours=i), at("2024-09-01").date(),
                     quantity, draw(costs), "t", "s")
        )  # fmt: skip
    return buys, sells


@settings(max_examples=150, deadline=None)
@given(history=histories(), method=st.sampled_from([Method.FIFO, Method.LIFO, Method.HIFO]))
def test_matching_conserves_quantity_and_cost(
    history: tuple[list[Acquisition], list[Disposal]], method: Method
) -> None:
    buys, sells = history
    pool = ParcelPool(method)
    for buy in buys:
        pool.acquire(buy)
    pieces = [piece for sell in sells for piece in pool.dispose(sell)]
    left = pool.remaining()
    with exact():
        _conserved(buys, sells, pieces, left)
    assert all(p.quantity > 0 and p.cost >= 0 for p in [*pieces, *left])


def _conserved(
    buys: list[Acquisition], sells: list[Disposal], pieces: list[Piece], left: list[Parcel]
) -> None:
    assert sum(p.quantity for p in pieces) + sum(p.quantity for p in left) == sum(
        b.quantity for b in buys
    )
    assert sum(p.cost for p in pieces) + sum(p.cost for p in left) == sum(b.cost for b in buys)
    for sell in sells:
        own = [p for p in pieces if p.disposal is sell]
        assert sum(p.quantity for p in own) == sell.quantity
        assert sum(p.proceeds for p in own) == sell.proceeds


@settings(max_examples=100, deadline=None)
@given(history=histories(), data=st.data())
def test_specific_identification_conserves_quantity_and_cost(
    history: tuple[list[Acquisition], list[Disposal]], data: st.DataObject
) -> None:
    """An identification drawn at random among the parcels held gives the same totals."""
    buys, sells = history
    held = {b.parcel_id: b.quantity for b in buys}
    chosen: dict[str, list[tuple[str, Decimal]]] = {}
    for sell in sells:
        left = sell.quantity
        order = data.draw(st.permutations(sorted(held)))
        for parcel_id in order:
            take = min(left, held[parcel_id])
            if take > 0:
                chosen.setdefault(sell.disposal_id, []).append((parcel_id, take))
                held[parcel_id] -= take
                left -= take
    pool = ParcelPool(Method.SPECIFIC, chosen)
    for buy in buys:
        pool.acquire(buy)
    pieces = [piece for sell in sells for piece in pool.dispose(sell)]
    left_parcels = pool.remaining()
    with exact():
        total = sum(p.cost for p in pieces) + sum(p.cost for p in left_parcels)
    assert total == sum(b.cost for b in buys)
    assert {p.parcel_id: p.quantity for p in left_parcels} == {
        k: v for k, v in held.items() if v > 0
    }
