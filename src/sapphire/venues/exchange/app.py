"""The local exchange's HTTP side: Bybit's v5 REST API over an `ExchangeState`.

`create_app(state)` builds the FastAPI app. Every answer is Bybit's envelope
``{"retCode", "retMsg", "result", "retExtInfo", "time"}`` with HTTP 200, errors included
(`sapphire.venues.exchange.errors`). Private endpoints check the signature and the
recvWindow (`sapphire.venues.exchange.auth`) on the raw query string or body, then the
key's rate limit for the endpoint's group. Public endpoints are not rate limited.

The WebSocket streams (public market data, private account updates, the trade stream)
are mounted on the same app: `sapphire.venues.exchange.ws`.

Requests that change the state (`MUTATIONS`) go through `ExchangeState.perform`, which
writes them to the state's journal when it has one. With a `FaultPlan` the app injects
its faults (`sapphire.venues.exchange.faults`).

`BackgroundServer` runs an app with uvicorn on a thread (tests, scripts).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sapphire.venues.exchange import trading, views, ws
from sapphire.venues.exchange.auth import RateLimited, RateLimiter, verify
from sapphire.venues.exchange.errors import BAD_PARAM, MODE_UNCHANGED, BybitError
from sapphire.venues.exchange.faults import FaultInjector, FaultMiddleware, FaultPlan
from sapphire.venues.exchange.state import LINEAR, SPOT, ExchangeState
from sapphire.venues.exchange.streams import DEFAULT_QUEUE

__all__ = ["MUTATIONS", "BackgroundServer", "create_app"]

Params = Mapping[str, Any]
Handler = Callable[[ExchangeState, Params], object]


def _envelope(
    state: ExchangeState, result: object, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": state.clock()}
    return JSONResponse(body, headers=dict(headers or {}))


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.scope["query_string"].decode(), keep_blank_values=True))


def create_app(
    state: ExchangeState,
    *,
    limits: Mapping[str, int] | None = None,
    stream_queue: int = DEFAULT_QUEUE,
    faults: FaultPlan | None = None,
) -> FastAPI:
    """The Bybit v5 REST and WebSocket app over `state`; `limits`: requests per second
    per key and endpoint group (`sapphire.venues.exchange.auth.DEFAULT_LIMITS`);
    `stream_queue`: messages a WebSocket client may fall behind before it is dropped;
    `faults`: what to inject (the injector, with its counts, is ``app.state.faults``)."""
    app = FastAPI(title="Sapphire local Bybit exchange", docs_url=None, redoc_url=None)
    limiter = RateLimiter(limits)

    @app.exception_handler(BybitError)
    async def bybit_error(request: Request, exc: BybitError) -> JSONResponse:
        body = {"retCode": exc.code, "retMsg": exc.message, "result": {}, "retExtInfo": {},
                "time": state.clock()}  # fmt: skip
        headers = exc.headers if isinstance(exc, RateLimited) else None
        return JSONResponse(body, headers=headers)

    def public(path: str, handler: Handler) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            params = _query(request)
            with state.lock:
                return _envelope(state, handler(state, params))

        app.add_api_route(path, endpoint, methods=["GET"], name=path)

    def private(
        path: str, method: str, group: str | Callable[[Params], str], handler: Handler
    ) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            raw = await request.body() if method == "POST" else request.scope["query_string"]
            credentials = verify(request.headers, raw, state.credentials, state.clock())
            params = _query(request) if method == "GET" else _json(raw)
            name = group if isinstance(group, str) else group(params)
            headers = limiter.take(credentials.key, name, path)
            with state.lock:
                result = handler(state, params)
            return _envelope(state, result, headers)

        app.add_api_route(path, endpoint, methods=[method], name=path)

    def order_group(params: Params) -> str:
        return "spot-order" if params.get("category") == SPOT else "order"

    public("/v5/market/time", _time)
    public("/v5/market/instruments-info", _instruments)
    public("/v5/market/tickers", _tickers)
    public("/v5/market/orderbook", _orderbook)
    public("/v5/market/kline", _kline)
    public("/v5/market/recent-trade", _recent_trades)
    public("/v5/market/funding/history", _funding_history)
    # order entry, by REST and by the trade stream alike: path, rate-limit group, handler
    trade_ops: dict[str, ws.TradeOp] = {
        "order.create": ("/v5/order/create", order_group, _journaled("order.create")),
        "order.amend": ("/v5/order/amend", "order", _journaled("order.amend")),
        "order.cancel": ("/v5/order/cancel", order_group, _journaled("order.cancel")),
    }
    for path, group, handler in trade_ops.values():
        private(path, "POST", group, handler)
    private("/v5/order/cancel-all", "POST", "order", _journaled("order.cancel-all"))
    private("/v5/order/realtime", "GET", "query", trading.realtime)
    private("/v5/order/history", "GET", "query", trading.history)
    private("/v5/execution/list", "GET", "query", trading.executions)
    private("/v5/position/list", "GET", "query", _positions)
    private("/v5/position/set-leverage", "POST", "position", _journaled("position.set-leverage"))
    private("/v5/position/switch-mode", "POST", "position", _switch_mode)
    private("/v5/account/wallet-balance", "GET", "query", _wallet)
    private("/v5/account/info", "GET", "query", _account_info)
    private("/v5/user/query-api", "GET", "query", _api_key_info)
    private("/v5/asset/coin/query-info", "GET", "query", lambda state, params: {"rows": []})
    hub = ws.mount(app, state, limiter, trade_ops, stream_queue)
    app.state.faults = None
    if faults is not None:
        injector = FaultInjector(faults)
        injector.attach(state, hub)
        app.add_middleware(FaultMiddleware, injector=injector)
        app.state.faults = injector
    return app


def _journaled(op: str) -> Handler:
    """The handler of the state-changing request `op`, performed through the state."""
    handler = MUTATIONS[op]
    return lambda state, params: state.perform(op, handler, params)


def _json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        params = json.loads(raw)
    except ValueError:
        raise BybitError(BAD_PARAM, f"params error: the body is not JSON: {raw[:80]!r}") from None
    if not isinstance(params, dict):
        raise BybitError(BAD_PARAM, "params error: the body must be a JSON object")
    return params


def _millis(params: Params, name: str) -> int | None:
    """The time parameter `name` in ms, None when absent."""
    text = params.get(name)
    if text and not str(text).isdigit():
        raise BybitError(BAD_PARAM, f"params error: {name} {text!r} must be milliseconds")
    return int(text) if text else None


def _limit(params: Params, default: int, high: int) -> int:
    text = str(params.get("limit") or default)
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise BybitError(BAD_PARAM, f"params error: limit {text!r} must be in 1..{high}")
    return int(text)


# -------------------------------------------------------------------------- public
def _time(state: ExchangeState, params: Params) -> dict[str, str]:
    now_ns = state.clock() * 1_000_000
    return {"timeSecond": str(now_ns // 1_000_000_000), "timeNano": str(now_ns)}


def _instruments(state: ExchangeState, params: Params) -> dict[str, object]:
    category = trading.category_of(params, ("spot", "linear", "inverse", "option"))
    symbol = params.get("symbol")
    listed = []
    if params.get("status") in (None, "", "Trading"):
        listed = [
            views.instrument(m)
            for (c, s), m in state.markets.items()
            if c == category and (not symbol or s == symbol)
        ]
    return {"category": category, "list": listed, "nextPageCursor": ""}


def _tickers(state: ExchangeState, params: Params) -> dict[str, object]:
    category = trading.category_of(params)
    symbol = params.get("symbol")
    if symbol:
        state.market(category, symbol)
    listed = [
        views.ticker(state, m)
        for (c, s), m in state.markets.items()
        if c == category and (not symbol or s == symbol)
    ]
    return {"category": category, "list": listed}


def _orderbook(state: ExchangeState, params: Params) -> dict[str, object]:
    category = trading.category_of(params)
    market = state.market(category, str(params.get("symbol", "")))
    depth = _limit(params, 1 if category == SPOT else 25, 200 if category == SPOT else 500)
    return views.book(state, market, depth)


def _kline(state: ExchangeState, params: Params) -> dict[str, object]:
    category = str(params.get("category") or LINEAR)
    trading.category_of({"category": category})
    market = state.market(category, str(params.get("symbol", "")))
    bounds = [_millis(params, name) for name in ("start", "end")]
    interval = str(params.get("interval", ""))
    rows = state.replay.klines(interval, bounds[0], bounds[1], _limit(params, 200, 1000))
    return {"category": category, "symbol": market.symbol, "list": rows}


def _recent_trades(state: ExchangeState, params: Params) -> dict[str, object]:
    category = trading.category_of(params)
    market = state.market(category, str(params.get("symbol", "")))
    limit = _limit(params, 60 if category == SPOT else 500, 60 if category == SPOT else 1000)
    return {"category": category, "list": state.replay.trades(market.symbol, limit)}


def _funding_history(state: ExchangeState, params: Params) -> dict[str, object]:
    """The replay's funding schedule (`BarReplay.funding`), paged as Bybit does."""
    category = trading.category_of(params, ("linear",))
    market = state.market(category, str(params.get("symbol", "")))
    bounds = [_millis(params, name) for name in ("startTime", "endTime")]
    rows = state.replay.funding(market.symbol, bounds[0], bounds[1], _limit(params, 200, 200))
    return {"category": category, "list": rows}


