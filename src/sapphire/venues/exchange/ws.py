"""The local exchange's WebSocket side: Bybit v5's public, private and trade streams.

`mount` adds them to the REST app (same port), as Bybit's paths:

- ``/v5/public/linear`` and ``/v5/public/spot``: ops ``subscribe`` / ``unsubscribe``
  (``args``: topics) and ``ping``; what each topic carries is in `streams`.
- ``/v5/private``: ``auth`` first (`auth.verify_stream`), then ``subscribe`` to
  ``order``, ``execution``, ``position``, ``wallet``; before ``auth`` a subscribe fails.
- ``/v5/trade``: ``auth``, then ``order.create`` / ``order.amend`` / ``order.cancel`` with
  ``reqId``, ``header`` (``X-BAPI-TIMESTAMP``, ``X-BAPI-RECV-WINDOW``: checked as REST
  does) and ``args: [the REST body]``. Each goes through the REST endpoint's own handler
  and rate-limit bucket (`trade_ops` is the REST app's table), so REST and stream orders
  are validated once, by the same code, and share the per-key limits.

Answers are Bybit's: on a public stream ``{"success", "ret_msg": "subscribe", "conn_id",
"req_id", "op"}`` (a failure: ``success`` false and ``ret_msg`` naming the bad topic),
``ping`` -> ``{"success": true, "ret_msg": "pong", ..., "op": "ping"}``; on the private
stream the same with ``ret_msg`` "" and ``ping`` -> ``{"req_id", "op": "pong", "args":
[ms], "conn_id"}``; on the trade stream ``{"reqId", "retCode", "retMsg", "op", "data":
{"orderId", "orderLinkId"}, "header", "connId"}`` (auth: ``{"retCode", "retMsg", "op":
"auth", "connId"}``), with the REST error codes.

Simplified: no server-side idle timeout (Bybit drops a connection silent for 10 minutes),
no per-IP connection limits, no batch ops, and the ``ret_msg`` of a failure is this
exchange's own explanation prefixed the way Bybit words it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from sapphire.encoding import to_json
from sapphire.venues.exchange.auth import (
    RateLimited,
    RateLimiter,
    check_window,
    verify_stream,
)
from sapphire.venues.exchange.errors import BAD_KEY, BAD_PARAM, BybitError
from sapphire.venues.exchange.faults import DISCONNECT_CLOSE_CODE
from sapphire.venues.exchange.state import LINEAR, SPOT, ExchangeState
from sapphire.venues.exchange.streams import (
    DEFAULT_QUEUE,
    SLOW_CLOSE_CODE,
    Connection,
    StreamHub,
)

__all__ = ["TradeOp", "mount"]

Params = Mapping[str, Any]
#: a trade-stream op's REST path, rate-limit group (or how to pick it) and handler
TradeOp = tuple[str, str | Callable[[Params], str], Callable[[ExchangeState, Params], object]]
Handle = Callable[[Connection, dict[str, Any]], None]


def mount(
    app: FastAPI,
    state: ExchangeState,
    limiter: RateLimiter,
    trade_ops: Mapping[str, TradeOp],
    queue_limit: int = DEFAULT_QUEUE,
) -> StreamHub:
    """Add the WebSocket routes to `app`; the hub that feeds them is returned (and kept
    as ``app.state.streams``)."""
    hub = StreamHub(state, queue_limit)
    app.state.streams = hub

    def route(path: str, category: str, handle: Handle) -> None:
        async def endpoint(websocket: WebSocket) -> None:
            await _serve(websocket, hub, category, handle)

        app.add_api_websocket_route(path, endpoint, name=path)

    for category in (LINEAR, SPOT):
        route(f"/v5/public/{category}", category, lambda c, r: _public(hub, c, r))
    route("/v5/private", "private", lambda c, r: _private(hub, c, r))
    route("/v5/trade", "trade", lambda c, r: _trade(state, limiter, trade_ops, c, r))
    return hub


# ---------------------------------------------------------------------- the socket
async def _serve(websocket: WebSocket, hub: StreamHub, category: str, handle: Handle) -> None:
    await websocket.accept()
    conn = hub.connect(asyncio.get_running_loop(), category)
    tasks = {
        asyncio.create_task(_send(websocket, conn, hub)),
        asyncio.create_task(_receive(websocket, conn, handle)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        hub.disconnect(conn)


async def _send(websocket: WebSocket, conn: Connection, hub: StreamHub) -> None:
    try:
        while True:
            text = await conn.queue.get()
            if text is None and conn.closing is not None:  # `close`d (a restart)
                await websocket.close(*conn.closing)
                return
            if text is None:  # more than `limit` messages behind: drop the client
                limit = hub.queue_limit
                await websocket.close(SLOW_CLOSE_CODE, f"too slow: over {limit} messages unsent")
                return
            if hub.faults is not None and hub.faults.disconnect(conn):
                await websocket.close(DISCONNECT_CLOSE_CODE, "fault injection: ws_disconnect")
                return
            await websocket.send_text(text)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return


async def _receive(websocket: WebSocket, conn: Connection, handle: Handle) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
            try:
                request = json.loads(text)
            except ValueError:
                request = None
            if not isinstance(request, dict):
                conn.send(_failure(conn, {}, f"error:request is not a JSON object: {text[:80]!r}"))
                continue
            handle(conn, request)
    except (WebSocketDisconnect, RuntimeError):
        return


# ---------------------------------------------------------------------- answers
def _failure(conn: Connection, request: Mapping[str, Any], message: str) -> str:
    answer: dict[str, object] = {"success": False, "ret_msg": message, "conn_id": conn.id}
    if request.get("req_id") is not None:
        answer["req_id"] = str(request["req_id"])
    answer["op"] = str(request.get("op", ""))
    return to_json(answer)


def _ack(conn: Connection, request: Mapping[str, Any], ret_msg: str) -> str:
    answer: dict[str, object] = {"success": True, "ret_msg": ret_msg, "conn_id": conn.id}
    if request.get("req_id") is not None:
        answer["req_id"] = str(request["req_id"])
    answer["op"] = str(request.get("op"))
    return to_json(answer)


def _pong(conn: Connection, request: Mapping[str, Any], now: int) -> str:
    """The private and trade streams' pong (the public one is an ack of op ping)."""
    answer: dict[str, object] = {"op": "pong", "args": [str(now)], "conn_id": conn.id}
    if request.get("req_id") is not None:
        answer = {"req_id": str(request["req_id"]), **answer}
    return to_json(answer)


