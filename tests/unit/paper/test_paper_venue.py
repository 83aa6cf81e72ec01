"""The paper venue's durable book: idempotency by client order id, tombstones, the
journal that a restarted venue replays, lockstep polling."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from sapphire.domain import (
    ClientOrderId,
    Order,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    StrategyId,
)
from sapphire.paper import NEVER_REACHED, PaperConfig, VenueBook
from sapphire.paper.server import make_sizer
from sapphire.strategy.base import Bars

CONFIG = PaperConfig(speed="max", taker_fee=0.001, maker_fee=0.0002)


def _bars(n: int = 6) -> Bars:
    t = np.arange(n, dtype=np.int64) * 60_000_000_000 + 1_600_000_000_000_000_000
    o = np.array([100.0, 101.0, 102.0, 99.0, 98.0, 103.0][:n])
    return Bars(
        time=t, open=o, high=o + 2.0, low=o - 2.0, close=o + 0.5, volume=np.ones(n),
        timeframe_ns=60_000_000_000,
    )  # fmt: skip


def _order(cid: str, side: OrderSide = OrderSide.BUY, price: str | None = None) -> Order:
    iid = CONFIG.instrument_id
    if price is None:
        order = Order.market(
            ClientOrderId(cid), StrategyId("s"), iid, side, Decimal("0.5"), ts_init=0
        )
    else:
        order = Order.limit(
            ClientOrderId(cid),
            StrategyId("s"),
            iid,
            side,
            Decimal("0.5"),
            Decimal(price),
            ts_init=0,
        )
    order.apply(OrderSubmitted(ts_ns=0, client_order_id=ClientOrderId(cid)))
    return order


def _book(tmp_path: Path) -> VenueBook:
    return VenueBook(CONFIG, tmp_path / "venue.db", _bars(), name="V")


def test_a_resubmitted_client_order_id_never_creates_a_second_order(tmp_path: Path) -> None:
    book = _book(tmp_path)
    first = book.submit(_order("c-1", price="95"))
    again = book.submit(_order("c-1", price="95"))
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["order"].status is OrderStatus.ACCEPTED
    assert [type(e).__name__ for e in again["events"]] == ["OrderAccepted"]
    assert len(book.orders) == 1
    assert book.db.execute("SELECT COUNT(*) FROM inputs WHERE kind='submit'").fetchone() == (1,)


def test_market_order_fills_at_the_next_open_with_taker_fee(tmp_path: Path) -> None:
    book = _book(tmp_path)
    book.step()  # bar 0
    book.submit(_order("m-1"))
    book.step()  # bar 1 opens at 101
    state = book.query("m-1")
    fill = state["events"][-1]
    assert isinstance(fill, OrderFilled)
    assert (fill.last_px, fill.last_qty, fill.fee) == (
        Decimal("101.0"), Decimal("0.5"), Decimal("0.0505"),
    )  # fmt: skip
    snap = book.snapshot()
    assert snap["positions"][str(CONFIG.instrument_id)] == Decimal("0.5")
    assert snap["balances"]["QUOTE"] == Decimal("10000.0") - Decimal("0.0505")


def test_reconcile_of_an_unknown_id_rejects_it_for_good(tmp_path: Path) -> None:
    book = _book(tmp_path)
    state = book.reconcile("lost-1", ts_ns=5)
    (event,) = state["events"]
    assert event.reason == NEVER_REACHED
    # a late copy of the submission cannot create the order afterwards
    late = book.submit(_order("lost-1"))
    assert late["duplicate"] is True and late["order"] is None
    assert "lost-1" not in book.orders
    # reconcile of a known order returns its events and writes nothing new
    book.submit(_order("k-1", price="90"))
    head = len(book.stream)
    assert book.reconcile("k-1")["order"].status is OrderStatus.ACCEPTED
    assert len(book.stream) == head


def test_a_restarted_venue_replays_its_journal_to_the_same_state(tmp_path: Path) -> None:
    book = _book(tmp_path)
    book.step()
    book.submit(_order("a", price="99.5"))
    book.submit(_order("b", OrderSide.SELL))
    book.reconcile("ghost")
    book.step()
    book.step()
    book.submit(_order("c", price="50"))
    book.cancel("c")
    book.step()
    before = book.snapshot()
    stream = [(e.seq, e.kind, e.bar, e.event) for e in book.stream]
    book.close()
    again = _book(tmp_path)
    assert again.snapshot() == before
    assert [(e.seq, e.kind, e.bar, e.event) for e in again.stream] == stream
    # and it carries on from there
    assert again.step() is True
    assert again.next_bar == before["next_bar"] + 1


def test_a_venue_database_of_another_configuration_is_refused(tmp_path: Path) -> None:
    _book(tmp_path).close()
    with pytest.raises(ValueError, match="another paper configuration"):
        VenueBook(PaperConfig(speed="max", cash=5.0), tmp_path / "venue.db", _bars())


def test_lockstep_poll_moves_one_bar_when_the_caller_has_seen_everything(
    tmp_path: Path,
) -> None:
    book = _book(tmp_path)
    r = book.poll(0, advance=True)
    assert [(e.kind, e.bar) for e in r["entries"]] == [("bar", 0)]
    assert book.poll(0, advance=True)["head"] == 1  # not seen yet: no new bar
    assert book.poll(1, advance=False)["entries"] == []
    for _k in range(1, 6):
        book.poll(len(book.stream), advance=True)
    kinds = [e.kind for e in book.stream]
    assert kinds[-2:] == ["bar", "end"] and book.done
    assert book.step() is False


def test_sizers_rebuilt_from_their_spec() -> None:
    CONFIG = PaperConfig()
    equity = make_sizer({"mode": "equity", "size": "0.5", "lot": "0.01"}, CONFIG)
    assert equity is not None
    assert equity(Decimal(100), Decimal(1000)) == Decimal("5.00")
    notional = make_sizer({"mode": "notional", "size": "1000", "lot": None}, CONFIG)
    assert notional is not None and notional(Decimal(400), Decimal(0)) == Decimal("2.5")
    tiny = make_sizer({"mode": "fixed", "size": "0.001", "lot": "0.01"}, CONFIG)
    assert tiny is not None and tiny(Decimal(1), Decimal(1)) == "size below lot"
    assert make_sizer(None, CONFIG) is None
    with pytest.raises(ValueError, match="mode='kelly'"):
        make_sizer({"mode": "kelly", "size": "1"}, CONFIG)
