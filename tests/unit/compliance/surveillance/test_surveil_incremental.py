"""The monitor fed event by event, as a node delivers them, raises the same alerts as the
batch run over the store, each as soon as its moment is complete."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from surveil_helpers import BUY, SELL, Tape, at

from sapphire.compliance.surveillance import (
    RISK_EVENT_KIND,
    Alert,
    Rule,
    SurveillanceMonitor,
    order_events,
    surveil,
)
from sapphire.domain import ClientOrderId, OrderEvent, OrderInitialized
from sapphire.store import Store

CLOSE = 14 * 3600  # 2022-01-04 00:00 UTC in seconds after the tape's start


def every_pattern(tape: Tape | None = None, day: int = 0) -> Tape:
    """One of each pattern, across two runs and five strategies, with ordinary trading
    around them (on `day` days after the first, the ids prefixed with the day)."""
    tape = tape or Tape()
    t0 = 86_400 * day
    p = f"d{day}-" if day else ""
    # wash: s1 (run r1) rests a sell that s2 (run r2) buys into
    tape.limit(f"{p}w-sell", SELL, "2", "100", t0, strategy="s1")
    tape.fill(f"{p}w-sell", t0 + 3, "100")
    tape.market(f"{p}w-buy", BUY, "2", "100", t0 + 3, strategy="s2", run="r2")
    # spoofing: a big bid near the touch, a small sell, the bid canceled
    tape.limit(f"{p}sp-bid", BUY, "10", "99.95", t0 + 100, strategy="s3")
    tape.market(f"{p}sp-sell", SELL, "2", "100", t0 + 105, strategy="s3")
    tape.cancel(f"{p}sp-bid", t0 + 108)
    # layering: stepped offers, a buy on the other side, the offers canceled
    for k, price in enumerate(("100.03", "100.05", "100.07")):
        tape.limit(f"{p}ly-ask{k}", SELL, "1", price, t0 + 200 + k, strategy="s3", run="r2")
    tape.market(f"{p}ly-buy", BUY, "1", "100", t0 + 210, strategy="s3", run="r2")
    for k in range(3):
        tape.cancel(f"{p}ly-ask{k}", t0 + 215 + k)
    # order-to-trade: s4 churns far from the price in the next hour
    for k in range(60):
        cid = tape.limit(f"{p}ot-{k}", BUY, "1", "90", t0 + 3600 + 30 * k, strategy="s4")
        if k < 2:
            tape.fill(cid, t0 + 3601 + 30 * k, "90")
        else:
            tape.cancel(cid, t0 + 3601 + 30 * k)
    # ordinary trading through the day, then buying into the close that lifts the price
    for k in range(4):
        side = BUY if k % 2 else SELL
        tape.market(f"{p}day-{k}", side, "1", "100", t0 + 9000 + 7200 * k, strategy="s5")
    for k, price in enumerate(("100.1", "100.2", "100.3", "100.4", "100.5")):
        tape.market(f"{p}mc-{k}", BUY, "1", price, t0 + CLOSE - 280 + 60 * k, strategy="s5")
    tape.market(f"{p}after", SELL, "1", "100.4", t0 + CLOSE + 600, strategy="s5")
    return tape


@pytest.fixture(scope="module")
def tape() -> Tape:
    return every_pattern()


@pytest.fixture(scope="module")
def stored(tape: Tape, tmp_path_factory: pytest.TempPathFactory) -> list[Alert]:
    """The batch run over the store holding the tape."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('surveil') / 'store.db'}")
    tape.record(store)
    alerts = surveil(store)
    assert surveil(store, run_ids=["r1", "r2"]) == alerts
    with pytest.raises(ValueError, match="no run 'r9'"):
        surveil(store, run_ids=["r9"])
    store.close()
    return alerts