def _topics(request: Mapping[str, Any]) -> list[str]:
    args = request.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise BybitError(BAD_PARAM, f"error:args must be a non-empty list of topics, got {args!r}")
    return args


def _subscription(hub: StreamHub, conn: Connection, request: Mapping[str, Any], ok: str) -> None:
    op = request.get("op")
    try:
        topics = _topics(request)
        if op == "subscribe":
            hub.subscribe(conn, topics, _ack(conn, request, ok))
        else:
            hub.unsubscribe(conn, topics)
            conn.send(_ack(conn, request, ok))
    except BybitError as exc:
        conn.send(_failure(conn, request, exc.message))


# ---------------------------------------------------------------------- the streams
def _public(hub: StreamHub, conn: Connection, request: dict[str, Any]) -> None:
    op = request.get("op")
    if op == "ping":
        conn.send(_ack(conn, request, "pong"))
    elif op in ("subscribe", "unsubscribe"):
        _subscription(hub, conn, request, str(op))
    else:
        conn.send(_failure(conn, request, f"error:invalid op {op!r}: expected subscribe, "
                           "unsubscribe or ping"))  # fmt: skip


def _private(hub: StreamHub, conn: Connection, request: dict[str, Any]) -> None:
    op = request.get("op")
    state = hub.state
    if op == "ping":
        conn.send(_pong(conn, request, state.clock()))
    elif op == "auth":
        try:
            conn.key = verify_stream(request.get("args"), state.credentials, state.clock()).key
        except BybitError as exc:
            conn.send(_failure(conn, request, exc.message))
            return
        conn.send(_ack(conn, request, ""))
    elif op in ("subscribe", "unsubscribe"):
        if conn.key is None:
            conn.send(_failure(conn, request, "Request not authorized: send op auth first"))
            return
        _subscription(hub, conn, request, "")
    else:
        conn.send(_failure(conn, request, f"error:invalid op {op!r}: expected auth, "
                           "subscribe, unsubscribe or ping"))  # fmt: skip


def _trade(
    state: ExchangeState,
    limiter: RateLimiter,
    trade_ops: Mapping[str, TradeOp],
    conn: Connection,
    request: dict[str, Any],
) -> None:
    op = str(request.get("op", ""))
    if op == "ping":
        conn.send(_pong(conn, request, state.clock()))
        return
    if op == "auth":
        answer: dict[str, object] = {"retCode": 0, "retMsg": "OK", "op": "auth"}
        try:
            conn.key = verify_stream(request.get("args"), state.credentials, state.clock()).key
        except BybitError as exc:
            answer |= {"retCode": exc.code, "retMsg": exc.message}
        conn.send(to_json({**answer, "connId": conn.id}))
        return
    headers: dict[str, str] = {}
    result: object = {}
    code, message = 0, "OK"
    try:
        if op not in trade_ops:
            raise BybitError(BAD_PARAM, f"Invalid op {op!r}: expected one of "
                             f"{', '.join(trade_ops)}, auth or ping")  # fmt: skip
        if conn.key is None:
            raise BybitError(BAD_KEY, "Request not authorized: send op auth first")
        header = {str(k).lower(): str(v) for k, v in (request.get("header") or {}).items()}
        check_window(
            header.get("x-bapi-timestamp"), header.get("x-bapi-recv-window", "5000"), state.clock()
        )
        args = request.get("args")
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
            raise BybitError(BAD_PARAM, f"params error: args must be [one order], got {args!r}")
        path, group, handler = trade_ops[op]
        params = args[0]
        name = group if isinstance(group, str) else group(params)
        try:
            headers = limiter.take(conn.key, name, path)
        except RateLimited as exc:
            headers = exc.headers
            raise
        with state.lock:
            result = handler(state, params)
    except BybitError as exc:
        code, message, result = exc.code, exc.message, {}
    conn.send(to_json({
        "reqId": request.get("reqId"), "retCode": code, "retMsg": message, "op": op,
        "data": result, "header": {**headers, "Timenow": str(state.clock())}, "connId": conn.id,
    }))  # fmt: skip
