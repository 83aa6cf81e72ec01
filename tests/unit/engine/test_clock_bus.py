"""Clocks, timers and the typed message bus."""

from __future__ import annotations

import pytest

from sapphire.domain import ClientOrderId, OrderEvent, OrderSubmitted
from sapphire.engine import MessageBus, SimulatedClock, TimeEvent, WallClock


def test_timers_fire_in_time_order_until_their_stop() -> None:
    clock = SimulatedClock(0)
    fired: list[tuple[str, int, int]] = []
    clock.set_timer("a", 10, lambda e: fired.append((e.name, e.ts_ns, clock.now_ns())))
    clock.set_timer("b", 25, lambda e: fired.append((e.name, e.ts_ns, clock.now_ns())), stop_ns=50)
    assert clock.advance_to(60) == 8
    assert fired[:4] == [("a", 10, 10), ("a", 20, 20), ("b", 25, 25), ("a", 30, 30)]
    assert [f for f in fired if f[0] == "b"] == [("b", 25, 25), ("b", 50, 50)]
    assert clock.now_ns() == 60
    assert clock.timer_names == ["a"]  # b passed its stop
    clock.cancel_timer("a")
    assert clock.advance_to(1000) == 0 and clock.next_due == float("inf")


def test_timer_and_clock_errors_name_the_value() -> None:
    clock = SimulatedClock(100)
    clock.set_timer("t", 5, lambda e: None)
    with pytest.raises(ValueError, match="'t' is already set"):
        clock.set_timer("t", 5, lambda e: None)
    with pytest.raises(ValueError, match="interval_ns must be an int > 0, got 0"):
        clock.set_timer("u", 0, lambda e: None)
    with pytest.raises(ValueError, match="no timer named 'x'"):
        clock.cancel_timer("x")
    with pytest.raises(ValueError, match="from 100 to 50"):
        clock.set_time(50)


def test_wall_clock_moves_and_fires_due_timers() -> None:
    clock = WallClock()
    start = clock.now_ns()
    seen: list[TimeEvent] = []
    clock.set_timer("w", 1, seen.append, start_ns=start - 10)
    assert clock.advance_to(start) >= 9
    assert clock.now_ns() >= start


def test_bus_dispatches_by_type_and_base_type_in_order() -> None:
    bus = MessageBus()
    got: list[str] = []
    bus.subscribe(OrderEvent, lambda e: got.append("base"))
    bus.subscribe(OrderSubmitted, lambda e: got.append("exact"))
    bus.subscribe(object, lambda e: got.append("any"))
    bus.publish(OrderSubmitted(ts_ns=1, client_order_id=ClientOrderId("r-s-1")))
    assert got == ["exact", "base", "any"]
    got.clear()
    bus.publish(3)
    assert got == ["any"]
    assert not MessageBus().has_subscribers(int)
    with pytest.raises(ValueError, match="not subscribed"):
        bus.unsubscribe(int, print)
    with pytest.raises(ValueError, match="event type"):
        bus.subscribe("OrderFilled", print)  # type: ignore[arg-type]
