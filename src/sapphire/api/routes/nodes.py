"""The /api/v1 nodes routes: list the trading nodes, start one (paper, testnet, demo,
local exchange; mainnet with the confirmation and a second factor), a node's status and
open orders; stop, pause and resume entries, the kill switch, an operator's order,
cancel and amend an open order. Reading needs the `read` scope, acting `trade`.

A node runs as its own process (`sapphire.api.nodes.NodeManager`); actions go to it
over its control channel and the answer is its acknowledgement: 409 with the node's
reason when it refuses (e.g. a venue that cannot amend), 504 when it does not answer in
time, 409 when it is not running.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from sapphire.api.nodes import (
    CommandRefused,
    CommandTimeout,
    NodeConflict,
    NodeInfo,
    NodeManager,
    NodeNotFound,
    NodeSpec,
    NodeStartError,
)
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import Principal, require, second_factor

router = APIRouter(tags=["nodes"])

T = TypeVar("T")
_READ = Depends(require("read"))
_TS = "2022-01-03T10:05:00Z"
_DECIMAL = r"^[0-9]{1,20}(\.[0-9]{1,20})?$"

#: a Decimal that travels as a JSON string of plain digits
DecimalText = Annotated[
    Decimal,
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "examples": ["0.01"]}),
]
RunId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="The node's run id.",
        examples=["paper-20240101-120000-a1b2c3"],
    ),
]
ClientOrderId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9._:-]{1,100}$",
        description="The order's client order id.",
        examples=["paper-1-s-12"],
    ),
]

_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No node with that run id."},
}
_ACTION_ANSWERS: dict[int | str, dict[str, Any]] = {
    **_ANSWERS,
    409: {
        "model": ErrorDetail,
        "description": "The node is not running, or refused (its reason is the detail).",
    },
    504: {"model": ErrorDetail, "description": "The node did not acknowledge in time."},
}


def _nodes(request: Request) -> NodeManager:
    manager: NodeManager = request.app.state.service.nodes
    return manager


def _call(action: Callable[[], T]) -> T:
    """Run a manager call, its errors as HTTP answers."""
    try:
        return action()
    except NodeNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except (NodeConflict, CommandRefused) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except CommandTimeout as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=str(exc)) from None
    except NodeStartError as exc:
        code = 422 if exc.user_error else 502
        raise HTTPException(code, detail=str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, detail=str(exc)) from None


# -- models --------------------------------------------------------------------------------


class NodeOptionsIn(BaseModel):
    """The run options of a node: paper nodes take data, start, end, speed, fees, tick
    and lot size; live nodes take env, url, symbol, paper, warmup and the session's own;
    both take the sizing, exits, cash, leverage, timeframe and risk profile."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"data": "sample", "speed": "100x", "size": 0.01,
                                         "size_mode": "fixed", "stop_loss": 0.02}]},
    )  # fmt: skip

    data: str | None = Field(default=None, pattern=r"^[A-Za-z0-9/:._=,-]{1,400}$",
        description="Paper: 'sample' or a catalog symbol (files are not read here); "
        "strategy rebalance: NAME=symbol,NAME=symbol.",
    )  # fmt: skip
    symbols: str | None = Field(
        default=None,
        pattern=r"^[A-Z0-9/:]{1,40}(,[A-Z0-9/:]{1,40}){0,49}$",
        description="Live, strategy rebalance: the markets, e.g. BTC/USDT:USDT,ETH/USDT:USDT.",
    )
    weights: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.=,/:-]{1,800}$",
        description="Strategy rebalance: target weights, e.g. ETH=0.6,BTC=0.35 (live: by "
        "symbol, BTC/USDT:USDT=0.5).",
    )
    allocation: str | None = Field(
        default=None,
        pattern=r"^[a-z_]{1,40}$",
        description="Strategy rebalance: or weights by an allocation method (hrp...).",
    )
    rebalance_every: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z]{1,20}$",
        description="Strategy rebalance: bars, or a period (4h, 1D, 1W, 1M).",
    )
    rebalance_drift: float | None = Field(
        default=None, ge=0, lt=1, description="Strategy rebalance: drift band."
    )
    lookback: int | None = Field(
        default=None, ge=2, le=100_000, description="Strategy rebalance: returns fitted."
    )
    start: str | None = Field(default=None, max_length=40, description="Paper: first bar (UTC).")
    end: str | None = Field(
        default=None, max_length=40, description="Paper: end time (UTC), exclusive."
    )
    timeframe: str | None = Field(
        default=None, pattern=r"^[0-9]{1,4}[smhdwM]$", description="Bar timeframe, e.g. 1m."
    )
    speed: str | None = Field(
        default=None,
        pattern=r"^(max|[0-9]{1,6}(\.[0-9]{1,3})?x)$",
        description="Paper: 100x or max.",
    )
    cash: float | None = Field(default=None, gt=0, le=1e12, description="Starting cash (quote).")
    size: float | None = Field(
        default=None, gt=0, le=1e12, description="Position size (see size_mode)."
    )
    size_mode: Literal["equity", "fixed", "notional", "risk"] | None = Field(
        default=None, description="How size is read."
    )
    leverage: float | None = Field(default=None, ge=0, le=200, description="Max notional / equity.")
    fee: float | None = Field(
        default=None, ge=-0.01, lt=0.1, description="Paper: maker and taker fee."
    )
    maker_fee: float | None = Field(default=None, ge=-0.01, lt=0.1, description="Paper: maker fee.")
    taker_fee: float | None = Field(default=None, ge=-0.01, lt=0.1, description="Paper: taker fee.")
    slippage_bps: float | None = Field(
        default=None, ge=0, lt=10_000, description="Paper: slippage."
    )
    stop_loss: float | None = Field(default=None, gt=0, lt=1, description="Stop-loss, fraction.")
    take_profit: float | None = Field(
        default=None, gt=0, lt=1, description="Take-profit, fraction."
    )
    trailing_stop: float | None = Field(
        default=None, gt=0, lt=1, description="Trailing stop, fraction."
    )
    risk_profile: Literal["conservative", "aggressive"] | None = Field(
        default=None, description="The risk profile (default conservative)."
    )
    intrabar: Literal["path", "worst"] | None = Field(
        default=None, description="Paper: intrabar path."
    )
    tick_size: float | None = Field(default=None, ge=0, le=1e9, description="Paper: price tick.")
    lot_size: float | None = Field(default=None, ge=0, le=1e9, description="Paper: quantity step.")
    env: Literal["testnet", "demo", "local", "mainnet"] | None = Field(
        default=None, description="Live: the Bybit environment."
    )
    url: str | None = Field(
        default=None,
        max_length=60,
        description="Live, env local: the local exchange on this machine.",
    )
    symbol: str | None = Field(
        default=None,
        pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?$",
        description="Live: the market, e.g. BTC/USDT:USDT.",
    )
    paper: bool | None = Field(default=None, description="Live: fill on the simulated venue.")
    key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Live: a stored exchange key (/exchange-keys) the node decrypts itself.",
    )
    warmup: int | None = Field(default=None, ge=2, le=100_000, description="Live: warm-up bars.")
    reconcile_every: float | None = Field(
        default=None, gt=0, le=86_400, description="Live: seconds."
    )
    on_exit: Literal["cancel", "leave"] | None = Field(default=None, description="Live: on stop.")
    market_data: Literal["rest", "ws"] | None = Field(default=None, description="Live: bar source.")
    poll_interval: float | None = Field(
        default=None, gt=0, le=3600, description="Live: REST poll s."
    )