def test_the_batch_run_over_the_store_finds_each_pattern_once(stored: list[Alert]) -> None:
    assert [a.rule for a in stored] == [
        Rule.WASH_TRADE, Rule.SPOOFING, Rule.LAYERING, Rule.ORDER_TO_TRADE,
        Rule.MARKING_THE_CLOSE,
    ]  # fmt: skip
    wash, spoof, layering, ratio, close = stored
    assert wash.run_ids == ("r1", "r2") and wash.client_order_ids == ("w-buy", "w-sell")
    assert spoof.client_order_ids == ("sp-bid", "sp-sell")
    assert layering.run_ids == ("r2",) and layering.ts_ns == at(217)
    assert ratio.strategy_ids == ("s4",) and ratio.ts_ns == at(7200)
    assert close.ts_ns == at(CLOSE) and len(close.client_order_ids) == 5


def _node_feed(
    tape: Tape, seed: int, *, with_init: bool, delay: float = 0.0
) -> tuple[SurveillanceMonitor, list[tuple[Alert, int]]]:
    """Feed the tape's events as a node would: the orders of each moment interleaved at
    random, the clock advanced after every event, the OrderInitialized events not on the
    bus (given with each order's first event) unless `with_init`; with `delay` each
    moment's events held back up to that many seconds (arriving after later ones)."""
    arrivals = tape.arrivals(seed)
    if delay:
        rng = random.Random(seed)
        late = [(e.ts_ns + rng.uniform(0, delay) * 1e9, i) for i, (_, e) in enumerate(arrivals)]
        keep: dict[ClientOrderId, float] = {}
        for due, i in late:  # an order's events keep their order
            cid = arrivals[i][1].client_order_id
            keep[cid] = max(keep.get(cid, 0.0), due)
            late[i] = (keep[cid], i)
        arrivals = [arrivals[i] for _, i in sorted(late)]
    inits = {e.client_order_id: e for _, e in arrivals if isinstance(e, OrderInitialized)}
    monitor = SurveillanceMonitor(run_id="r1")
    raised: list[tuple[Alert, int]] = []
    clock = 0
    for run, event in arrivals:
        if isinstance(event, OrderInitialized) and not with_init:
            continue
        init = None if with_init else inits[event.client_order_id]
        new = monitor.on_order_event(event, run_id=None if run == "r1" else run, init=init)
        clock = max(clock, event.ts_ns)
        new += monitor.advance(clock)
        raised += [(a, monitor.watermark or 0) for a in new]
    raised += [(a, -1) for a in monitor.close()]
    return monitor, raised


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_events_fed_one_by_one_raise_the_batch_alerts(
    tape: Tape, stored: list[Alert], seed: int
) -> None:
    monitor, raised = _node_feed(tape, seed, with_init=seed == 1)
    assert sorted(monitor.alerts, key=lambda a: a.key) == stored
    assert [a for a, _ in raised] == monitor.alerts
    # each came once its moment (or period) was complete, none at the end, none early
    assert all(a.ts_ns < mark for a, mark in raised)
    assert monitor.late_events == 0


def test_events_out_of_time_order_within_reorder_s_change_nothing(
    tape: Tape, stored: list[Alert]
) -> None:
    monitor, _ = _node_feed(tape, 4, with_init=False, delay=4.0)  # reorder_s is 5
    assert sorted(monitor.alerts, key=lambda a: a.key) == stored
    assert monitor.late_events == 0


def test_an_event_later_than_reorder_s_is_still_taken_and_counted() -> None:
    tape = Tape()
    tape.limit("bid", BUY, "10", "99.95", 0)
    tape.market("sell", SELL, "2", "100", 5)
    tape.cancel("bid", 8)
    monitor = SurveillanceMonitor()
    events = [e for _, e in tape.events]
    fill = next(i for i, e in enumerate(events) if e.client_order_id == "sell" and
                type(e).__name__ == "OrderFilled")  # fmt: skip
    held = events.pop(fill)
    for event in events:
        monitor.on_order_event(event)
    monitor.advance(at(20))  # the spoof's moment is judged without the fill
    assert monitor.on_order_event(held) == [] and monitor.late_events == 1
    assert monitor.close() == [] and monitor.alerts == []


