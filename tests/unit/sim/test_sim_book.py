"""L2Book: snapshot + deltas from real Bybit and Binance files, sequence checks, crosses."""

from __future__ import annotations

import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import InstrumentId, OrderBook, OrderBookDelta, OrderSide
from sapphire.sim.book import BookSequenceError, BookUpdate, L2Book
from sapphire.sim.replay import read_binance_depth, read_bybit_orderbook

DATA = Path(__file__).parents[2] / "data"
BYBIT = DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip"
XRP = InstrumentId("XRPUSDT", "BYBIT")
BTC = InstrumentId("BTCUSDT", "BINANCE")
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def _hand_book(lines: list[dict]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """The Bybit book recomputed from the raw JSON with Decimal dicts (no sapphire code)."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for msg in lines:
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, key in ((bids, "b"), (asks, "a")):
            for price, size in msg["data"][key]:
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)
    return bids, asks


def _raw_bybit() -> list[dict]:
    with zipfile.ZipFile(BYBIT) as archive:
        (name,) = archive.namelist()
        return [json.loads(line) for line in archive.read(name).decode().splitlines()]


def _delta(side: OrderSide, price: float, size: float, ts: int = 1) -> OrderBookDelta:
    return OrderBookDelta(XRP, ts, side, price, size)


def _snapshot(bids: list[tuple[float, float]], asks: list[tuple[float, float]], uid: int = 10):
    deltas = [_delta(BUY, p, s) for p, s in bids] + [_delta(SELL, p, s) for p, s in asks]
    return BookUpdate(XRP, 1, True, tuple(deltas), uid)


# -- Bybit -------------------------------------------------------------------------------


def test_bybit_snapshot_and_49_deltas_apply_and_match_a_hand_recomputation() -> None:
    updates = read_bybit_orderbook(BYBIT, XRP)
    assert len(updates) == 50
    assert updates[0].is_snapshot and not any(u.is_snapshot for u in updates[1:])
    book = L2Book(XRP)
    assert all(book.apply_update(u) for u in updates)
    assert book.update_id == 20254918
    assert book.removed_crossed_levels == 0  # the real stream never crosses itself

    bids, asks = _hand_book(_raw_bybit())
    hand_bid, hand_ask = max(bids), min(asks)
    assert book.best_bid == (float(hand_bid), float(bids[hand_bid]))
    assert book.best_ask == (float(hand_ask), float(asks[hand_ask]))
    # the literal values, read off the file by hand
    assert book.best_bid == (1.9537, 10605.0)
    assert book.best_ask == (1.9538, 6702.0)
    assert book.levels(BUY) == [(float(p), float(bids[p])) for p in sorted(bids, reverse=True)]
    assert book.levels(SELL) == [(float(p), float(asks[p])) for p in sorted(asks)]
    # sane: one tick of spread on XRP's 0.0001 grid, around 1.95, 500 levels a side
    assert book.best_ask[0] - book.best_bid[0] == pytest.approx(0.0001)
    assert book.mid == pytest.approx(1.95375)
    assert book.depth(BUY) == book.depth(SELL) == 500
    assert book.ts_ns == 1733011205490 * 1_000_000
    snap = book.to_order_book(depth=5)
    assert isinstance(snap, OrderBook)
    assert snap.best_bid == 1.9537 and snap.best_ask == 1.9538 and len(snap.bids) == 5


def test_bybit_gap_is_refused_with_the_ids() -> None:
    updates = read_bybit_orderbook(BYBIT, XRP)
    book = L2Book(XRP)
    for update in updates[:10]:
        book.apply_update(update)
    with pytest.raises(BookSequenceError, match=r"gap after update 20254878.*20254880"):
        book.apply_update(updates[11])  # updates[10] (u = 20254879) is missing
    assert book.update_id == 20254878


def test_delta_before_any_snapshot_is_refused() -> None:
    updates = read_bybit_orderbook(BYBIT, XRP)
    with pytest.raises(BookSequenceError, match="before any snapshot"):
        L2Book(XRP).apply_update(updates[1])


def test_an_old_update_is_skipped_and_changes_nothing() -> None:
    updates = read_bybit_orderbook(BYBIT, XRP)
    book = L2Book(XRP)
    for update in updates[:5]:
        book.apply_update(update)
    before = (book.levels(BUY), book.levels(SELL))
    assert book.apply_update(updates[3]) is False
    assert (book.levels(BUY), book.levels(SELL)) == before


def test_a_new_snapshot_resets_book_and_sequence() -> None:
    book = L2Book(XRP)
    book.apply_update(_snapshot([(1.0, 5)], [(1.1, 5)], uid=10))
    book.apply_update(BookUpdate(XRP, 2, False, (_delta(BUY, 0.9, 1),), 11))
    book.apply_update(_snapshot([(2.0, 1)], [(2.1, 1)], uid=100))
    assert book.levels(BUY) == [(2.0, 1.0)] and book.levels(SELL) == [(2.1, 1.0)]
    assert not book.apply_update(BookUpdate(XRP, 3, False, (_delta(BUY, 1.9, 1),), 12))
    with pytest.raises(BookSequenceError, match="expected an update covering id 101"):
        book.apply_update(BookUpdate(XRP, 3, False, (_delta(BUY, 1.9, 1),), 102))
    assert book.apply_update(BookUpdate(XRP, 3, False, (_delta(BUY, 1.9, 1),), 101))


# -- Binance -----------------------------------------------------------------------------


def test_binance_snapshot_and_update_rows_parse_into_messages() -> None:
    (snap,) = read_binance_depth(DATA / "binance-btcusdt-depth-snap.csv", BTC)
    (update,) = read_binance_depth(DATA / "binance-btcusdt-depth-update.csv", BTC)
    assert snap.is_snapshot and len(snap.deltas) == 100
    assert snap.update_id == snap.first_update_id == 2098021528332
    assert snap.prev_update_id is None  # pu = -1
    assert not update.is_snapshot and len(update.deltas) == 100
    assert (update.first_update_id, update.update_id, update.prev_update_id) == (
        2098041693435,
        2098041696700,
        2098041693400,
    )
    assert snap.ts_ns == 1667346579146 * 1_000_000


def test_binance_update_ten_minutes_after_the_snapshot_is_a_gap() -> None:
    (snap,) = read_binance_depth(DATA / "binance-btcusdt-depth-snap.csv", BTC)
    (update,) = read_binance_depth(DATA / "binance-btcusdt-depth-update.csv", BTC)
    book = L2Book(BTC)
    book.apply_update(snap)
    assert book.best_bid == (20377.0, 1.77) and book.best_ask is None  # bids-only snapshot
    with pytest.raises(BookSequenceError, match="2098021528333"):
        book.apply_update(update)


def test_binance_snapshot_then_update_without_sequence_check_matches_by_hand() -> None:
    (snap,) = read_binance_depth(DATA / "binance-btcusdt-depth-snap.csv", BTC)
    (update,) = read_binance_depth(DATA / "binance-btcusdt-depth-update.csv", BTC)
    book = L2Book(BTC)
    book.apply_update(snap)
    assert book.apply_update(update, check_sequence=False)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for rows in (
        (DATA / "binance-btcusdt-depth-snap.csv").read_text().splitlines()[1:],
        (DATA / "binance-btcusdt-depth-update.csv").read_text().splitlines()[1:],
    ):
        for row in rows:
            *_, side, _, price, qty, _ = row.split(",")
            levels = bids if side == "b" else asks
            if float(qty) == 0:
                levels.pop(float(price), None)
            else:
                levels[float(price)] = float(qty)
    assert book.levels(BUY) == sorted(bids.items(), reverse=True)
    assert book.levels(SELL) == sorted(asks.items())
    assert book.best_bid == (20472.1, 22.276) and book.best_ask == (20472.2, 4.211)
    assert not book.is_crossed and book.update_id == 2098041696700


def test_binance_prev_update_id_chain() -> None:
    book = L2Book(XRP)
    book.apply_update(_snapshot([(1.0, 5)], [(1.1, 5)], uid=100))
    # first batch must straddle the snapshot id; then each pu must equal the last u
    first = BookUpdate(XRP, 2, False, (_delta(BUY, 1.0, 4),), 105, 95, 90)
    assert book.apply_update(first)
    assert book.apply_update(BookUpdate(XRP, 3, False, (_delta(BUY, 1.0, 3),), 110, 106, 105))
    with pytest.raises(BookSequenceError, match="prev_update_id 110"):
        book.apply_update(BookUpdate(XRP, 4, False, (_delta(BUY, 1.0, 2),), 120, 112, 111))
    assert book.best_bid == (1.0, 3.0)


# -- crosses -----------------------------------------------------------------------------


def test_a_fresh_level_removes_the_stale_opposite_levels_it_crosses() -> None:
    book = L2Book(XRP)
    book.apply_update(_snapshot([(1.0, 5), (0.9, 5)], [(1.1, 5), (1.2, 5), (1.3, 5)]))
    book.apply_update(BookUpdate(XRP, 2, False, (_delta(BUY, 1.2, 7),), 11))
    assert book.best_bid == (1.2, 7.0) and book.best_ask == (1.3, 5.0)
    assert book.removed_crossed_levels == 2
    book.apply_delta(_delta(SELL, 1.0, 2, ts=3))
    assert book.best_ask == (1.0, 2.0) and book.best_bid == (0.9, 5.0)


def test_a_batch_that_crosses_itself_or_a_crossed_snapshot_is_refused() -> None:
    book = L2Book(XRP)
    book.apply_update(_snapshot([(1.0, 5)], [(1.1, 5)]))
    with pytest.raises(ValueError, match="crosses itself"):
        book.apply_update(
            BookUpdate(XRP, 2, False, (_delta(BUY, 1.2, 1), _delta(SELL, 1.15, 1)), 11)
        )
    with pytest.raises(ValueError, match="crossed"):
        L2Book(XRP).apply_update(_snapshot([(1.2, 5)], [(1.1, 5)]))


def test_bad_updates_name_the_value() -> None:
    with pytest.raises(ValueError, match="size > 0"):
        BookUpdate(XRP, 1, True, (_delta(BUY, 1.0, 0),), 1)
    with pytest.raises(ValueError, match="BTCUSDT@BINANCE"):
        BookUpdate(XRP, 1, False, (OrderBookDelta(BTC, 1, BUY, 1.0, 1.0),), 1)
    with pytest.raises(ValueError, match="first_update_id 5 > update_id 4"):
        BookUpdate(XRP, 1, False, (), 4, 5)
    with pytest.raises(ValueError, match="applied to the book of"):
        L2Book(BTC).apply_update(_snapshot([(1.0, 1)], []))


# -- property ----------------------------------------------------------------------------

_deltas = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(90, 110),
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_deltas)
def test_book_never_crosses_and_keeps_the_fresh_level(deltas: list) -> None:
    book = L2Book(XRP)
    book.apply_update(_snapshot([(99.0, 1.0)], [(101.0, 1.0)], uid=0))
    model_bids, model_asks = {99.0: 1.0}, {101.0: 1.0}
    for uid, (side, tick, size) in enumerate(deltas, start=1):
        price = tick / 1.0
        assert book.apply_update(BookUpdate(XRP, uid, False, (_delta(side, price, size),), uid))
        own, other = (model_bids, model_asks) if side is BUY else (model_asks, model_bids)
        if size == 0:
            own.pop(price, None)
        else:
            own[price] = size
            for p in [p for p in other if (p <= price if side is BUY else p >= price)]:
                del other[p]
        assert not book.is_crossed
        bids, asks = book.levels(BUY), book.levels(SELL)
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        assert all(s > 0 for _, s in bids + asks)
        assert book.size_at(side, price) == size
        assert dict(bids) == model_bids and dict(asks) == model_asks