class NodeStartIn(BaseModel):
    """A node to start."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{
            "mode": "paper", "strategy": "sma_cross", "params": {"fast": 10, "slow": 30},
            "options": {"data": "sample", "start": "2022-01-03", "end": "2022-01-03 06:00",
                        "speed": "max", "size": 0.01, "size_mode": "fixed"},
        }]},
    )  # fmt: skip

    mode: Literal["paper", "live"] = Field(description="paper, or live (testnet, demo...).")
    strategy: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,49}$", description="A registered strategy's name."
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, max_length=50, description="Strategy parameters."
    )
    options: NodeOptionsIn = Field(default_factory=NodeOptionsIn, description="Run options.")
    run_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="Name the run."
    )
    confirm_mainnet: bool = Field(
        default=False, description="Live on mainnet trades real money: must be true (with 2FA)."
    )


class NodeOut(BaseModel):
    """A node: its run, process and last published state."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "run_id": "paper-20240101-120000-a1b2c3", "mode": "paper", "status": "running",
            "pid": 4242, "strategy": "sma_cross", "started": _TS, "finished": None,
            "reason": None, "env": None, "symbol": "sample", "trading_state": "ACTIVE",
            "operator_state": "ACTIVE", "equity": "10012.5", "fills": 4, "heartbeat": _TS,
            "stream": {"sent": 120, "dropped": 0, "failed": 0}, "log_tail": None,
        }]},
    )  # fmt: skip

    run_id: str = Field(description="The run id.")
    mode: str = Field(description="paper or live.")
    status: str = Field(
        description="starting, running, stopped (resumable), finished, failed, or exited "
        "(it ended before its run was recorded)."
    )
    pid: int | None = Field(description="The node's process id while it is alive.")
    strategy: str | None = Field(description="The strategy.")
    started: datetime | None = Field(description="When the run started (UTC).")
    finished: datetime | None = Field(description="When the run finished (UTC).")
    reason: str | None = Field(description="Why it finished (failed, stopped at zero equity).")
    env: str | None = Field(description="Live: the exchange environment.")
    symbol: str | None = Field(description="The market or the data traded.")
    trading_state: str | None = Field(description="ACTIVE, REDUCING or HALTED.")
    operator_state: str | None = Field(description="The operator's state (pause, kill).")
    equity: DecimalText | None = Field(description="The last equity it published.")
    fills: int | None = Field(description="Fills recorded so far.")
    heartbeat: datetime | None = Field(description="Its last status event (UTC).")
    stream: dict[str, Any] = Field(description="Its publisher: sent, dropped, failed events.")
    log_tail: str | None = Field(description="Why it exited, when it failed to start.")


