"""The WebSocket streams: `/api/v1/ws`, one endpoint for every stream.

Protocol (JSON text messages):

1. The client's first message authenticates, within 5 seconds:
   `{"type": "auth", "token": "<access token or API key>"}` (a credential in the URL is
   refused: URLs end up in logs). The server answers `{"type": "authenticated", ...}`, or
   closes with 4401 (no, late or bad credentials) or 4403 (no `read` scope). The same
   message later swaps in a fresh token; the credential is checked again every minute,
   so an expired or revoked one ends the stream (4401).
2. `{"type": "subscribe", "channels": [...]}` / `{"type": "unsubscribe", ...}`:
   `node.<run_id>` (everything a node publishes) or `node.<run_id>.<kind>` with kind
   fills, orders, positions (and balances), equity, risk (and trading-state changes) or
   status (and command acknowledgements); `jobs` (research job progress);
   `candles.<instrument>.<timeframe>`. The answer is `{"type": "subscribed", "channels":
   [...]}` or `{"type": "error", "detail": "..."}` naming the bad channel.
3. Events: `{"type": "event", "channel": "...", "position": "...", "event": {...}}`, from
   the moment of the subscription on. A client that reconnects passes the last position
   it got per channel, `{"type": "subscribe", "channels": [...], "since": {channel:
   position}}`, and first gets the events after it (the answer says how many:
   `"replayed": {channel: n}`), then the live ones: nothing missed, nothing twice. More
   than `QUEUE_SIZE` events back is refused: the REST API has the history.

Backpressure: one reader thread per app (`StreamHub`) follows the channels clients want
and hands each client its events without ever waiting; each client has a bounded queue,
and a client that lets it fill (it reads too slowly) is closed with 1013 and a reason.
Neither the reader nor the nodes are slowed by a slow client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from sapphire.encoding import to_json
from sapphire.engine.stream import JOBS, EventStream, StreamEntry, check_channel

__all__ = [
    "AUTH_TIMEOUT_S",
    "CLOSE_AUTH",
    "CLOSE_FORBIDDEN",
    "CLOSE_PROTOCOL",
    "CLOSE_SLOW",
    "KINDS",
    "QUEUE_SIZE",
    "StreamHub",
    "parse_channel",
    "router",
]

router = APIRouter(tags=["streams"])

AUTH_TIMEOUT_S = 5.0
#: events a client may have waiting before it is dropped as too slow
QUEUE_SIZE = 1000
#: events the hub reads at a time (a burst reaches the clients in steps of this size)
HUB_BATCH = 100
#: seconds between two checks of a stream's credential
RECHECK_S = 60.0
CLOSE_AUTH = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_PROTOCOL = 4400
CLOSE_SLOW = 1013
#: seconds a dropped client has to read up to the close frame before it is cut off
SLOW_CLOSE_S = 30.0
#: `node.<run_id>.<kind>`: the event types of each kind
KINDS: dict[str, frozenset[str]] = {
    "fills": frozenset({"fill"}),
    "orders": frozenset({"order"}),
    "positions": frozenset({"position", "balance"}),
    "equity": frozenset({"equity"}),
    "risk": frozenset({"risk", "trading_state"}),
    "status": frozenset({"status", "ack"}),
}
_MAX_CHANNELS = 100


def parse_channel(name: object) -> tuple[str, frozenset[str] | None]:
    """The stream channel a subscription reads and the event types it keeps (None: all);
    a ValueError names a bad one."""
    expected = (
        "expected node.<run_id>[.fills|.orders|.positions|.equity|.risk|.status], jobs "
        "or candles.<instrument>.<timeframe>"
    )
    if not isinstance(name, str):
        raise ValueError(f"channel {name!r} is invalid: {expected}")
    if name == JOBS:
        return JOBS, None
    if name.startswith("candles.") and name.count(".") >= 2:
        return check_channel(name), None
    if name.startswith("node.") and len(name) > 5:
        base, _, kind = name.rpartition(".")
        if kind == "control":
            raise ValueError(f"channel {name!r} is a node's commands: it cannot be read here")
        if kind in KINDS and base != "node":
            return check_channel(base), KINDS[kind]
        return check_channel(name), None
    raise ValueError(f"channel {name!r} is unknown: {expected}")


class Client:
    """One WebSocket client's side of the hub: its channels and its bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int | None = None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[StreamEntry] = asyncio.Queue(maxsize or QUEUE_SIZE)
        #: stream channel -> event types kept (None: all)
        self.channels: dict[str, frozenset[str] | None] = {}
        self.dropped: str | None = None
        self.overflow = asyncio.Event()
        #: events kept back while a resuming subscription is answered (None: none)
        self.held: list[StreamEntry] | None = None

    def offer(self, entries: list[StreamEntry]) -> None:
        """Queue `entries` (on the client's event loop); a full queue drops the client."""
        if self.dropped is not None:
            return
        channels = self.channels
        for entry in entries:
            if entry.channel not in channels:
                continue  # unsubscribed meanwhile
            kinds = channels.get(entry.channel)
            if kinds is not None and entry.event.get("type") not in kinds:
                continue
            if self.held is not None:
                self.held.append(entry)
            elif not self._put(entry):
                return

    def hold(self) -> None:
        """Keep events back (on the loop) until `release`: the answer goes first."""
        if self.held is None:
            self.held = []

    def release(self) -> None:
        """Queue the events kept back, in order (on the loop)."""
        held, self.held = self.held or [], None
        for entry in held:
            if not self._put(entry):
                return

    def _put(self, entry: StreamEntry) -> bool:
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped = (
                f"too slow: more than {self.queue.maxsize} events waiting; "
                "reconnect and subscribe again"
            )
            self.overflow.set()
            return False
        return True


