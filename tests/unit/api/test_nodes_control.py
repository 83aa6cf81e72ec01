"""A node's control channel, on a real paper session (its venue server is a process):
pause and resume entries, the kill switch, cancel and amend an open order, stop; what
the node publishes (orders, fills, positions, equity, risk, status, bars); commands
acknowledged on the node's channel, expired or malformed ones refused, never applied
twice, and the operator's state kept across a restart."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sapphire.domain import OrderDenied, OrderSide, OrderStatus, TradingState
from sapphire.engine.control import CONTROL_FILE, command_event, parse_command
from sapphire.engine.session import PID_FILE, read_pid
from sapphire.engine.stream import START, control_channel, node_channel
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

CFG = PaperConfig(
    start="2022-01-03", end="2022-01-03 03:00", speed="max", size=0.01, size_mode="fixed",
    tick_size=0.5, lot_size=0.001, params={"fast": "5", "slow": "20"},
)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")  # no stray venue outlives a failure
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def start(tmp_path: Path, store: Store, config: PaperConfig = CFG, bars: int = 25) -> PaperSession:
    s = PaperSession.start(config, store=store, home=tmp_path)
    for _ in range(bars):
        s.pump(advance=True)
    return s


def send(s: PaperSession, name: str, **args: Any) -> dict[str, Any]:
    """Publish a command on the node's control channel and apply it as the loop does."""
    event = command_event(name, **args)
    s.stream.publish(control_channel(s.run_id), event)
    return wait_ack(s, event["id"])