# -------------------------------------------------------------------------- private
def _positions(state: ExchangeState, params: Params) -> dict[str, object]:
    """Linear positions; inverse is a valid category with no markets listed (ccxt.pro's
    watch_positions reads both)."""
    category = trading.category_of(params, ("linear", "inverse"))
    symbol = params.get("symbol")
    if symbol:
        chosen = [state.market(category, str(symbol))]
    else:
        settle, base = params.get("settleCoin"), params.get("baseCoin")
        if category == LINEAR and not settle and not base:  # Bybit asks it for linear only
            raise BybitError(BAD_PARAM, "params error: symbol, settleCoin or baseCoin is required")
        chosen = [
            m
            for (c, _s), m in state.markets.items()
            if c == category
            and (not settle or m.instrument.settlement == settle)
            and (not base or m.instrument.base == base)
            and state.position_qty(m) != 0
        ]
    return {
        "category": category,
        "list": [views.position(state, m) for m in chosen],
        "nextPageCursor": "",
    }


def _set_leverage(state: ExchangeState, params: Params) -> dict[str, object]:
    """One leverage for both sides (one-way mode), 1 to 100."""
    # every linear market shares the account's leverage: the symbol is only checked
    state.market(trading.category_of(params, ("linear",)), str(params.get("symbol", "")))
    buy, sell = str(params.get("buyLeverage", "")), str(params.get("sellLeverage", ""))
    if buy != sell:
        raise BybitError(
            BAD_PARAM, f"params error: buyLeverage {buy!r} and sellLeverage {sell!r} must be equal"
        )
    try:
        leverage = Decimal(buy)
    except ArithmeticError:
        leverage = Decimal(0)
    if not leverage.is_finite() or not 1 <= leverage <= 100 or leverage % Decimal("0.01"):
        raise BybitError(BAD_PARAM, f"params error: buyLeverage {buy!r} must be in 1..100")
    state.set_leverage(leverage.normalize())
    return {}