class NodeListOut(BaseModel):
    """Nodes."""

    nodes: list[NodeOut] = Field(description="Oldest first.")


class AckOut(BaseModel):
    """The node's acknowledgement of a command."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "run_id": "paper-1", "command_id": "4f0c...", "command": "kill", "ok": True,
            "detail": {"cancelled": ["paper-1-s-7"], "closing": ["paper-1-s-8"]},
            "trading_state": "HALTED",
        }]},
    )  # fmt: skip

    run_id: str = Field(description="The node.")
    command_id: str = Field(description="The command's id.")
    command: str = Field(description="What was asked.")
    ok: bool = Field(description="Always true here (a refusal is a 409).")
    detail: dict[str, Any] = Field(description="What the node did.")
    trading_state: str = Field(description="Its trading state afterwards.")


class KillIn(BaseModel):
    """The kill switch's option."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"flatten": True}]}
    )

    flatten: bool = Field(
        default=False, description="Also close every open position (market orders)."
    )


class AmendIn(BaseModel):
    """An open order's new price and/or quantity (decimal strings)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"price": "41250.5", "quantity": "0.02"}]},
    )

    price: str | None = Field(default=None, pattern=_DECIMAL, description="New limit price.")
    quantity: str | None = Field(default=None, pattern=_DECIMAL, description="New total quantity.")


class OrderIn(BaseModel):
    """An operator's order (decimal strings): the node's trading strategy sends it
    through the operator's state and the risk engine."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"side": "BUY", "type": "MARKET", "quantity": "0.01"},
                {"side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "43250.5"},
            ]
        },
    )

    side: Literal["BUY", "SELL"] = Field(description="BUY or SELL.")
    type: Literal["MARKET", "LIMIT"] = Field(default="MARKET", description="MARKET or LIMIT.")
    quantity: str = Field(pattern=_DECIMAL, description="Quantity, on the lot size.")
    price: str | None = Field(
        default=None, pattern=_DECIMAL, description="LIMIT: the price, on the tick size."
    )
    reduce_only: bool = Field(default=False, description="Only reduce the position.")
    instrument_id: str | None = Field(
        default=None,
        max_length=100,
        description="The instrument, where the node trades several.",
    )


