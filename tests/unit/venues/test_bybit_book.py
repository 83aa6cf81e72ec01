"""BybitOrderBook: the real orderbook.500 stream replayed against an independent book,
gaps, old deltas, stale and crossed books, restarts, malformed messages."""

from __future__ import annotations

import copy
import json
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import InstrumentId, OrderBook
from sapphire.sim.book import BookSequenceError
from sapphire.venues.bybit_book import BookStatus, BybitOrderBook

DATA = Path(__file__).parents[2] / "data"
BYBIT = DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip"
XRP = InstrumentId("XRPUSDT", "BYBIT")
TOPIC = "orderbook.500.XRPUSDT"
MS = 1_000_000

Side = dict[Decimal, Decimal]


def _messages() -> list[dict[str, Any]]:
    with zipfile.ZipFile(BYBIT) as archive:
        (name,) = archive.namelist()
        return [json.loads(line) for line in archive.read(name).decode().splitlines()]


MESSAGES = _messages()


def _reference(messages: list[dict[str, Any]]) -> tuple[Side, Side]:
    """The book rebuilt from raw messages with a plain dict per side (no sapphire code)."""
    bids: Side = {}
    asks: Side = {}
    for msg in messages:
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


def _sorted(bids: Side, asks: Side) -> tuple[list, list]:
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def _book_levels(book: BybitOrderBook) -> tuple[list, list]:
    return book.bids(), book.asks()


def _snapshot_of(bids: Side, asks: Side, u: int, ts: int) -> dict[str, Any]:
    """A Bybit snapshot message holding exactly these levels."""
    return {
        "topic": TOPIC,
        "type": "snapshot",
        "ts": ts,
        "data": {
            "s": "XRPUSDT",
            "b": [[str(p), str(s)] for p, s in sorted(bids.items(), reverse=True)],
            "a": [[str(p), str(s)] for p, s in sorted(asks.items())],
            "u": u,
            "seq": 1,
        },
        "cts": ts,
    }


def _delta(u: int, ts: int, b: list | None = None, a: list | None = None) -> dict[str, Any]:
    return {
        "topic": TOPIC,
        "type": "delta",
        "ts": ts,
        "data": {"s": "XRPUSDT", "b": b or [], "a": a or [], "u": u, "seq": u},
        "cts": ts,
    }


def _fed(messages: list[dict[str, Any]], **kwargs: Any) -> BybitOrderBook:
    book = BybitOrderBook(XRP, TOPIC, **kwargs)
    for msg in messages:
        assert book.apply(msg) is BookStatus.APPLIED
    return book


# -- the real stream ---------------------------------------------------------------------


def test_the_real_stream_equals_an_independent_book_after_every_message() -> None:
    assert len(MESSAGES) == 50 and MESSAGES[0]["type"] == "snapshot"
    book = BybitOrderBook(XRP, TOPIC)
    for i, msg in enumerate(MESSAGES):
        assert book.apply(msg) is BookStatus.APPLIED, book.resync_reason
        assert _book_levels(book) == _sorted(*_reference(MESSAGES[: i + 1])), f"message {i}"
        assert book.update_id == msg["data"]["u"] and book.seq == msg["data"]["seq"]
        assert book.in_sync
    # the literal top of the book, read off the file by hand
    assert book.best_bid == (Decimal("1.9537"), Decimal("10605"))
    assert book.best_ask == (Decimal("1.9538"), Decimal("6702"))
    assert len(book.bids()) == len(book.asks()) == 500
    counts = book.counters.as_dict()
    assert counts == {
        "messages": 50,
        "snapshots": 1,
        "deltas": 49,
        "restarts": 0,
        "skipped": 0,
        "refused": 0,
        "gaps": 0,
        "no_snapshot": 0,
        "stale": 0,
        "crossed": 0,
        "resyncs": 0,
    }


def test_top_n_views_and_the_domain_order_book() -> None:
    book = _fed(MESSAGES)
    bids, asks = _sorted(*_reference(MESSAGES))
    assert book.bids(5) == bids[:5] and book.asks(3) == asks[:3]
    assert book.bids(0) == []
    snap = book.to_order_book(depth=5)
    assert isinstance(snap, OrderBook) and snap.instrument_id == XRP
    assert snap.bids == tuple((float(p), float(s)) for p, s in bids[:5])
    assert snap.asks == tuple((float(p), float(s)) for p, s in asks[:5])
    assert snap.best_bid == 1.9537 and snap.best_ask == 1.9538
    assert snap.ts_ns == MESSAGES[-1]["ts"] * MS
    assert len(book.to_order_book().bids) == 500
    with pytest.raises(ValueError, match="depth must be an int >= 0 or None, got -1"):
        book.bids(-1)