class StreamHub:
    """One reader thread for all the clients of an app (see the module docstring)."""

    def __init__(self, stream: EventStream, *, poll_s: float = 0.5) -> None:
        self.stream = stream
        self.poll_s = poll_s
        self.errors = 0
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._positions: dict[str, str] = {}
        self._thread: threading.Thread | None = None

    def subscribe(
        self,
        client: Client,
        channel: str,
        kinds: frozenset[str] | None,
        since: str | None = None,
    ) -> int:
        """`client` gets `channel`'s events from now on (blocking: call off the loop);
        with `since` (a position an event came with), first those after it, so a client
        that reconnects misses nothing. Returns how many were replayed; a ValueError names
        a bad position or one more than `QUEUE_SIZE` events back."""
        with self._lock:
            known = channel in self._positions
        head = None if known else self.stream.head(channel)
        with self._lock:
            if channel not in self._positions and head is not None:
                self._positions[channel] = head
            replay: list[StreamEntry] = []
            if since is not None:
                # under the lock: the reader cannot hand out what comes after the hub's
                # position before this client has what comes up to it
                replay = self._since(channel, since, self._positions[channel])
            # the channel is the client's before its replay reaches its loop (the loop
            # runs now, in its own thread: it keeps only its channels' events)
            if channel not in client.channels:
                client.channels[channel] = kinds
            else:  # a second subscription to the channel: the union of the two
                old = client.channels[channel]
                client.channels[channel] = None if old is None or kinds is None else old | kinds
            if replay:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    client.loop.call_soon_threadsafe(client.offer, replay)
            self._clients.add(client)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sapphire-ws", daemon=True)
                self._thread.start()
        return len(replay)

    def _since(self, channel: str, since: str, upto: str) -> list[StreamEntry]:
        """`channel`'s events after position `since` up to `upto` (the hub's position)."""
        if not isinstance(since, str) or not since or len(since) > 40:
            raise ValueError(f"position {since!r} of channel {channel!r} is invalid")
        out: list[StreamEntry] = []
        cursor = since
        while True:
            try:
                entries = self.stream.read({channel: cursor}, count=HUB_BATCH)
            except Exception as exc:
                raise ValueError(f"position {since!r} of channel {channel!r} is invalid") from exc
            for entry in entries:
                out.append(entry)
                if len(out) > QUEUE_SIZE:
                    raise ValueError(
                        f"more than {QUEUE_SIZE} events of {channel!r} since position "
                        f"{since!r}: read what was missed through the REST API, then "
                        "subscribe without since"
                    )
                if entry.position == upto:
                    return out
            if not entries:
                return out
            cursor = entries[-1].position

    def unsubscribe(self, client: Client, channels: Iterable[str]) -> None:
        with self._lock:
            for channel in channels:
                client.channels.pop(channel, None)
            self._forget()

    def leave(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)
            client.channels.clear()
            self._forget()

    def _forget(self) -> None:
        wanted = {c for client in self._clients for c in client.channels}
        for channel in set(self._positions) - wanted:
            del self._positions[channel]

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._clients:
                    self._thread = None
                    return
                cursors = dict(self._positions)
            if not cursors:
                time.sleep(self.poll_s)
                continue
            try:
                entries = self.stream.read(cursors, timeout=self.poll_s, count=HUB_BATCH)
            except Exception:  # the stream is down: try again, clients wait
                self.errors += 1
                time.sleep(1.0)
                continue
            if not entries:
                continue
            with self._lock:
                # a channel dropped (no client left) and subscribed again while this read
                # ran starts from its new position: what was read from the old is not sent
                current = {c for c, p in cursors.items() if self._positions.get(c) == p}
                entries = [e for e in entries if e.channel in current]
                for entry in entries:
                    self._positions[entry.channel] = entry.position
                targets = list(self._clients)
            for client in targets:
                mine = [e for e in entries if e.channel in client.channels]
                if mine:
                    with contextlib.suppress(RuntimeError):  # its loop has closed
                        client.loop.call_soon_threadsafe(client.offer, mine)


