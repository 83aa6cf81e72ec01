"""A node's control channel: commands from the service, applied by the node's own loop.

The service publishes a command on `node.<run_id>.control` (`command_event`); the node
follows that channel on a background thread (`ControlListener`) and its loop applies
what arrived (`NodeControl.poll`, a deque check when nothing did), so a command never
interrupts the node mid-step and the service never waits on the node. Each command
carries an id; the node acknowledges it on `node.<run_id>` (`{"type": "ack",
"command_id", "command", "ok", "reason"|"detail"}`); a command older than its
`expires_ns` is refused as expired, never acted on late.

Commands:

- `stop`: the session ends its loop (the run stays resumable).
- `pause`: no new entries: the operator's trading state becomes REDUCING (only orders
  that reduce a position pass); `resume_entries` makes it ACTIVE again.
- `kill` (`flatten`: bool): HALTED, every open order cancelled and, with `flatten`, one
  reduce-only market order per open position (tag `kill_switch`). With a risk profile it
  is the `RiskMonitor`'s kill switch (`PortfolioLimits.halt`); a halt sticks: resuming
  entries is refused until a new run.
- `submit_order` (`side`, `type` market or limit, `quantity`, `price` for a limit,
  `reduce_only`, `instrument_id` where the node trades several): an operator's order,
  the trading strategy's (tag `operator`), through the operator's state and the risk
  engine like any other; a denial is refused with the engine's reason. The strategy
  sees the position it makes at its next bar and may trade against it.
- `cancel_order` (`client_order_id`), `amend_order` (`client_order_id`, `price`,
  `quantity`): on an open order. An amend the venue cannot do is refused with its
  reason: it is never turned into a cancel and a new order behind the caller's back.

The operator's state is applied by `OperatorGate`, which sits in front of the node's
risk engine (or stands in for one) and checks each new order under the more severe of
the node's state and the operator's: the `RiskMonitor` resets `node.trading_state` from
its limits at every bar, the gate's state stays until the operator changes it. It is
kept, with the channel position, in the run directory's `control.json`, so a resumed
node is still paused or halted and does not apply a command twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sapphire.domain import (
    Order,
    OrderDenied,
    OrderInitialized,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    RiskEvent,
    StrategyId,
    TradingState,
    TradingStateChanged,
)
from sapphire.engine import pretrade
from sapphire.engine.risk_monitor import KILL_SWITCH_TAG
from sapphire.engine.stream import (
    START,
    EventStream,
    StreamPublisher,
    control_channel,
    node_channel,
)
from sapphire.risk import RiskDecision, severity

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode
    from sapphire.engine.risk_monitor import RiskMonitor
    from sapphire.engine.strategy import EventStrategy
    from sapphire.risk import RiskContext

__all__ = [
    "COMMANDS",
    "CONTROL_FILE",
    "Command",
    "ControlListener",
    "NodeControl",
    "OperatorGate",
    "command_event",
    "parse_command",
]

COMMANDS = (
    "stop", "pause", "resume_entries", "kill", "submit_order", "cancel_order", "amend_order",
)  # fmt: skip
#: the tag of the orders an operator submits through the control channel
OPERATOR_TAG = "operator"
_ORDER_TYPES = ("MARKET", "LIMIT")
#: the run directory's file of the operator's state and the control channel's position
CONTROL_FILE = "control.json"
#: seconds a command stays valid by default (a node that was down does not act late)
DEFAULT_TTL_S = 60.0
_ARGS: dict[str, tuple[str, ...]] = {
    "stop": (),
    "pause": (),
    "resume_entries": (),
    "kill": ("flatten",),
    "submit_order": ("side", "type", "quantity", "price", "reduce_only", "instrument_id"),
    "cancel_order": ("client_order_id",),
    "amend_order": ("client_order_id", "price", "quantity"),
}
_ACTIVE, _REDUCING, _HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@dataclass(frozen=True, slots=True)
class Command:
    """A command to a node (see the module docstring)."""

    id: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    ts_ns: int = 0
    expires_ns: int | None = None


def _decimal(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{name}={value!r} is invalid: expected a decimal number as text")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name}={value!r} is invalid: expected a decimal number") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a number > 0")
    return number


def _check_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if name not in _ARGS:
        raise ValueError(f"command {name!r} is unknown: expected one of {', '.join(COMMANDS)}")
    unknown = sorted(set(args) - set(_ARGS[name]))
    if unknown:
        raise ValueError(f"command {name!r} takes no argument {unknown[0]!r}")
    out = dict(args)
    if name == "kill":
        flatten = out.setdefault("flatten", False)
        if not isinstance(flatten, bool):
            raise ValueError(f"flatten={flatten!r} is invalid: expected true or false")
    if name == "submit_order":
        _check_order_args(out)
    if name in ("cancel_order", "amend_order"):
        cid = out.get("client_order_id")
        if not isinstance(cid, str) or not cid.strip() or len(cid) > 200:
            raise ValueError(f"client_order_id={cid!r} is invalid: expected an order id")
    if name == "amend_order":
        for key in ("price", "quantity"):
            if out.get(key) is not None:
                out[key] = str(_decimal(out[key], key))
        if out.get("price") is None and out.get("quantity") is None:
            raise ValueError("amend_order needs a new price or quantity (or both)")
    return out


def _check_order_args(out: dict[str, Any]) -> None:
    side = out.get("side")
    if not isinstance(side, str) or side.upper() not in ("BUY", "SELL"):
        raise ValueError(f"side={side!r} is invalid: expected BUY or SELL")
    out["side"] = side.upper()
    kind = out.setdefault("type", "MARKET")
    if not isinstance(kind, str) or kind.upper() not in _ORDER_TYPES:
        raise ValueError(f"type={kind!r} is invalid: expected MARKET or LIMIT")
    out["type"] = kind.upper()
    out["quantity"] = str(_decimal(out.get("quantity"), "quantity"))
    price = out.get("price")
    if out["type"] == "LIMIT":
        if price is None:
            raise ValueError("a LIMIT order needs a price")
        out["price"] = str(_decimal(price, "price"))
    elif price is not None:
        raise ValueError(f"price={price!r}: a MARKET order takes no price")
    reduce_only = out.setdefault("reduce_only", False)
    if not isinstance(reduce_only, bool):
        raise ValueError(f"reduce_only={reduce_only!r} is invalid: expected true or false")
    iid = out.get("instrument_id")
    if iid is not None and (not isinstance(iid, str) or not iid.strip() or len(iid) > 100):
        raise ValueError(f"instrument_id={iid!r} is invalid: expected an instrument id")


def command_event(
    name: str, *, command_id: str | None = None, ttl_s: float = DEFAULT_TTL_S, **args: Any
) -> dict[str, Any]:
    """The event that asks a node for `name` (a ValueError names a bad command or
    argument); `command_id` defaults to a new one."""
    checked = _check_args(name, args)
    now = time.time_ns()
    return {
        "type": "command", "id": command_id or uuid.uuid4().hex, "command": name,
        "args": checked, "ts_ns": now, "expires_ns": now + int(ttl_s * 1e9),
    }  # fmt: skip


def parse_command(event: Mapping[str, Any]) -> Command:
    """The `Command` in `event` (a ValueError names what is wrong)."""
    cid = event.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 100:
        raise ValueError(f"command id {cid!r} is invalid")
    args = event.get("args") or {}
    if not isinstance(args, Mapping):
        raise ValueError(f"command args {args!r} are invalid: expected an object")
    name = str(event.get("command"))
    expires = event.get("expires_ns")
    return Command(
        id=cid, name=name, args=_check_args(name, args), ts_ns=int(event.get("ts_ns") or 0),
        expires_ns=int(expires) if isinstance(expires, int) else None,
    )  # fmt: skip


class OperatorGate:
    """The operator's trading state in front of the node's risk engine (see the module
    docstring): an order is checked under the more severe of the node's state and the
    operator's; without a risk engine, only that state is checked."""

    def __init__(self, node: TradingNode) -> None:
        self.node = node
        self.state = _ACTIVE
        self.inner: Any = None
        self.installed = False

    def set(self, state: TradingState) -> None:
        """Make `state` the operator's (ACTIVE takes the gate out of the node's path)."""
        self.state = state
        node = self.node
        if state is _ACTIVE:
            if self.installed and node.risk is self:
                node.risk = self.inner
            self.installed = False
        elif not self.installed:
            self.inner = node.risk
            node.risk = self  # type: ignore[assignment]  # checked like a RiskEngine
            self.installed = True

    def check(self, order: Order, ctx: RiskContext) -> RiskDecision:
        if severity(self.state) > severity(ctx.trading_state):
            ctx = replace(ctx, trading_state=self.state)
        if self.inner is not None:
            decision: RiskDecision = self.inner.check(order, ctx)
            return decision
        return state_decision(order, ctx.position_qty, ctx.trading_state)