# -- gaps and old deltas -----------------------------------------------------------------


def test_a_dropped_delta_is_a_gap_and_deltas_are_refused_until_a_snapshot() -> None:
    # the dropped message matters: without it the book would be wrong
    assert _reference(MESSAGES[:10] + MESSAGES[11:]) != _reference(MESSAGES)
    book = _fed(MESSAGES[:10])
    before = _book_levels(book)

    assert book.apply(MESSAGES[11]) is BookStatus.RESYNC  # MESSAGES[10] (u 20254879) lost
    assert book.counters.gaps == 1 and not book.in_sync
    assert book.resync_reason == f"{TOPIC}: gap: expected u 20254879, got u 20254880"
    with pytest.raises(BookSequenceError, match=r"orderbook\.500\.XRPUSDT: gap: expected u"):
        book.to_order_book()
    for msg in MESSAGES[12:20]:
        assert book.apply(msg) is BookStatus.WAITING
    assert book.counters.refused == 8 and book.counters.gaps == 1
    assert _book_levels(book) == before  # nothing applied while out of sync

    # a fresh snapshot (the true book at message 19) brings it back; the stream goes on
    bids, asks = _reference(MESSAGES[:20])
    last = MESSAGES[19]
    assert book.apply(_snapshot_of(bids, asks, last["data"]["u"], last["ts"])) is (
        BookStatus.APPLIED
    )
    assert book.in_sync and book.counters.resyncs == 1
    for i in range(20, 50):
        assert book.apply(MESSAGES[i]) is BookStatus.APPLIED
        assert _book_levels(book) == _sorted(*_reference(MESSAGES[: i + 1]))
    assert book.to_order_book().best_bid == 1.9537


def test_a_duplicated_or_old_delta_is_skipped_and_counted() -> None:
    book = _fed(MESSAGES[:6])
    before = _book_levels(book)
    # applying message 3 again would change the book: skipping it is what keeps it right
    assert _reference([*MESSAGES[:6], MESSAGES[3]]) != _reference(MESSAGES[:6])
    assert book.apply(MESSAGES[5]) is BookStatus.SKIPPED  # duplicate
    assert book.apply(MESSAGES[3]) is BookStatus.SKIPPED  # old
    assert book.counters.skipped == 2 and book.in_sync and book.update_id == 20254874
    assert _book_levels(book) == before
    for msg in MESSAGES[6:]:
        assert book.apply(msg) is BookStatus.APPLIED
    assert _book_levels(book) == _sorted(*_reference(MESSAGES))


def test_a_delta_before_any_snapshot_asks_for_a_resync_once() -> None:
    book = BybitOrderBook(XRP, TOPIC)
    assert not book.in_sync and book.resync_reason == f"{TOPIC}: no snapshot yet"
    with pytest.raises(BookSequenceError, match="no snapshot yet"):
        book.to_order_book()
    assert book.apply(MESSAGES[1]) is BookStatus.RESYNC
    assert book.resync_reason == f"{TOPIC}: delta u 20254870 before any snapshot"
    assert book.apply(MESSAGES[2]) is BookStatus.WAITING
    assert book.counters.no_snapshot == 1 and book.counters.refused == 1
    assert book.bids() == [] and book.best_bid is None and book.best_ask is None
    assert book.apply(MESSAGES[0]) is BookStatus.APPLIED
    assert book.counters.resyncs == 1
    # the snapshot is older than the deltas seen before it: the next one is a gap
    assert book.apply(MESSAGES[3]) is BookStatus.RESYNC and book.counters.gaps == 1


def test_the_first_snapshot_is_not_a_resync() -> None:
    book = _fed(MESSAGES[:3])
    assert book.counters.resyncs == 0 and book.counters.snapshots == 1


# -- stale -------------------------------------------------------------------------------


def test_a_delta_after_a_silence_longer_than_the_limit_makes_the_book_stale() -> None:
    book = _fed(MESSAGES[:5], stale_after_ms=1_000)
    late = copy.deepcopy(MESSAGES[5])
    late["ts"] = MESSAGES[4]["ts"] + 1_001
    assert book.apply(late) is BookStatus.RESYNC
    assert book.counters.stale == 1
    assert (
        book.resync_reason
        == f"{TOPIC}: stale: no message for 1001 ms (> 1000 ms) before u 20254874"
    )
    assert book.apply(MESSAGES[6]) is BookStatus.WAITING

    on_time = _fed(MESSAGES[:5], stale_after_ms=1_000)
    just = copy.deepcopy(MESSAGES[5])
    just["ts"] = MESSAGES[4]["ts"] + 1_000  # exactly the limit is still fresh
    assert on_time.apply(just) is BookStatus.APPLIED and on_time.counters.stale == 0

    never = _fed(MESSAGES[:5], stale_after_ms=None)
    assert never.apply(late) is BookStatus.APPLIED