def _switch_mode(state: ExchangeState, params: Params) -> dict[str, object]:
    """Only one-way mode (mode 0) is offered."""
    trading.category_of(params, ("linear",))
    mode = str(params.get("mode", ""))
    if mode == "0":
        raise BybitError(MODE_UNCHANGED, "Position mode is not modified")
    raise BybitError(BAD_PARAM, f"params error: mode {mode!r}: only one-way mode (0) is offered")


def _wallet(state: ExchangeState, params: Params) -> dict[str, object]:
    kind = params.get("accountType")
    if kind != "UNIFIED":
        raise BybitError(BAD_PARAM, f"params error: accountType {kind!r} is invalid: only UNIFIED")
    coins = {c for c in str(params.get("coin") or "").split(",") if c}
    return {"list": [views.wallet(state, coins or None)]}


def _account_info(state: ExchangeState, params: Params) -> dict[str, object]:
    return {"unifiedMarginStatus": 5, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
            "spotHedgingStatus": "OFF", "updatedTime": str(state.clock())}  # fmt: skip


def _api_key_info(state: ExchangeState, params: Params) -> dict[str, object]:
    permissions = {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"]}
    return {"readOnly": 0, "uta": 1, "unified": 0, "isMaster": True, "permissions": permissions}


#: the requests that change the state, by journal op (`sapphire.venues.exchange.journal`)
MUTATIONS: dict[str, Handler] = {
    "order.create": trading.create,
    "order.amend": trading.amend,
    "order.cancel": trading.cancel,
    "order.cancel-all": trading.cancel_all,
    "position.set-leverage": _set_leverage,
}


# -------------------------------------------------------------------------- serving
class BackgroundServer:
    """Serve `app` with uvicorn on 127.0.0.1 (a free port unless given) on a thread;
    `url` is its base address once `start` returns."""

    def __init__(self, app: FastAPI, port: int = 0) -> None:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the local exchange did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
