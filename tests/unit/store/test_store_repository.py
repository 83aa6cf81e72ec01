"""The repository on SQLite: exact round trips, replay, idempotent retries, integrity."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from store_helpers import (
    BTC,
    D28,
    S1,
    Recorder,
    assert_round_trip,
    sample_account_state,
)

from sapphire.domain import (
    AccountBalance,
    AccountId,
    AccountState,
    ClientOrderId,
    Order,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderSide,
    OrderSubmitted,
    RiskEvent,
)
from sapphire.store import Store, StoreIntegrityError


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def store(url: str) -> Store:
    with Store(url) as opened:
        yield opened


def _limit(run_id: str, n: int, ts: int = 1) -> Order:
    return Order.limit(
        ClientOrderId(f"{run_id}-{S1}-{n}"), S1, BTC, OrderSide.BUY, Decimal("1"),
        Decimal("100"), ts_init=ts,
    )  # fmt: skip


def test_every_entity_round_trips_exactly(store: Store) -> None:
    assert_round_trip(store, "run-a")


def test_default_url_is_the_sapphire_home_database(sapphire_home: Path) -> None:
    with Store() as store:
        assert store.url == f"sqlite:///{sapphire_home / 'sapphire.db'}"
        store.start_run("r", "backtest", 0)
    assert (sapphire_home / "sapphire.db").exists()


def test_a_new_store_on_the_same_file_sees_everything(url: str) -> None:
    """What a restarted node sees: every committed call, rebuilt into equal objects."""
    with Store(url) as first:
        first.start_run("run-b", "live", 5, [S1])
        rec = Recorder(first, "run-b")
        order = _limit("run-b", 1)
        rec.submit_accept(order)
        rec.fill(order, Decimal("0.3"), Decimal("100"), "t1")
        first.save_balances(sample_account_state(9))
    with Store(url) as second:
        assert second.run_id is None
        info = second.resume_run("run-b")
        assert info.status == "RUNNING" and info.strategy_ids == (S1,)
        assert second.open_orders("run-b") == [order]
        (state,) = second.balances("run-b").values()
        assert state.balances == sample_account_state(9).balances


def test_recording_fills_the_gaps_and_retries_are_no_ops(store: Store) -> None:
    store.start_run("run-c", "paper", 0)
    order = _limit("run-c", 1)
    order.apply(OrderSubmitted(ts_ns=2, client_order_id=order.client_order_id))
    cancel = OrderCancelRequested(ts_ns=3, client_order_id=order.client_order_id)
    order.apply(cancel)
    # Only the last event is recorded explicitly: the earlier ones are written with it.
    store.record_order_event(order, cancel)
    assert [type(e).__name__ for e in store.order_events(order.client_order_id)] == [
        "OrderInitialized", "OrderSubmitted", "OrderCancelRequested",
    ]  # fmt: skip
    store.record_order_event(order, cancel)  # a retry after a crash: nothing new
    store.record_order_event(order, order.events[1])
    assert len(store.order_events(order.client_order_id)) == 3
    assert store.order(order.client_order_id) == order
    # Recording an older event also writes the newer ones: the row never runs ahead.
    rejected = OrderCancelRejected(ts_ns=4, client_order_id=order.client_order_id, reason="x")
    order.apply(rejected)
    store.record_order_event(order, order.events[0])
    assert store.order(order.client_order_id) == order
    assert store.open_orders("run-c") == [order]


def test_an_event_not_applied_to_the_order_is_refused(store: Store) -> None:
    store.start_run("run-d", "paper", 0)
    order = _limit("run-d", 1)
    stray = OrderSubmitted(ts_ns=2, client_order_id=order.client_order_id)
    with pytest.raises(ValueError, match="apply it to the order before recording it"):
        store.record_order_event(order, stray)
    assert store.orders("run-d") == []


def test_a_diverging_history_raises_an_integrity_error(store: Store) -> None:
    store.start_run("run-e", "paper", 0)
    order = _limit("run-e", 1)
    submitted = OrderSubmitted(ts_ns=2, client_order_id=order.client_order_id)
    order.apply(submitted)
    store.record_order_event(order, submitted)
    other = Order.from_init(order.init_event)  # the same order, another submission event
    resubmitted = OrderSubmitted(ts_ns=3, client_order_id=order.client_order_id)
    other.apply(resubmitted)
    with pytest.raises(StoreIntegrityError, match="stored event 1 is"):
        store.record_order_event(other, resubmitted)
    stale = Order.from_init(order.init_event)
    with pytest.raises(StoreIntegrityError, match="2 stored events but only 1 in memory"):
        store.record_order_event(stale, stale.init_event)


def test_a_damaged_order_row_is_detected_on_replay(store: Store, url: str) -> None:
    store.start_run("run-f", "paper", 0)
    order = _limit("run-f", 1)
    Recorder(store, "run-f").submit_accept(order)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE orders SET status = 'FILLED'"))
    with pytest.raises(StoreIntegrityError, match="stored status is FILLED, replaying"):
        store.open_orders("run-f")


def test_an_order_belongs_to_one_run(store: Store) -> None:
    store.start_run("run-g", "paper", 0)
    store.start_run("run-h", "paper", 0)
    order = _limit("run-g", 1)
    store.record_order_event(order, order.init_event, run_id="run-g")
    sub = OrderSubmitted(ts_ns=2, client_order_id=order.client_order_id)
    order.apply(sub)
    with pytest.raises(StoreIntegrityError, match="belongs to run 'run-g', not 'run-h'"):
        store.record_order_event(order, sub, run_id="run-h")


def test_atomic_groups_calls_and_rolls_back_together(store: Store) -> None:
    store.start_run("run-i", "paper", 0)
    order = _limit("run-i", 1)
    with pytest.raises(RuntimeError, match="crash inside"), store.atomic():
        store.record_order_event(order, order.init_event)
        store.save_balances(sample_account_state(3))
        raise RuntimeError("crash inside the transaction")
    assert store.orders("run-i") == [] and store.balances("run-i") == {}
    with store.atomic():
        store.record_order_event(order, order.init_event)
        store.save_balances(sample_account_state(3))
        assert len(store.orders("run-i")) == 1  # reads inside see the open transaction
    assert len(store.orders("run-i")) == 1 and len(store.balances("run-i")) == 1


def test_saving_balances_replaces_the_accounts_previous_state(store: Store) -> None:
    store.start_run("run-j", "paper", 0)
    store.save_balances(sample_account_state(3))
    later = AccountState(
        ts_ns=4, account_id=AccountId("BYBIT-main"), balances=(AccountBalance("USDT", D28),)
    )
    store.save_balances(later)
    other = AccountState(ts_ns=5, account_id=AccountId("paper"), balances=())
    store.save_balances(other)
    assert store.balances("run-j") == {AccountId("BYBIT-main"): later}


def test_runs_lifecycle_and_bad_input(store: Store) -> None:
    with pytest.raises(ValueError, match="no run: call start_run"):
        store.record_risk_event(RiskEvent(ts_ns=1, kind="var", reason="x"))
    with pytest.raises(ValueError, match="run mode must be one of BACKTEST, PAPER"):
        store.start_run("r1", "demo", 0)
    with pytest.raises(ValueError, match="ts_ns must be int nanoseconds"):
        store.start_run("r1", "paper", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id must be a non-empty str"):
        store.start_run(" r1", "paper", 0)
    with pytest.raises(ValueError, match="cannot store"):
        store.start_run("r1", "paper", 0, config={"when": object()})
    store.start_run("r1", "Paper", 10, config={"n": 1})
    with pytest.raises(ValueError, match="run 'r1' already exists"):
        store.start_run("r1", "paper", 0)
    store.start_run("r2", "live", 20)
    assert [r.run_id for r in store.runs("running")] == ["r1", "r2"]
    with pytest.raises(ValueError, match="FINISHED or FAILED, got 'RUNNING'"):
        store.finish_run("r1", 30, "RUNNING")
    failed = store.finish_run("r1", 30, "failed", reason="exchange down")
    assert (failed.status, failed.ts_finished, failed.reason) == ("FAILED", 30, "exchange down")
    with pytest.raises(ValueError, match="run 'r1' is FAILED, it cannot be resumed"):
        store.resume_run("r1")
    with pytest.raises(ValueError, match="no run 'nope'"):
        store.finish_run("nope", 1)
    assert [r.run_id for r in store.runs("RUNNING")] == ["r2"]
    with pytest.raises(ValueError, match="run status 'NOSUCH' is unknown: expected RUNNING"):
        store.runs("NOSUCH")
    with pytest.raises(ValueError, match="no instrument 'X@Y'"):
        store.instrument("X@Y")
    with pytest.raises(ValueError, match="no order 'missing'"):
        store.order("missing")


def test_recording_into_an_unknown_run_is_refused(store: Store) -> None:
    order = _limit("ghost", 1)
    with pytest.raises(ValueError, match="no run 'ghost': start it with start_run first"):
        store.record_order_event(order, order.init_event, run_id="ghost")
    with pytest.raises(ValueError, match="no run 'ghost'"):
        store.save_balances(sample_account_state(1), run_id="ghost")
    assert store.orders("ghost") == [] and store.balances("ghost") == {}


@pytest.mark.parametrize("memory_url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_migrated_and_private(memory_url: str) -> None:
    with Store(memory_url) as store:
        assert_round_trip(store, "mem")
    with Store(memory_url) as fresh:
        assert fresh.runs() == []


def test_a_constraint_violation_is_an_integrity_error(store: Store) -> None:
    store.start_run("run-k", "paper", 0)
    first, second = _limit("run-k", 1), _limit("run-k", 2)
    store.record_order_event(first, first.init_event)
    # a second order that reuses the first one's event id
    clash = Order.from_init(replace(second.init_event, event_id=first.init_event.event_id))
    with pytest.raises(StoreIntegrityError, match="the database refused the write"):
        store.record_order_event(clash, clash.init_event)
    assert store.client_order_ids("run-k") == [first.client_order_id]