def test_the_clock_finds_a_silent_book_stale() -> None:
    now = [MESSAGES[0]["ts"] * MS]
    book = _fed(MESSAGES[:1], stale_after_ms=2_000, clock=lambda: now[0])
    now[0] += 2_000 * MS
    assert book.check_stale() is False and book.in_sync
    now[0] += MS
    assert book.check_stale() is True
    assert book.check_stale() is False  # already out of sync: reported once
    assert book.counters.stale == 1 and not book.in_sync
    assert "stale: no message for 2001 ms (> 2000 ms) after u 20254869" in book.resync_reason
    assert book.apply(MESSAGES[1]) is BookStatus.WAITING
    bids, asks = _reference(MESSAGES[:1])
    assert book.apply(_snapshot_of(bids, asks, 20254869, now[0] // MS)) is BookStatus.APPLIED
    assert book.counters.resyncs == 1 and book.check_stale() is False
    # an explicit time works without a clock
    plain = _fed(MESSAGES[:1], stale_after_ms=2_000)
    assert plain.check_stale((MESSAGES[0]["ts"] + 2_001) * MS) is True
    with pytest.raises(ValueError, match="check_stale needs now_ns or a clock"):
        plain.check_stale()


# -- crossed, restarts -------------------------------------------------------------------


def test_a_crossed_book_asks_for_a_resync() -> None:
    book = _fed(MESSAGES[:1])
    ts, u = MESSAGES[0]["ts"], MESSAGES[0]["data"]["u"]
    best_ask = book.best_ask
    assert best_ask == (Decimal("1.9532"), Decimal("10480"))
    assert book.apply(_delta(u + 1, ts + 1, b=[["1.9532", "5"]])) is BookStatus.RESYNC
    assert book.counters.crossed == 1
    assert book.resync_reason == (
        f"{TOPIC}: crossed at u 20254870: best bid 1.9532 >= best ask 1.9532"
    )
    with pytest.raises(BookSequenceError, match="crossed"):
        book.to_order_book()
    assert book.apply(_delta(u + 2, ts + 2, b=[["1.9532", "0"]])) is BookStatus.WAITING
    crossed_snapshot = _snapshot_of(
        {Decimal("2"): Decimal("1")}, {Decimal("1.5"): Decimal("1")}, 7, ts + 3
    )
    assert book.apply(crossed_snapshot) is BookStatus.RESYNC
    assert book.counters.crossed == 2 and book.counters.resyncs == 1
    good = _snapshot_of({Decimal("1.5"): Decimal("1")}, {Decimal("2"): Decimal("1")}, 8, ts + 4)
    assert book.apply(good) is BookStatus.APPLIED and book.counters.resyncs == 2
    assert book.to_order_book().bids == ((1.5, 1.0),)


def test_a_u_1_snapshot_after_a_restart_resets_the_book_and_the_sequence() -> None:
    book = _fed(MESSAGES[:20])
    ts = MESSAGES[19]["ts"] + 10
    restart = _snapshot_of(
        {Decimal("1.9000"): Decimal("7")}, {Decimal("1.9100"): Decimal("8")}, 1, ts
    )
    assert book.apply(restart) is BookStatus.APPLIED
    assert book.counters.restarts == 1 and book.update_id == 1 and book.in_sync
    assert book.bids() == [(Decimal("1.9000"), Decimal("7"))]
    assert book.asks() == [(Decimal("1.9100"), Decimal("8"))]
    assert book.apply(_delta(2, ts + 1, a=[["1.9050", "3"]])) is BookStatus.APPLIED
    assert book.best_ask == (Decimal("1.9050"), Decimal("3"))
    assert book.counters.gaps == 0 and book.counters.resyncs == 0


def test_a_new_snapshot_replaces_every_level() -> None:
    book = _fed(MESSAGES[:1])
    small = _snapshot_of({Decimal("1"): Decimal("2")}, {Decimal("3"): Decimal("4")}, 5, 1)
    assert book.apply(small) is BookStatus.APPLIED
    assert book.bids() == [(Decimal("1"), Decimal("2"))]
    assert book.asks() == [(Decimal("3"), Decimal("4"))]


# -- bad input ---------------------------------------------------------------------------


def _bad(path: str, value: object) -> dict[str, Any]:
    msg = copy.deepcopy(MESSAGES[1])
    target = msg
    *parents, key = path.split(".")
    for parent in parents:
        target = target[parent]
    target[key] = value
    return msg


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (_bad("topic", "orderbook.50.XRPUSDT"), "got a message for topic 'orderbook.50.XRPUSDT'"),
        (_bad("type", "partial"), "message type must be snapshot or delta, got 'partial'"),
        (_bad("ts", "1733011200693"), "ts must be an int >= 0, got '1733011200693'"),
        (_bad("data", []), "data must be an object, got"),
        (_bad("data.s", "BTCUSDT"), "data.s must be 'XRPUSDT', got 'BTCUSDT'"),
        (_bad("data.u", None), "data.u must be an int >= 0, got None"),
        (_bad("data.seq", -1), "data.seq must be an int >= 0, got -1"),
        (_bad("data.b", "1.9"), "data.b must be a list of levels, got '1.9'"),
        (_bad("data.b", [[1.9531, "5"]]), r"data.b level must be .*got \[1.9531, '5'\]"),
        (_bad("data.a", [["NaN", "5"]]), r"data.a level .*got \['NaN', '5'\]"),
        (_bad("data.a", [["0", "5"]]), r"data.a level .*got \['0', '5'\]"),
        (_bad("data.a", [["1.95", "-1"]]), r"data.a level .*got \['1.95', '-1'\]"),
        (_bad("data.a", [["1.95"]]), r"data.a level .*got \['1.95'\]"),
        (_bad("data.a", [["abc", "1"]]), r"data.a level .*got \['abc', '1'\]"),
        ("{}", "must be a parsed JSON object"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_value_and_changes_nothing(
    msg: Any, error: str
) -> None:
    book = _fed(MESSAGES[:1])
    before = _book_levels(book)
    with pytest.raises(ValueError, match=error):
        book.apply(msg)
    assert _book_levels(book) == before and book.update_id == 20254869
    assert book.counters.messages == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"instrument_id": "XRPUSDT"}, "needs an InstrumentId, got 'XRPUSDT'"),
        ({"topic": "orderbook.XRPUSDT"}, "got 'orderbook.XRPUSDT'"),
        ({"topic": "tickers.500.XRPUSDT"}, "got 'tickers.500.XRPUSDT'"),
        ({"stale_after_ms": 0}, "stale_after_ms must be a positive int or None, got 0"),
        ({"stale_after_ms": 1.5}, "stale_after_ms must be a positive int or None, got 1.5"),
    ],
)
def test_a_bad_book_configuration_is_refused(kwargs: dict[str, Any], error: str) -> None:
    args: dict[str, Any] = {"instrument_id": XRP, "topic": TOPIC, **kwargs}
    with pytest.raises(ValueError, match=error):
        BybitOrderBook(**args)