def wait_ack(s: PaperSession, command_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for ack in s.control.poll():
            if ack["command_id"] == command_id:
                return ack
        time.sleep(0.02)
    raise AssertionError(f"no acknowledgement of {command_id}")


def published(s: PaperSession, kind: str | None = None) -> list[dict[str, Any]]:
    assert s.events.flush(5.0)
    entries = s.stream.read({node_channel(s.run_id): START}, count=100_000)
    return [e.event for e in entries if kind is None or e.event.get("type") == kind]


def entry(s: PaperSession, side: OrderSide = OrderSide.BUY, qty: str = "0.01") -> Any:
    return s.adapter.market(s.iid, side, Decimal(qty))


def test_pause_refuses_entries_at_every_bar_and_resume_lets_them_through(
    tmp_path: Path, store: Store
) -> None:
    s = start(tmp_path, store)
    assert s.monitor is not None  # the default conservative profile: limits at each bar
    ack = send(s, "pause")
    assert ack["ok"] and ack["trading_state"] == "REDUCING"
    for _ in range(5):  # the risk monitor sets the node's state from its limits each bar
        s.pump(advance=True)
    assert s.node.trading_state is TradingState.ACTIVE
    assert s.control.trading_state is TradingState.REDUCING
    order = entry(s)
    assert not s.node.submit_order(s.adapter, order)
    (denied,) = [e for e in order.events if isinstance(e, OrderDenied)]
    assert "REDUCING" in denied.reason
    # the pause is the operator's: recorded, and kept by a resumed node
    assert store.trading_state(s.run_id) is TradingState.REDUCING
    s.client.close()
    r = PaperSession.resume(s.run_id, store=store)
    assert r.control.trading_state is TradingState.REDUCING
    assert not r.node.submit_order(r.adapter, entry(r))
    ack = send(r, "resume_entries")
    assert ack["ok"] and ack["trading_state"] == "ACTIVE"
    assert r.node.submit_order(r.adapter, entry(r))
    states = [e["state"] for e in published(r, "trading_state")]
    assert states[-2:] == ["REDUCING", "ACTIVE"]
    acks = published(r, "ack")
    assert [a["command"] for a in acks] == ["pause", "resume_entries"]


def test_pause_without_a_risk_profile_still_lets_only_reducing_orders_through(
    tmp_path: Path, store: Store
) -> None:
    s = start(tmp_path, store, replace(CFG, risk_profile=None))
    assert s.node.risk is None and s.monitor is None
    buy = entry(s, qty="0.02")
    assert s.node.submit_order(s.adapter, buy)
    while buy.status is not OrderStatus.FILLED:
        s.pump(advance=True)
    assert send(s, "pause")["ok"]
    more = entry(s)
    assert not s.node.submit_order(s.adapter, more)
    assert "REDUCING (entries paused)" in more.events[-1].reason  # type: ignore[attr-defined]
    reduce = entry(s, OrderSide.SELL, "0.01")
    assert s.node.submit_order(s.adapter, reduce)  # reducing the position passes
    assert send(s, "resume_entries")["ok"]
    assert s.node.risk is None  # the gate is out of the node's path again


def test_kill_with_flatten_cancels_closes_and_stays_halted(tmp_path: Path, store: Store) -> None:
    s = start(tmp_path, store)
    buy = entry(s, qty="0.02")
    assert s.node.submit_order(s.adapter, buy)
    while buy.status is not OrderStatus.FILLED:
        s.pump(advance=True)
    last = Decimal(str(s.node.last[s.iid]))
    below = (last * Decimal("0.98")).quantize(Decimal("0.5"))
    resting = s.adapter.limit(s.iid, OrderSide.BUY, Decimal("0.01"), below)
    assert s.node.submit_order(s.adapter, resting)
    ack = send(s, "kill", flatten=True)
    assert ack["ok"] and ack["trading_state"] == "HALTED"
    assert str(resting.client_order_id) in ack["detail"]["cancelled"]
    (closing,) = ack["detail"]["closing"]
    for _ in range(3):
        s.pump(advance=True)
    assert store.order(str(resting.client_order_id)).status is OrderStatus.CANCELED
    assert store.order(closing).status is OrderStatus.FILLED
    assert s.node.portfolio.net_quantity(s.iid) == 0
    assert s.node.trading_state is TradingState.HALTED
    assert not s.node.submit_order(s.adapter, entry(s))
    refused = send(s, "resume_entries")
    assert not refused["ok"] and "kill switch was tripped" in refused["reason"]
    assert not send(s, "pause")["ok"]
    kinds = [e["kind"] for e in published(s, "risk")]
    assert "kill_switch" in kinds
    s.client.close()
    r = PaperSession.resume(s.run_id, store=store)
    assert r.control.trading_state is TradingState.HALTED
    assert not r.node.submit_order(r.adapter, entry(r))


def test_kill_without_flatten_keeps_the_position(tmp_path: Path, store: Store) -> None:
    s = start(tmp_path, store, replace(CFG, risk_profile=None))
    buy = entry(s)
    assert s.node.submit_order(s.adapter, buy)
    while buy.status is not OrderStatus.FILLED:
        s.pump(advance=True)
    for _ in range(3):  # the strategy's own orders settle
        s.pump(advance=True)
    held = s.node.portfolio.net_quantity(s.iid)
    assert held != 0
    ack = send(s, "kill")
    assert ack["ok"] and ack["detail"]["closing"] == [] and ack["trading_state"] == "HALTED"
    for _ in range(3):
        s.pump(advance=True)
    assert s.node.portfolio.net_quantity(s.iid) == held
    assert not s.node.submit_order(s.adapter, entry(s, OrderSide.SELL))  # HALTED: nothing
    assert store.trading_state(s.run_id) is TradingState.HALTED


def resting_order(s: PaperSession) -> Any:
    last = Decimal(str(s.node.last[s.iid]))
    order = s.adapter.limit(
        s.iid, OrderSide.BUY, Decimal("0.01"), (last * Decimal("0.97")).quantize(Decimal("1"))
    )
    assert s.node.submit_order(s.adapter, order)
    s.pump(advance=True)
    assert order.status is OrderStatus.ACCEPTED
    return order


def test_an_operator_order_passes_the_risk_engine_and_is_the_strategys(
    tmp_path: Path, store: Store
) -> None:
    s = start(tmp_path, store)
    ack = send(s, "submit_order", side="buy", quantity="0.01")
    assert ack["ok"], ack
    cid = ack["detail"]["client_order_id"]
    order = s.node.orders[cid]  # type: ignore[index]
    assert (order.side, order.type.value, order.quantity) == (
        OrderSide.BUY, "MARKET", Decimal("0.01"),
    )  # fmt: skip
    assert order.strategy_id == s.adapter.strategy_id
    assert s.node.tags.get(order.client_order_id) == "operator"
    s.pump(advance=True)  # a market order fills at the next bar's open
    assert store.order(cid).status is OrderStatus.FILLED
    assert store.order(cid).filled_qty == Decimal("0.01")
    # a market order waits for the next open: cancelled meanwhile, the venue cancels it
    # (its server died of it: its copy of the order was not accepted yet)
    ack = send(s, "submit_order", side="SELL", quantity="0.01")
    queued = ack["detail"]["client_order_id"]
    assert send(s, "cancel_order", client_order_id=queued)["ok"]
    s.pump(advance=True)
    assert store.order(queued).status is OrderStatus.CANCELED
    assert s.client.call("query", client_order_id=queued)["order"].status is OrderStatus.CANCELED
    # a limit order rests at its price
    last = Decimal(str(s.node.last[s.iid]))
    px = str((last * Decimal("0.9")).quantize(Decimal("1")))
    ack = send(s, "submit_order", side="BUY", type="limit", quantity="0.01", price=px)
    assert ack["ok"], ack
    s.pump(advance=True)
    resting = store.order(ack["detail"]["client_order_id"])
    assert (resting.status, resting.price) == (OrderStatus.ACCEPTED, Decimal(px))
    # refused, with the reason: off the lot or the tick, the risk engine, a paused node
    off_lot = send(s, "submit_order", side="BUY", quantity="0.0105")
    assert not off_lot["ok"] and "lot size 0.001" in off_lot["reason"]
    off_tick = send(s, "submit_order", side="BUY", type="LIMIT", quantity="0.01", price="100.25")
    assert not off_tick["ok"] and "tick size 0.5" in off_tick["reason"]
    unknown = send(s, "submit_order", side="BUY", quantity="0.01", instrument_id="ETHUSDT.X")
    assert not unknown["ok"] and "'ETHUSDT.X' is not traded by this node" in unknown["reason"]
    huge = send(s, "submit_order", side="BUY", quantity="1000")
    assert not huge["ok"] and huge["reason"].startswith("order ") and "refused" in huge["reason"]
    (denied,) = [e for o in s.node.orders.values() for e in o.events if isinstance(e, OrderDenied)]
    assert denied.reason in huge["reason"]
    assert send(s, "pause")["ok"]
    paused = send(s, "submit_order", side="BUY", quantity="0.01")
    assert not paused["ok"] and "REDUCING" in paused["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"side": "hold", "quantity": "1"}, "side='hold' is invalid: expected BUY or SELL"),
        ({"side": "BUY", "quantity": "-1"}, "quantity='-1' is invalid: expected a number > 0"),
        ({"side": "BUY", "quantity": 0.1}, "quantity=0.1 is invalid: expected a decimal"),
        ({"side": "BUY", "type": "STOP", "quantity": "1"}, "type='STOP' is invalid"),
        ({"side": "BUY", "type": "LIMIT", "quantity": "1"}, "a LIMIT order needs a price"),
        ({"side": "BUY", "quantity": "1", "price": "5"}, "a MARKET order takes no price"),
        ({"side": "BUY", "quantity": "1", "reduce_only": "no"}, "reduce_only='no' is invalid"),
        ({"side": "BUY", "quantity": "1", "leverage": 5}, "takes no argument 'leverage'"),
    ],
)
def test_operator_order_arguments_are_checked(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        command_event("submit_order", **args)


def test_cancel_an_open_order_and_refuse_an_unknown_one(tmp_path: Path, store: Store) -> None:
    s = start(tmp_path, store)
    order = resting_order(s)
    cid = str(order.client_order_id)
    ack = send(s, "cancel_order", client_order_id=cid)
    assert ack["ok"], ack
    s.pump(advance=True)
    assert store.order(cid).status is OrderStatus.CANCELED
    again = send(s, "cancel_order", client_order_id=cid)
    assert not again["ok"] and again["reason"] == f"order {cid!r} is not open on this node"


def test_amend_price_and_quantity_or_refuse_with_the_reason(tmp_path: Path, store: Store) -> None:
    s = start(tmp_path, store)
    order = resting_order(s)
    cid = str(order.client_order_id)
    new_px = str(order.price - 10)
    ack = send(s, "amend_order", client_order_id=cid, price=new_px, quantity="0.02")
    assert ack["ok"], ack
    s.pump(advance=True)
    stored = store.order(cid)
    assert (stored.price, stored.quantity) == (Decimal(new_px), Decimal("0.02"))
    off_tick = send(s, "amend_order", client_order_id=cid, price=str(order.price + Decimal("0.25")))
    assert not off_tick["ok"] and "not a multiple of the tick size 0.5" in off_tick["reason"]
    off_lot = send(s, "amend_order", client_order_id=cid, quantity="0.0105")
    assert not off_lot["ok"] and "lot size 0.001" in off_lot["reason"]
    # a venue that cannot amend: refused, never cancelled and replaced behind the caller
    s.venue.supports_amend = False  # type: ignore[attr-defined]
    refused = send(s, "amend_order", client_order_id=cid, price=new_px)
    assert not refused["ok"] and "no cancel-and-replace is done for you" in refused["reason"]
    assert store.order(cid).status is OrderStatus.ACCEPTED
    s.venue.supports_amend = True  # type: ignore[attr-defined]
    # while paused, a larger order is a new entry: refused
    assert send(s, "pause")["ok"]
    bigger = send(s, "amend_order", client_order_id=cid, quantity="0.05")
    assert not bigger["ok"] and "REDUCING" in bigger["reason"]
    market = entry(s)
    assert send(s, "resume_entries")["ok"]
    assert s.node.submit_order(s.adapter, market)
    assert market.is_open  # a market order fills at the next bar's open
    refused = send(s, "amend_order", client_order_id=str(market.client_order_id), price="1")
    assert not refused["ok"] and "market order" in refused["reason"]


def test_expired_and_malformed_commands_are_refused_and_never_applied_twice(
    tmp_path: Path, store: Store
) -> None:
    s = start(tmp_path, store)
    channel = control_channel(s.run_id)
    stale = command_event("pause", ttl_s=-1.0)
    s.stream.publish(channel, stale)
    ack = wait_ack(s, stale["id"])
    assert not ack["ok"] and "expired" in ack["reason"]
    assert s.control.trading_state is TradingState.ACTIVE
    bad = {"type": "command", "id": "x1", "command": "explode", "args": {}}
    s.stream.publish(channel, bad)
    ack = wait_ack(s, "x1")
    assert not ack["ok"] and "command 'explode' is unknown" in ack["reason"]
    bad_args = {"type": "command", "id": "x2", "command": "kill", "args": {"flatten": "yes"}}
    s.stream.publish(channel, bad_args)
    assert "flatten='yes' is invalid" in wait_ack(s, "x2")["reason"]
    assert send(s, "pause")["ok"]
    saved = (s.run_dir / CONTROL_FILE).read_text()
    assert '"operator": "REDUCING"' in saved
    s.client.close()
    r = PaperSession.resume(s.run_id, store=store)
    fresh = send(r, "resume_entries")  # the resumed node reads on after the applied ones
    assert [a["command_id"] for a in published(r, "ack")].count(fresh["command_id"]) == 1
    assert len(published(r, "ack")) == 5


def test_commands_are_checked_where_they_are_made() -> None:
    with pytest.raises(ValueError, match="command 'explode' is unknown"):
        command_event("explode")
    with pytest.raises(ValueError, match="takes no argument 'flatten'"):
        command_event("pause", flatten=True)
    with pytest.raises(ValueError, match="price='-1' is invalid: expected a number > 0"):
        command_event("amend_order", client_order_id="a", price="-1")
    with pytest.raises(ValueError, match="price='NaN' is invalid"):
        command_event("amend_order", client_order_id="a", price="NaN")
    with pytest.raises(ValueError, match="needs a new price or quantity"):
        command_event("amend_order", client_order_id="a")
    with pytest.raises(ValueError, match="client_order_id=None is invalid"):
        command_event("cancel_order")
    event = command_event("amend_order", client_order_id="a", quantity=Decimal("0.50"))
    command = parse_command(event)
    assert (command.name, command.args["quantity"]) == ("amend_order", "0.50")
    assert command.expires_ns is not None and command.expires_ns > command.ts_ns


def test_a_running_node_publishes_what_it_does_and_stops_on_command(
    tmp_path: Path, store: Store
) -> None:
    s = PaperSession.start(replace(CFG, speed="1000x"), store=store, home=tmp_path)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.append(s.run()))
    runner.start()
    deadline = time.monotonic() + 20
    while read_pid(s.run_dir) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_pid(s.run_dir) is not None  # the loop runs: its process is recorded
    while s.bar < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop = command_event("stop")
    s.stream.publish(control_channel(s.run_id), stop)
    runner.join(20)
    assert not runner.is_alive() and result[0].status == "stopped"
    assert s.bar < len(s.bars) - 1  # stopped before the end of the data
    assert not (s.run_dir / PID_FILE).exists()
    assert not (s.run_dir / "venue.json").exists()  # the venue was shut down with it
    assert store.run(s.run_id).status.value == "RUNNING"  # resumable
    events = s.stream.read({node_channel(s.run_id): START}, count=100_000)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e.event["type"], []).append(e.event)
    (ack,) = by_type["ack"]
    assert ack["command_id"] == stop["id"] and ack["ok"]
    assert by_type["status"][-1]["status"] == "stopped"
    assert by_type["status"][0]["status"] == "running"
    fills = store.fills(s.run_id)
    assert len(by_type.get("fill", [])) == len(fills)
    assert [f["trade_id"] for f in by_type.get("fill", [])] == [str(f.trade_id) for f in fills]
    orders = by_type["order"]
    assert {o["event"] for o in orders} >= {"OrderSubmitted"}
    assert all(isinstance(o["quantity"], str) for o in orders)  # Decimals as text
    assert by_type["equity"] and by_type["balance"]
    candles = s.stream.read({f"candles.{s.iid}.1m": START}, count=100_000)
    assert len(candles) == s.bar + 1
    assert candles[0].event["close"] == float(s.bars.close[0])