def _hub(websocket: WebSocket) -> StreamHub:
    state = websocket.app.state
    hub: StreamHub | None = getattr(state, "stream_hub", None)
    if hub is None:
        hub = state.stream_hub = StreamHub(state.service.events)
    return hub


async def _close(websocket: WebSocket, code: int, reason: str, timeout: float = 2.0) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason[:120]), timeout)


async def _authenticate(websocket: WebSocket, message: Any) -> tuple[Any, str] | None:
    """The principal of an auth message, else close the socket and return None."""
    token = message.get("token") if isinstance(message, dict) else None
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(token, str):
        await _close(websocket, CLOSE_AUTH, 'authenticate first: {"type": "auth", "token": "..."}')
        return None
    auth = websocket.app.state.service.auth
    try:
        principal = await run_in_threadpool(auth.principal_from_bearer, token.strip())
    except HTTPException as exc:
        await _close(websocket, CLOSE_AUTH, f"not authenticated: {exc.detail}")
        return None
    if "read" not in principal.scopes:
        await _close(websocket, CLOSE_FORBIDDEN, "streams need the 'read' scope")
        return None
    return principal, token.strip()


@router.websocket("/ws")
async def streams(websocket: WebSocket) -> None:
    """The event streams (see the module docstring)."""
    await websocket.accept()
    if any(
        k.lower() in ("token", "access_token", "api_key", "key") for k in websocket.query_params
    ):
        await _close(websocket, CLOSE_PROTOCOL, "never put a credential in the URL")
        return
    try:
        first = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_S)
    except TimeoutError:
        await _close(websocket, CLOSE_AUTH, f"no auth message within {AUTH_TIMEOUT_S:g} s")
        return
    except WebSocketDisconnect:
        return
    authed = await _authenticate(websocket, _json(first))
    if authed is None:
        return
    principal, token = authed
    await websocket.send_json(
        {"type": "authenticated", "user": principal.username, "scopes": sorted(principal.scopes)}
    )
    client = Client(asyncio.get_running_loop())
    hub = _hub(websocket)
    sender = asyncio.create_task(_send(websocket, client))
    receiver = asyncio.create_task(_receive(websocket, client, hub, token))
    dropped = asyncio.create_task(client.overflow.wait())
    tasks: set[asyncio.Task[Any]] = {sender, receiver, dropped}
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.leave(client)
        for task in tasks:
            task.cancel()
    failed = [t for t in done if not t.cancelled() and t.exception() is not None]
    if failed:
        return  # the client went away (a send or a receive failed): nothing to say
    if dropped in done and client.dropped is not None:
        # the close frame goes after what the client has not read yet: it gets the
        # reason once it catches up (or the connection is given up after SLOW_CLOSE_S)
        await _close(websocket, CLOSE_SLOW, client.dropped, SLOW_CLOSE_S)
    elif receiver in done:
        code, reason = receiver.result()
        if code:
            await _close(websocket, code, reason)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