def state_decision(order: Order, position: Decimal, state: TradingState) -> RiskDecision:
    """The trading-state check alone (HALTED: nothing; REDUCING: only reducing orders)."""
    if state is _HALTED:
        return RiskDecision(
            False, "trading state is HALTED: no new orders, only cancels", "trading_state"
        )
    if state is _REDUCING:
        after = position + order.side.sign * order.quantity
        flips = position != 0 and after != 0 and (position > 0) != (after > 0)
        if flips or abs(after) > abs(position):
            return RiskDecision(
                False,
                f"trading state is REDUCING (entries paused): only orders that reduce the "
                f"position are allowed; {order.side} {order.quantity} would take it from "
                f"{position} to {after}",
                "trading_state",
            )
    return RiskDecision(True)


class ControlListener:
    """Follows a node's control channel on a background thread from `since`; the node's
    loop takes what arrived with `take()` (never blocks)."""

    def __init__(self, stream: EventStream, run_id: str, since: str, poll_s: float = 0.25) -> None:
        self.stream = stream
        self.channel = control_channel(run_id)
        self.since = since
        self.poll_s = poll_s
        self.errors = 0
        self._arrived: deque[tuple[str, dict[str, Any]]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sapphire-control", daemon=True)
        self._thread.start()

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """The (position, event) pairs that arrived since the last call."""
        out = []
        arrived = self._arrived
        while arrived:
            out.append(arrived.popleft())
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        position = self.since
        while not self._stop.is_set():
            try:
                entries = self.stream.read({self.channel: position}, timeout=self.poll_s)
            except Exception:  # the stream is down: try again, the node goes on
                self.errors += 1
                self._stop.wait(1.0)
                continue
            for entry in entries:
                position = entry.position
                self._arrived.append((entry.position, entry.event))


def load_control_state(run_dir: Path) -> dict[str, Any]:
    """What `control.json` holds (`{}` when there is none)."""
    path = Path(run_dir) / CONTROL_FILE
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class NodeControl:
    """A node's side of its control channel (see the module docstring).

    `trader` is the run's trading strategy (the kill switch's closing orders are its),
    `monitor` the risk monitor (None without a risk profile); `events` publishes the
    acknowledgements; `on_stop` ends the session's loop."""

    def __init__(
        self,
        node: TradingNode,
        run_id: str,
        run_dir: Path,
        *,
        trader: EventStrategy,
        monitor: RiskMonitor | None,
        stream: EventStream,
        events: StreamPublisher,
        on_stop: Callable[[], None],
        poll_s: float = 0.25,
    ) -> None:
        self.node = node
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.trader = trader
        self.monitor = monitor
        self.events = events
        self.on_stop = on_stop
        self.channel = node_channel(run_id)
        self.gate = OperatorGate(node)
        saved = load_control_state(self.run_dir)
        self.position = str(saved.get("position") or START)
        state = saved.get("operator")
        if state in (_REDUCING.value, _HALTED.value):
            self.gate.set(TradingState(state))
            node.trading_state = max((node.trading_state, self.gate.state), key=severity)
        self.stream = stream
        self.poll_s = poll_s
        #: follows the channel from the first `poll` (a session that is only stepped by
        #: hand starts no thread)
        self.listener: ControlListener | None = None

    # ---------------------------------------------------------------- state
    @property
    def operator_state(self) -> TradingState:
        return self.gate.state

    @property
    def trading_state(self) -> TradingState:
        """The state new orders are checked under: the node's or the operator's."""
        return max((self.node.trading_state, self.gate.state), key=severity)

    def _save(self) -> None:
        path = self.run_dir / CONTROL_FILE
        tmp = path.with_name(f"{CONTROL_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"position": self.position, "operator": self.gate.state.value}))
        os.replace(tmp, path)

    # ---------------------------------------------------------------- the loop's side
    def poll(self) -> list[dict[str, Any]]:
        """Apply the commands that arrived (in order); returns their acknowledgements."""
        if self.listener is None:
            self.listener = ControlListener(self.stream, self.run_id, self.position, self.poll_s)
        acks = []
        for position, event in self.listener.take():
            ack = self._handle(event)
            self.position = position
            self._save()
            if ack is not None:
                acks.append(ack)
                self.events.publish(self.channel, ack)
        return acks

    def close(self) -> None:
        """Stop following the channel."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _handle(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        if event.get("type") != "command":
            return None
        command_id = event.get("id")
        name = event.get("command")
        try:
            command = parse_command(event)
        except (ValueError, TypeError) as exc:
            return self._ack(command_id, name, False, str(exc))
        if command.expires_ns is not None and time.time_ns() > command.expires_ns:
            return self._ack(
                command.id, command.name, False, "the command expired before the node took it"
            )
        try:
            detail = self.apply(command)
        except CommandRefused as exc:
            return self._ack(command.id, command.name, False, str(exc))
        return self._ack(command.id, command.name, True, None, detail)

    def _ack(
        self,
        command_id: object,
        name: object,
        ok: bool,
        reason: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "ack", "run_id": self.run_id, "command_id": command_id, "command": name,
            "ok": ok, "reason": reason, "detail": dict(detail or {}),
            "trading_state": self.trading_state.value, "ts_ns": time.time_ns(),
        }  # fmt: skip

    # ---------------------------------------------------------------- the commands
    def apply(self, command: Command) -> dict[str, Any]:
        """Do `command`; its result, or `CommandRefused` with the reason."""
        handler = getattr(self, f"_do_{command.name}")
        result: dict[str, Any] = handler(**dict(command.args))
        return result

    def _do_stop(self) -> dict[str, Any]:
        self.on_stop()
        return {"status": "stopping"}

    def _set_state(self, state: TradingState, reason: str) -> None:
        before = self.trading_state
        self.gate.set(state)
        node = self.node
        # the node's own state: its limits' (the monitor sets it again at each bar)
        limits = self.monitor.limits.state if self.monitor is not None else _ACTIVE
        node.trading_state = max((limits, state), key=severity)
        after = self.trading_state
        if after is not before:
            node.bus.publish(
                TradingStateChanged(
                    ts_ns=node.clock.now_ns(), state=after, reason=reason, previous=before
                )
            )

    def _halted_reason(self) -> str | None:
        if self.gate.state is _HALTED:
            return (
                "the kill switch was tripped: a halted node stays halted; stop it and start "
                "a new run"
            )
        if self.node.trading_state is _HALTED:
            return "a risk limit halted the node: it stays halted until its limits are reset"
        return None

    def _do_pause(self) -> dict[str, Any]:
        halted = self._halted_reason()
        if halted is not None:
            raise CommandRefused(f"cannot pause: {halted}")
        self._set_state(_REDUCING, "entries paused by the operator")
        return {"trading_state": self.trading_state.value}

    def _do_resume_entries(self) -> dict[str, Any]:
        halted = self._halted_reason()
        if halted is not None:
            raise CommandRefused(f"cannot resume entries: {halted}")
        self._set_state(_ACTIVE, "entries resumed by the operator")
        return {"trading_state": self.trading_state.value}

    def _do_kill(self, flatten: bool = False) -> dict[str, Any]:
        node = self.node
        ts = node.clock.now_ns()
        reason = "tripped by the operator" + (" (flatten)" if flatten else "")
        cancel = [
            str(o.client_order_id)
            for o in node.open_orders()
            if o.status is not OrderStatus.PENDING_CANCEL
        ]
        positions = list(node.portfolio.open_positions()) if flatten else []
        before = self.trading_state
        if self.monitor is not None:
            # the risk monitor's kill switch: its events are recorded, and a halt sticks
            actions = self.monitor.kill_switch.trip(
                reason, ts, node.open_orders(), positions, flatten=flatten
            )
            for event in actions.events:
                self.monitor.events.append(event)
                node.bus.publish(event)
        else:
            node.bus.publish(
                RiskEvent(
                    event_id=node.next_event_id(), ts_ns=ts, kind="kill_switch",
                    reason=f"kill switch: {reason}", detail={"flatten": flatten},
                )
            )  # fmt: skip
        # closing orders pass while REDUCING; everything else is refused from now on
        self.gate.set(_REDUCING)
        for cid in cancel:
            node.cancel_order(cid)
        closing = []
        for pos in positions:
            qty = pos.quantity
            owner = self._owner(pos.strategy_id)
            if owner is None or qty == 0:
                continue
            side = OrderSide.SELL if qty > 0 else OrderSide.BUY
            order = owner.market(pos.instrument_id, side, abs(qty), reduce_only=True)
            node.submit_order(owner, order, tag=KILL_SWITCH_TAG)
            closing.append(str(order.client_order_id))
        self.gate.set(_HALTED)
        node.trading_state = _HALTED
        if self.monitor is None and before is not _HALTED:
            node.bus.publish(
                TradingStateChanged(
                    ts_ns=ts, state=_HALTED, reason=f"kill switch: {reason}", previous=before
                )
            )
        return {"cancelled": cancel, "closing": closing, "trading_state": _HALTED.value}

    def _do_submit_order(
        self,
        side: str,
        quantity: str,
        type: str = "MARKET",
        price: str | None = None,
        reduce_only: bool = False,
        instrument_id: str | None = None,
    ) -> dict[str, Any]:
        node = self.node
        traded = sorted(str(i) for i in node.portfolio.instruments)
        if instrument_id is None:
            if len(traded) != 1:
                raise CommandRefused(
                    f"this node trades {', '.join(traded)}: say which instrument_id"
                )
            instrument_id = traded[0]
        if instrument_id not in traded:
            raise CommandRefused(
                f"instrument_id={instrument_id!r} is not traded by this node: expected "
                f"{', '.join(traded)}"
            )
        inst = next(i for i in node.portfolio.instruments.values() if str(i.id) == instrument_id)
        qty = Decimal(quantity)
        if not inst.is_qty_on_lot(qty):
            raise CommandRefused(
                f"quantity {qty} is not a multiple of the lot size {inst.lot_size} of "
                f"{instrument_id}"
            )
        px = None if price is None else Decimal(price)
        if px is not None and not inst.is_price_on_tick(px):
            raise CommandRefused(
                f"price {px} is not a multiple of the tick size {inst.tick_size} of {instrument_id}"
            )
        trader = self.trader
        if type == "LIMIT":
            order = trader.limit(inst.id, side, qty, px, reduce_only=reduce_only)
        else:
            order = trader.market(inst.id, side, qty, reduce_only=reduce_only)
        node.submit_order(trader, order, tag=OPERATOR_TAG)
        cid = str(order.client_order_id)
        denied = [e.reason for e in order.events if isinstance(e, OrderDenied | OrderRejected)]
        if denied:
            raise CommandRefused(f"order {cid} was refused: {denied[-1]}")
        return {"client_order_id": cid, "status": order.status.value}

    def _owner(self, strategy_id: StrategyId | None) -> EventStrategy | None:
        for strategy in self.node.strategies:
            if strategy.strategy_id == strategy_id:
                return strategy
        return None

    def _open_order(self, client_order_id: str) -> Order:
        for order in self.node.open_orders():
            if str(order.client_order_id) == client_order_id:
                return order
        raise CommandRefused(f"order {client_order_id!r} is not open on this node")

    def _do_cancel_order(self, client_order_id: str) -> dict[str, Any]:
        order = self._open_order(client_order_id)
        if order.status is OrderStatus.PENDING_CANCEL:
            raise CommandRefused(f"order {client_order_id!r} is already being cancelled")
        if not self.node.cancel_order(client_order_id):
            why = getattr(self.node.venue, "reasons", {}).get(client_order_id)
            raise CommandRefused(
                f"the venue refused to cancel order {client_order_id!r}"
                + (f": {why}" if why else "")
            )
        return {"client_order_id": client_order_id, "status": order.status.value}

    def _do_amend_order(
        self, client_order_id: str, price: str | None = None, quantity: str | None = None
    ) -> dict[str, Any]:
        node = self.node
        order = self._open_order(client_order_id)
        new_px = Decimal(price) if price is not None else None
        new_qty = Decimal(quantity) if quantity is not None else None
        self._check_amend(order, new_px, new_qty)
        if not getattr(node.venue, "supports_amend", True):
            raise CommandRefused(
                f"the venue cannot amend orders; order {client_order_id!r} was left as it is "
                "(no cancel-and-replace is done for you: cancel it and submit a new one)"
            )
        if not node.amend_order(client_order_id, quantity=new_qty, price=new_px):
            why = getattr(node.venue, "reasons", {}).get(client_order_id)
            raise CommandRefused(
                f"the venue could not amend order {client_order_id!r}"
                + (f" ({why})" if why else " (it is not working there)")
                + "; it was not cancelled or replaced"
            )
        return {
            "client_order_id": client_order_id,
            "price": None if new_px is None else str(new_px),
            "quantity": None if new_qty is None else str(new_qty),
        }

    def _check_amend(self, order: Order, price: Decimal | None, qty: Decimal | None) -> None:
        cid = str(order.client_order_id)
        node = self.node
        if order.type is OrderType.MARKET:
            raise CommandRefused(f"order {cid!r} is a market order: it cannot be amended")
        if cid in node.emulator.trails:
            raise CommandRefused(f"order {cid!r} is a trailing stop the node moves itself")
        if price is not None and order.type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            raise CommandRefused(
                f"order {cid!r} is a {order.type.value} order: it has no limit price to amend"
            )
        inst = node.portfolio.instrument(order.instrument_id)
        if price is not None and not inst.is_price_on_tick(price):
            raise CommandRefused(
                f"price {price} is not a multiple of the tick size {inst.tick_size} of "
                f"{order.instrument_id}"
            )
        if qty is None:
            return
        if not inst.is_qty_on_lot(qty):
            raise CommandRefused(
                f"quantity {qty} is not a multiple of the lot size {inst.lot_size} of "
                f"{order.instrument_id}"
            )
        if qty <= order.filled_qty:
            raise CommandRefused(
                f"quantity {qty} is not above the {order.filled_qty} of order {cid!r} already "
                "filled"
            )
        if qty > order.quantity:
            self._check_increase(order, qty - order.quantity, price)

    def _check_increase(self, order: Order, extra: Decimal, price: Decimal | None) -> None:
        """A larger order is a new risk: the increase passes the pre-trade checks (and
        the operator's state) as an order of its own would."""
        node = self.node
        init = order.events[0]
        assert isinstance(init, OrderInitialized)
        changes: dict[str, Any] = {"quantity": extra}
        if price is not None:
            changes["price"] = price
        extra_order = Order.from_init(replace(init, **changes))
        state = self.trading_state
        position = node.portfolio.net_quantity(order.instrument_id)
        decision = state_decision(extra_order, position, state)
        if decision.ok and node.risk is not None:
            reason = pretrade.check(node, extra_order, node.clock.now_ns())
            decision = RiskDecision(reason is None, reason)
        if not decision.ok:
            raise CommandRefused(f"the larger quantity is refused: {decision.reason}")


class CommandRefused(Exception):
    """A command the node did not carry out; the message says why."""