class OpenOrderOut(BaseModel):
    """An open order of a node."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "client_order_id": "paper-1-s-12", "strategy_id": "s",
            "instrument_id": "BTC-PERP@PAPER", "side": "BUY", "type": "LIMIT",
            "status": "ACCEPTED", "quantity": "0.01", "price": "41000", "trigger_price": None,
            "filled_qty": "0", "reduce_only": False, "ts_last": _TS,
        }]},
    )  # fmt: skip

    client_order_id: str = Field(description="The order's id.")
    strategy_id: str = Field(description="Its strategy.")
    instrument_id: str = Field(description="Its instrument.")
    side: str = Field(description="BUY or SELL.")
    type: str = Field(description="MARKET, LIMIT, STOP_MARKET, STOP_LIMIT, TRAILING_STOP.")
    status: str = Field(description="Its status.")
    quantity: DecimalText = Field(description="Total quantity.")
    price: DecimalText | None = Field(description="Limit price.")
    trigger_price: DecimalText | None = Field(description="Trigger price.")
    filled_qty: DecimalText = Field(description="Filled so far.")
    reduce_only: bool = Field(description="Reduce-only.")
    ts_last: datetime = Field(description="Its last event (UTC).")


class OpenOrdersOut(BaseModel):
    """A node's open orders."""

    orders: list[OpenOrderOut] = Field(description="As the store has them.")


def _node_out(info: NodeInfo) -> NodeOut:
    return NodeOut(**info.__dict__)


def _ack_out(ack: dict[str, Any]) -> AckOut:
    return AckOut(
        run_id=str(ack.get("run_id")), command_id=str(ack.get("command_id")),
        command=str(ack.get("command")), ok=bool(ack.get("ok")),
        detail=dict(ack.get("detail") or {}), trading_state=str(ack.get("trading_state")),
    )  # fmt: skip


# -- routes --------------------------------------------------------------------------------


@router.get("/nodes", dependencies=[_READ], summary="List nodes")
def list_nodes(
    request: Request,
    all: Annotated[
        bool, Query(description="Every paper and live run, not only the running nodes.")
    ] = False,
) -> NodeListOut:
    """The nodes running or starting (with `all`, every paper and live run)."""
    nodes = _call(lambda: _nodes(request).list_nodes(everything=all))
    return NodeListOut(nodes=[_node_out(n) for n in nodes])


@router.post(
    "/nodes",
    status_code=status.HTTP_201_CREATED,
    summary="Start a node",
    responses={
        409: {"model": ErrorDetail, "description": "A run with that id exists."},
        502: {"model": ErrorDetail, "description": "The node's process failed to start."},
        422: {"model": ErrorDetail, "description": "A bad value, or the node refused it."},
    },
)
def start_node(
    request: Request,
    principal: Annotated[Principal, Depends(require("trade"))],
    body: Annotated[NodeStartIn, Body()],
) -> NodeOut:
    """Start a strategy as its own process (paper; live on testnet, demo or a local
    exchange; mainnet needs `confirm_mainnet` and the second factor) and wait until its
    loop runs."""
    options = body.options.model_dump(exclude_none=True)
    if body.mode == "live" and options.get("env") == "mainnet" and not options.get("paper"):
        second_factor(request, principal)
    spec = NodeSpec(
        mode=body.mode, strategy=body.strategy, params=body.params, options=options,
        run_id=body.run_id, confirm_mainnet=body.confirm_mainnet,
    )  # fmt: skip
    return _node_out(_call(lambda: _nodes(request).start(spec)))


@router.get("/nodes/{run_id}", dependencies=[_READ], responses=_ANSWERS, summary="A node")
def get_node(request: Request, run_id: RunId) -> NodeOut:
    """A node's status: its run, its process, its trading state and last equity."""
    return _node_out(_call(lambda: _nodes(request).info(run_id)))


@router.post(
    "/nodes/{run_id}/stop",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Stop a node",
)
def stop_node(request: Request, run_id: RunId) -> NodeOut:
    """Stop the node (its run stays resumable): the stop command, then SIGTERM to its
    process group if it has not exited within 10 s."""
    return _node_out(_call(lambda: _nodes(request).stop(run_id)))


@router.post(
    "/nodes/{run_id}/pause",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Pause new entries",
)
def pause_node(request: Request, run_id: RunId) -> AckOut:
    """No new entries: only orders that reduce a position pass (REDUCING)."""
    return _ack_out(_call(lambda: _nodes(request).pause(run_id)))