async def _send(websocket: WebSocket, client: Client) -> None:
    while True:
        entry = await client.queue.get()
        await websocket.send_text(
            to_json({"type": "event", "channel": entry.channel, "position": entry.position,
                     "event": entry.event})
        )  # fmt: skip


async def _receive(
    websocket: WebSocket, client: Client, hub: StreamHub, token: str
) -> tuple[int, str]:
    """Handle the client's messages; returns the close code and reason (0: it left)."""
    auth = websocket.app.state.service.auth
    checked = time.monotonic()
    while True:
        try:
            text = await asyncio.wait_for(websocket.receive_text(), RECHECK_S)
        except TimeoutError:
            text = None
        except WebSocketDisconnect:
            return 0, ""
        if time.monotonic() - checked >= RECHECK_S:
            try:
                await run_in_threadpool(auth.principal_from_bearer, token)
            except HTTPException as exc:
                return CLOSE_AUTH, f"credential no longer valid: {exc.detail}"
            checked = time.monotonic()
        if text is None:
            continue
        message = _json(text)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "auth":
            authed = await _authenticate(websocket, message)
            if authed is None:
                return 0, ""  # already closed with the reason
            token, checked = authed[1], time.monotonic()
            await websocket.send_json({"type": "authenticated", "user": authed[0].username})
        elif kind in ("subscribe", "unsubscribe"):
            await _subscription(websocket, client, hub, message)
        elif kind == "ping":
            await websocket.send_json({"type": "pong"})
        else:
            await websocket.send_json(
                {"type": "error", "detail": f"message type {kind!r} is unknown: expected "
                 "subscribe, unsubscribe, auth or ping"}
            )  # fmt: skip


async def _subscription(
    websocket: WebSocket, client: Client, hub: StreamHub, message: dict[str, Any]
) -> None:
    names = message.get("channels")
    if not isinstance(names, list) or not names or len(names) > _MAX_CHANNELS:
        await websocket.send_json(
            {"type": "error", "detail": f"channels must be a list of 1 to {_MAX_CHANNELS} names"}
        )
        return
    try:
        parsed = [(name, *parse_channel(name)) for name in names]
    except ValueError as exc:
        await websocket.send_json({"type": "error", "detail": str(exc)})
        return
    if message["type"] == "unsubscribe":
        hub.unsubscribe(client, [channel for _name, channel, _kinds in parsed])
        await websocket.send_json({"type": "unsubscribed", "channels": names})
        return
    if len(set(client.channels) | {c for _n, c, _k in parsed}) > _MAX_CHANNELS:
        await websocket.send_json(
            {"type": "error", "detail": f"at most {_MAX_CHANNELS} channels per connection"}
        )
        return
    since = message.get("since") or {}
    known = {name for name, channel, _k in parsed} | {channel for _n, channel, _k in parsed}
    unknown = sorted(set(since) - known) if isinstance(since, dict) else None
    if unknown is None or unknown:
        await websocket.send_json(
            {"type": "error", "detail": "since must map channels of this subscription to "
             f"positions an event came with{f'; {unknown[0]!r} is not one' if unknown else ''}"}
        )  # fmt: skip
        return
    replayed: dict[str, int] = {}
    if since:
        client.hold()  # the answer, then what is replayed, then the live events
    try:
        for name, channel, kinds in parsed:
            # a position is the stream channel's: given by either name, replayed once
            key = name if name in since else channel if channel in since else None
            position = since.get(key) if key is not None and key not in replayed else None
            n = await run_in_threadpool(hub.subscribe, client, channel, kinds, position)
            if position is not None and key is not None:
                replayed[key] = n
    except ValueError as exc:
        client.release()
        await websocket.send_json({"type": "error", "detail": str(exc)})
        return
    except Exception as exc:
        client.release()
        await websocket.send_json(
            {"type": "error", "detail": f"the event stream is unavailable: {type(exc).__name__}"}
        )
        return
    answer: dict[str, Any] = {"type": "subscribed", "channels": names}
    if replayed:
        answer["replayed"] = replayed
    try:
        await websocket.send_json(answer)
    finally:
        client.release()
