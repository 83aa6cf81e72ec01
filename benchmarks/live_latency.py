"""Live latency over loopback: from the local Bybit exchange sending a public trade on
its WebSocket to the same exchange receiving the order that trade caused.

Two processes on 127.0.0.1, as a user runs them: the local exchange (`sapphire.venues.
exchange`, uvicorn, in a child process started by this script) replays one bar every
`--interval-ms` and so sends one `publicTrade.BTCUSDT` message a bar; the live node (this
process) is the one every mode builds, `build_node(mode="live")`, with `BybitVenue` (its
private stream on) and its market feed (`venue.watch_market`: ccxt.pro's `watch_trades`),
and a trivial event strategy that sends a 0.001 BTC market order, alternately buy and
sell, on each trade it gets. The feed's callback runs on the venue's event-loop thread
and hands the trade to the node's thread through a queue, as a live loop does; the node
turns it into a `TradeTick` and runs `process_trade_tick` (strategy, pre-trade risk
checks of the default risk profile, `venue.submit_order`), and the venue's loop sends the
order by REST (`/v5/order/create`) through its `Guard` and ccxt.

Marks (`time.perf_counter_ns`, CLOCK_MONOTONIC on Linux: one clock for both processes),
matched exactly by trade id and orderLinkId, not by order of arrival:

    sent      the exchange hands the trade message to uvicorn (an ASGI wrapper, here only)
    received  ccxt.pro's bybit `handle_message` gets the decoded message
    fed       `on_trade` is called with ccxt's parsed trade
    node      the node's thread takes it from the queue
    submit    `BybitVenue.submit_order` is called (TradeTick, node, strategy, risk done)
    create    ccxt's `create_order` is called on the venue's loop
    request   ccxt's `fetch` is called (the request built and signed)
    arrived   the exchange's ASGI app is called for `/v5/order/create`

and the stages printed are their differences: `transport_in` (sent -> received: loopback,
the WebSocket frame, aiohttp, JSON decoding), `ccxt_pro_parse` (received -> fed: ccxt.pro
parses the trades, resolves `watch_trades`, Sapphire's `MarketFeed` loop calls back),
`handoff_to_node` (fed -> node: the queue between threads), `node_strategy_risk` (node ->
submit: the TradeTick, `process_trade_tick`, the strategy, the risk checks),
`venue_to_ccxt` (submit -> create: `BybitVenue.submit_order`, the hop onto the venue's
loop, the `Guard`'s breaker and rate limiter), `ccxt_build_sign` (create -> request),
`http_send` (request -> arrived: aiohttp, loopback, uvicorn's HTTP parsing). Sapphire's
own code is `node_strategy_risk` + `venue_to_ccxt` + `handoff_to_node` (plus the
`MarketFeed` callback inside `ccxt_pro_parse`).

Both processes' rate limits are raised to 1,000 requests/s (Bybit's 10/s for order
creation would make the client's limiter wait at this pace, which is not latency). Each
figure is p50/p99/max in microseconds over `--samples` orders after `--warmup`, with
Python's garbage collector on (`gc_on`, as a user's process runs) and, labelled beside
it, off in the node's process for the measured messages (`gc_off`).

    python benchmarks/live_latency.py [--samples 1000] [--interval-ms 20]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

SYMBOL = "BTC/USDT:USDT"
TRADE_TOPIC = "publicTrade.BTCUSDT"
KEY, SECRET = "benchkey0000000001", "benchsecret000000000000000000001"
HIGH = 1000  # requests per second, both sides
STAGES = (
    ("transport_in", "sent", "received"),
    ("ccxt_pro_parse", "received", "fed"),
    ("handoff_to_node", "fed", "node"),
    ("node_strategy_risk", "node", "submit"),
    ("venue_to_ccxt", "submit", "create"),
    ("ccxt_build_sign", "create", "request"),
    ("http_send", "request", "arrived"),
)
SAPPHIRE = ("handoff_to_node", "node_strategy_risk", "venue_to_ccxt")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# ---------------------------------------------------------------------- the exchange
class Stamps:
    """ASGI wrapper of the exchange: stamps each trade message at send and each order
    creation at arrival; `GET /bench/stamps` returns them, `GET /bench/start?bars=N&
    speed=S` starts the replay."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state
        self.sent: dict[str, int] = {}
        self.arrived: dict[str, int] = {}
        self.clock: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/v5/public/linear":

            async def stamped_send(message: dict[str, Any]) -> None:
                t = time.perf_counter_ns()
                text = message.get("text")
                if text and TRADE_TOPIC in text:
                    for row in json.loads(text)["data"]:
                        self.sent[str(row["i"])] = t
                await send(message)

            return await self.app(scope, receive, stamped_send)
        if scope["type"] == "http" and scope["path"] == "/v5/order/create":
            t = time.perf_counter_ns()
            chunks: list[bytes] = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            self.arrived[str(json.loads(body).get("orderLinkId"))] = t
            done = False

            async def replay() -> dict[str, Any]:
                nonlocal done
                if done:
                    return await receive()
                done = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)
        if scope["type"] == "http" and scope["path"].startswith("/bench/"):
            if scope["path"] == "/bench/start":
                query = dict(p.split("=") for p in scope["query_string"].decode().split("&"))
                self.clock = self.state.start_clock(float(query["speed"]), int(query["bars"]))
                answer = b"{}"
            else:
                answer = json.dumps({"sent": self.sent, "arrived": self.arrived}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": answer})
            return None
        return await self.app(scope, receive, send)


def serve(port_file: str) -> None:
    """The child process: the local exchange behind `Stamps` until killed."""
    from sapphire.venues.exchange import BackgroundServer, ExchangeState, create_app
    from sapphire.venues.exchange.auth import DEFAULT_LIMITS, Credentials

    state = ExchangeState(credentials=[Credentials(KEY, SECRET)])
    app = create_app(state, limits=dict.fromkeys(DEFAULT_LIMITS, HIGH))
    server = BackgroundServer(Stamps(app, state)).start()
    with open(port_file, "w", encoding="utf-8") as f:
        f.write(server.url)
    while True:
        time.sleep(3600)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


# ---------------------------------------------------------------------- the node
def measure(url: str, samples: int, warmup: int, interval_ms: float) -> dict[str, Any]:
    from sapphire.domain import InstrumentId, OrderSide, TradeId, TradeTick
    from sapphire.engine.builder import build_node
    from sapphire.engine.clock import WallClock
    from sapphire.engine.config import RunConfig
    from sapphire.engine.strategy import EventStrategy
    from sapphire.venues.bybit import LIMITS, BybitConnection, BybitEnvironment
    from sapphire.venues.live import BybitVenue

    marks: dict[str, dict[str, int]] = {}  # trade id -> mark -> ns
    by_link: dict[str, str] = {}  # orderLinkId -> trade id
    iid = InstrumentId(SYMBOL, "BYBIT")

    class Flipper(EventStrategy):
        def __init__(self) -> None:
            super().__init__("lat")
            self.n = 0

        def on_trade_tick(self, tick: Any) -> None:
            self.n += 1
            side = OrderSide.BUY if self.n % 2 else OrderSide.SELL
            self.submit_order(self.market(iid, side, "0.001"))

    conn = BybitConnection(BybitEnvironment.LOCAL, url=url)
    environ = {"BYBIT_LOCAL_API_KEY": KEY, "BYBIT_LOCAL_API_SECRET": SECRET}
    venue = BybitVenue(conn, [SYMBOL], environ=environ, limits=dict.fromkeys(LIMITS, HIGH))
    venue.start()
    client = venue._client
    current = [""]

    handle = client.handle_message  # bound before the public connection is made

    def received(ws: Any, message: Any) -> Any:
        t = time.perf_counter_ns()
        if isinstance(message, dict) and message.get("topic") == TRADE_TOPIC:
            for row in message["data"]:
                marks.setdefault(str(row["i"]), {})["received"] = t
        return handle(ws, message)

    client.handle_message = received
    create_order, fetch = client.create_order, client.fetch

    async def create(*args: Any, **kwargs: Any) -> Any:
        link = str(args[-1].get("clientOrderId"))
        marks.setdefault(by_link.get(link, ""), {})["create"] = time.perf_counter_ns()
        return await create_order(*args, **kwargs)

    async def fetched(url_: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        if "order/create" in url_ and body:
            link = str(json.loads(body).get("orderLinkId"))
            marks.setdefault(by_link.get(link, ""), {})["request"] = time.perf_counter_ns()
        return await fetch(url_, method, headers, body)

    client.create_order, client.fetch = create, fetched
    submit = venue.submit_order

    def submitted(order: Any, sizer: Any = None) -> None:
        marks[current[0]]["submit"] = time.perf_counter_ns()
        by_link[str(order.client_order_id)] = current[0]
        submit(order, sizer)

    venue.submit_order = submitted
    setup = build_node(
        RunConfig(cash=100_000), mode="live", venue=venue, instrument_id=iid,
        strategy=Flipper(), clock=WallClock(), run_id="latency",
    )  # fmt: skip
    node = setup.node
    strategy = next(s for s in node.strategies if isinstance(s, Flipper))
    # build_node subscribes a strategy to bars; this one trades on each trade tick too
    node._tick_subs.setdefault(iid, []).append(strategy)
    node.start()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def on_trade(trade: Any) -> None:
        marks.setdefault(str(trade["id"]), {})["fed"] = time.perf_counter_ns()
        inbox.put(trade)

    venue.watch_market([SYMBOL], on_trade=on_trade)
    time.sleep(1.0)  # subscribed
    total = 2 * (warmup + samples)
    _get(f"{url}/bench/start?bars={total}&speed={60_000 / interval_ms}")
    order: list[str] = []
    gc.collect()
    try:
        while len(order) < total:
            if len(order) == warmup + samples:
                gc.collect()
                gc.disable()  # the second half: gc_off
            trade = inbox.get(timeout=30)
            tid = str(trade["id"])
            marks[tid]["node"] = time.perf_counter_ns()
            current[0] = tid
            order.append(tid)
            node.process_trade_tick(
                TradeTick(instrument_id=iid, ts_ns=int(trade["timestamp"]) * 1_000_000,
                          price=float(trade["price"]), size=float(trade["amount"]),
                          aggressor_side=None, trade_id=TradeId(tid))
            )  # fmt: skip
            venue.drain()
    finally:
        gc.enable()
    time.sleep(1.0)  # the last orders arrive
    venue.drain()
    exchange = _get(f"{url}/bench/stamps")
    denied = sum(1 for tid in order if "submit" not in marks[tid])
    venue.close()
    for link, tid in by_link.items():
        if link in exchange["arrived"]:
            marks[tid]["arrived"] = exchange["arrived"][link]
    for tid in order:
        if tid in exchange["sent"]:
            marks[tid]["sent"] = exchange["sent"][tid]
    phases = {
        "gc_on": order[warmup : warmup + samples],
        "gc_off": order[2 * warmup + samples :],
    }
    out: dict[str, Any] = {"not_ordered": denied, "errors": [repr(e) for e in venue.errors]}
    for label, tids in phases.items():
        rows = [marks[t] for t in tids]
        complete = [m for m in rows if all(k in m for _, a, b in STAGES for k in (a, b))]
        result: dict[str, Any] = {"samples": len(complete)}
        result["end_to_end"] = _stats([m["arrived"] - m["sent"] for m in complete])
        for name, a, b in STAGES:
            result[name] = _stats([m[b] - m[a] for m in complete])
        own = [sum(m[b] - m[a] for name, a, b in STAGES if name in SAPPHIRE) for m in complete]
        result["sapphire_own"] = _stats(own)
        result["sapphire_share_of_median"] = round(
            float(np.median(own)) / max(float(np.median([m["arrived"] - m["sent"]
                                                         for m in complete])), 1.0), 3
        )  # fmt: skip
        out[label] = result
    return out


def _stats(ns: list[int]) -> dict[str, float]:
    if not ns:
        return {}
    us = np.asarray(ns, dtype=float) / 1000.0
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "max_us": round(float(us.max()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0, help="ms between bars")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the child: its port file
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "url")
        child = subprocess.Popen([sys.executable, __file__, "--serve", port_file])
        try:
            deadline = time.monotonic() + 60
            while not (os.path.exists(port_file) and os.path.getsize(port_file)):
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("the local exchange did not start")
                time.sleep(0.05)
            with open(port_file, encoding="utf-8") as f:
                url = f.read()
            figures = measure(url, args.samples, args.warmup, args.interval_ms)
        finally:
            child.kill()
            child.wait()
    out = {
        "benchmark": "live_latency",
        "what": "exchange sends a publicTrade WS message -> the exchange receives the "
        "order it caused (POST /v5/order/create), loopback, two processes",
        "samples": args.samples,
        "interval_ms": args.interval_ms,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "sapphire_stages": list(SAPPHIRE),
        **figures,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