def test_an_order_without_its_specification_is_refused_by_name(tape: Tape) -> None:
    monitor = SurveillanceMonitor()
    first_other = next(e for _, e in tape.events if not isinstance(e, OrderInitialized))
    with pytest.raises(ValueError, match=r"order w-sell \(run run\): its OrderInitialized"):
        monitor.on_order_event(first_other)
    inits = {e.client_order_id: e for _, e in tape.events if isinstance(e, OrderInitialized)}
    looked_up = SurveillanceMonitor(specs=inits.get)
    assert looked_up.on_order_event(first_other) == []
    assert looked_up.ledger.orders == {}  # its moment is not complete yet
    assert looked_up.advance(at(10)) == []
    assert looked_up.ledger.orders[("run", ClientOrderId("w-sell"))].price == 100
    looked_up.close()
    with pytest.raises(ValueError, match="closed"):
        looked_up.on_order_event(first_other)


def test_an_alert_becomes_a_risk_event_and_json(stored: list[Alert]) -> None:
    spoof = stored[1]
    event = spoof.to_risk_event()
    assert event.kind == RISK_EVENT_KIND and event.strategy_id == "s3"
    assert event.reason.startswith("SPOOFING: BUY LIMIT 10 @ 99.95")
    mapping = spoof.to_mapping()
    assert mapping["time"] == "2022-01-03T10:01:48.000Z"
    assert mapping["client_order_ids"] == ["sp-bid", "sp-sell"]
    assert event.detail == mapping


def test_the_stores_order_events_keep_each_orders_history(tmp_path: Path, tape: Tape) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    tape.record(store)
    events = order_events(store, ["r2", "r2"])
    assert {run for run, _ in events} == {"r2"}
    mine = [e for _, e in events if e.client_order_id == "ly-ask0"]
    assert [type(e).__name__ for e in mine] == [
        "OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderCancelRequested",
        "OrderCanceled",
    ]  # fmt: skip
    assert all(isinstance(e, OrderEvent) for _, e in events)
    store.close()


def test_a_long_stream_is_judged_alike_day_after_day_and_old_orders_are_forgotten() -> None:
    tape = Tape()
    for day in range(4):
        every_pattern(tape, day)
    alerts = tape.alerts()
    assert len(alerts) == 20
    first = every_pattern().alerts()
    for day in range(4):
        same_day = alerts[5 * day : 5 * day + 5]
        assert [a.rule for a in same_day] == [a.rule for a in first]
        assert [a.ts_ns - 86_400 * day * 1_000_000_000 for a in same_day] == [
            a.ts_ns for a in first
        ]
        assert [[c.removeprefix(f"d{day}-") for c in a.client_order_ids] for a in same_day] == [
            list(a.client_order_ids) for a in first
        ]
    # from the second day, a period also holds the order placed after the previous close
    closes = [a.figures["period_orders"] for a in alerts if a.rule is Rule.MARKING_THE_CLOSE]
    assert closes == [9, 10, 10, 10]
    monitor = SurveillanceMonitor()
    for run, event in tape.events:
        monitor.on_order_event(event, run_id=run)
    assert len(monitor.ledger.orders) < len(tape.orders) / 2  # days-old ones are gone
    monitor.close()
    assert sorted(monitor.alerts, key=lambda a: a.key) == alerts


def test_a_specification_older_than_the_judged_moments_is_not_a_late_event() -> None:
    tape = Tape()
    tape.limit("old", BUY, "1", "90", 0)  # initialized, submitted and accepted at 0
    init, submitted = (e for _, e in tape.events[:2])
    monitor = SurveillanceMonitor()
    monitor.advance(at(100))
    late = type(submitted)(ts_ns=at(100), client_order_id=submitted.client_order_id)
    assert monitor.on_order_event(late, init=init) == []
    assert isinstance(init, OrderInitialized) and monitor.late_events == 0
    other = Tape()
    other.limit("other", BUY, "1", "90", 0)
    other_init, other_submitted = (e for _, e in other.events[:2])
    assert monitor.on_order_event(other_submitted, init=other_init) == []
    assert monitor.late_events == 1  # the submission, taken at the first open moment