# -- random streams ----------------------------------------------------------------------

_level = st.tuples(st.integers(1, 40), st.sampled_from(["0", "1", "2.5", "10"]))


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(
        st.tuples(st.lists(_level, max_size=6), st.lists(_level, max_size=6)),
        min_size=1,
        max_size=25,
    ),
    drop=st.one_of(st.none(), st.integers(0, 24)),
)
def test_random_delta_streams_match_the_reference_until_a_dropped_one(
    deltas: list[tuple[list, list]], drop: int | None
) -> None:
    """Bids on 0.0001..0.0040, asks on 1.0001..1.0040 (never crossed); one delta may be lost."""
    snapshot = _snapshot_of(
        {Decimal("0.0020"): Decimal("1")}, {Decimal("1.0020"): Decimal("1")}, 100, 1
    )
    messages = [snapshot]
    for i, (b, a) in enumerate(deltas, start=1):
        messages.append(
            _delta(
                100 + i,
                1 + i,
                b=[[f"0.{p:04d}", s] for p, s in b],
                a=[[f"1.{p:04d}", s] for p, s in a],
            )
        )
    book = BybitOrderBook(XRP, TOPIC)
    seen: list[dict[str, Any]] = []
    lost = drop is not None and drop + 1 < len(messages)
    for i, msg in enumerate(messages):
        if lost and i == drop + 1:
            continue
        status = book.apply(msg)
        if lost and i == drop + 2:
            assert status is BookStatus.RESYNC and book.counters.gaps == 1
        elif lost and i > drop + 2:
            assert status is BookStatus.WAITING
        else:
            assert status is BookStatus.APPLIED
            seen.append(msg)
            assert _book_levels(book) == _sorted(*_reference(seen))
    assert book.counters.gaps == (1 if lost and drop + 2 < len(messages) else 0)