@router.post(
    "/nodes/{run_id}/resume",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Resume entries",
)
def resume_node(request: Request, run_id: RunId) -> AckOut:
    """Entries allowed again (ACTIVE); refused (409) after the kill switch."""
    return _ack_out(_call(lambda: _nodes(request).resume(run_id)))


@router.post(
    "/nodes/{run_id}/kill",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Kill switch",
)
def kill_node(
    request: Request, run_id: RunId, body: Annotated[KillIn | None, Body()] = None
) -> AckOut:
    """HALTED for good: every open order cancelled, and with `flatten` every position
    closed by a reduce-only market order."""
    flatten = body is not None and body.flatten
    return _ack_out(_call(lambda: _nodes(request).kill(run_id, flatten=flatten)))


def _order_out(order: Any) -> OpenOrderOut:
    return OpenOrderOut(
        client_order_id=str(order.client_order_id), strategy_id=str(order.strategy_id),
        instrument_id=str(order.instrument_id), side=order.side.value, type=order.type.value,
        status=order.status.value, quantity=order.quantity, price=order.price,
        trigger_price=order.trigger_price, filled_qty=order.filled_qty,
        reduce_only=order.reduce_only,
        ts_last=datetime.fromtimestamp(order.ts_last / 1e9, UTC),
    )  # fmt: skip


@router.get(
    "/nodes/{run_id}/orders",
    dependencies=[_READ],
    responses=_ANSWERS,
    summary="A node's open orders",
)
def node_orders(request: Request, run_id: RunId) -> OpenOrdersOut:
    """The node's open orders, as the store has them."""
    orders = _call(lambda: _nodes(request).open_orders(run_id))
    return OpenOrdersOut(orders=[_order_out(o) for o in orders])


@router.post(
    "/nodes/{run_id}/orders",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Submit an order",
)
def submit_order(request: Request, run_id: RunId, body: Annotated[OrderIn, Body()]) -> AckOut:
    """An operator's order on a running node: the trading strategy's (tag `operator`),
    checked by the operator's state (a paused node takes only reducing orders) and the
    risk engine like the strategy's own. A refusal is a 409 with the reason; the
    acknowledgement's detail has the order's client id and status. The strategy sees
    the position the order makes at its next bar and may trade against it."""
    quantity = _decimal(body.quantity, "quantity")
    price = _decimal(body.price, "price")
    if body.type == "LIMIT" and price is None:
        raise HTTPException(422, detail="a LIMIT order needs a price")
    if body.type == "MARKET" and price is not None:
        raise HTTPException(422, detail=f"price={body.price!r}: a MARKET order takes no price")
    assert quantity is not None
    nodes = _nodes(request)

    def submit() -> dict[str, Any]:
        return nodes.submit_order(
            run_id, body.side, quantity, type=body.type, price=price,
            reduce_only=body.reduce_only, instrument_id=body.instrument_id,
        )  # fmt: skip

    return _ack_out(_call(submit))


@router.delete(
    "/nodes/{run_id}/orders/{client_order_id}",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Cancel an open order",
)
def cancel_order(request: Request, run_id: RunId, client_order_id: ClientOrderId) -> AckOut:
    """Cancel one open order of the node."""
    return _ack_out(_call(lambda: _nodes(request).cancel_order(run_id, client_order_id)))


def _decimal(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise HTTPException(422, detail=f"{name}={value!r} is not a decimal number") from None
    if number <= 0:
        raise HTTPException(422, detail=f"{name}={value!r} is invalid: expected a number > 0")
    return number


@router.patch(
    "/nodes/{run_id}/orders/{client_order_id}",
    dependencies=[Depends(require("trade"))],
    responses=_ACTION_ANSWERS,
    summary="Amend an open order",
)
def amend_order(
    request: Request,
    run_id: RunId,
    client_order_id: ClientOrderId,
    body: Annotated[AmendIn, Body()],
) -> AckOut:
    """A new price and/or quantity for an open order. A venue that cannot amend refuses
    (409, with its reason): the order is never cancelled and replaced for you."""
    price, quantity = _decimal(body.price, "price"), _decimal(body.quantity, "quantity")
    if price is None and quantity is None:
        raise HTTPException(422, detail="give a new price or quantity (or both)")
    return _ack_out(
        _call(
            lambda: _nodes(request).amend_order(
                run_id, client_order_id, price=price, quantity=quantity
            )
        )
    )
