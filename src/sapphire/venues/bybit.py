"""Bybit specifics of the live venue: environments and credentials, the ccxt client,
Bybit's rate limits, and the mapping between Sapphire's orders and Bybit's.

Environments: `testnet` and `demo` (ccxt's `set_sandbox_mode` / `enable_demo_trading`
URLs), `mainnet` (only with ``confirm_mainnet=True``) and `local` (a Bybit-compatible
server at `url`, such as `sapphire.venues.exchange`). Credentials come from the
environment's own variables (`BYBIT_TESTNET_API_KEY` / `BYBIT_TESTNET_API_SECRET`,
`BYBIT_DEMO_...`, `BYBIT_MAINNET_...`, `BYBIT_LOCAL_...`), never another's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderSide,
    OrderType,
    TimeInForce,
)

__all__ = [
    "LIMITS",
    "TERMINAL",
    "BybitConnection",
    "BybitEnvironment",
    "Fill",
    "check_permissions",
    "credentials_from_env",
    "fill_of",
    "instrument_of",
    "link_id_error",
    "order_request",
    "wallet_equity",
]

#: Bybit's per-user, per-second limits by endpoint (spot orders have their own), and the
#: public endpoints' share of the 600 requests per 5 s per IP
LIMITS: Mapping[str, float] = {
    "order/create": 10, "order/create:spot": 20, "order/cancel": 10,
    "order/cancel:spot": 20, "order/amend": 10, "order/realtime": 50,
    "order/history": 50, "execution/list": 50, "account/wallet-balance": 50, "user/query-api": 50,
    "position/list": 50, "market": 100,
}  # fmt: skip
#: Bybit's orderStatus values of an order that is finished
TERMINAL = frozenset({"Filled", "Cancelled", "PartiallyFilledCanceled", "Rejected", "Deactivated"})
_LINK_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class BybitEnvironment(StrEnum):
    TESTNET = "testnet"
    DEMO = "demo"
    MAINNET = "mainnet"
    LOCAL = "local"

    @property
    def prefix(self) -> str:
        """The prefix of this environment's credential variables."""
        return f"BYBIT_{self.name}"


def credentials_from_env(
    environment: BybitEnvironment, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """`environment`'s (key, secret) from its own variables; a clear error naming the
    variable that is missing."""
    env = os.environ if environ is None else environ
    values = []
    for suffix in ("API_KEY", "API_SECRET"):
        name = f"{environment.prefix}_{suffix}"
        value = env.get(name, "").strip()
        if not value:
            raise ValueError(f"${name} is not set: Bybit {environment} needs its own API key")
        values.append(value)
    return values[0], values[1]


@dataclass(frozen=True)
class BybitConnection:
    """Where and how to reach Bybit: the environment (`url` only for `local`), the
    request timeout and the recvWindow (ms)."""

    environment: BybitEnvironment
    url: str | None = None
    confirm_mainnet: bool = False
    timeout_ms: int = 10_000
    recv_window_ms: int = 5_000

    def __post_init__(self) -> None:
        env = BybitEnvironment(self.environment)
        object.__setattr__(self, "environment", env)
        if env is BybitEnvironment.LOCAL:
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError(f"url={self.url!r} is invalid: the local environment needs one")
        elif self.url is not None:
            raise ValueError(f"url={self.url!r}: only the local environment takes a URL")
        if env is BybitEnvironment.MAINNET and self.confirm_mainnet is not True:
            raise ValueError(
                "Bybit mainnet trades real money: pass confirm_mainnet=True to connect to it"
            )
        for name in ("timeout_ms", "recv_window_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid: expected an int > 0 (ms)")

    def client(
        self, environ: Mapping[str, str] | None = None, *, pro: bool = False
    ) -> ccxt_async.bybit:
        """A ccxt async client for this environment, with its own credentials (our rate
        limiter replaces ccxt's: `sapphire.venues.resilience.RateLimiter`); with `pro`
        a ccxt.pro client (the same REST side, and the WebSocket streams)."""
        key, secret = credentials_from_env(self.environment, environ)
        config: dict[str, Any] = {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": False,
            "timeout": self.timeout_ms,
            "options": {
                "fetchMarkets": {"types": ["spot", "linear"]},
                "recvWindow": self.recv_window_ms,
                "fetchOrder": {"acknowledged": True},
            },
        }
        if self.environment is BybitEnvironment.LOCAL:
            assert self.url is not None
            api = _local_urls(self.url.rstrip("/"))
            config["urls"] = {"api": api, "test": api, "demotrading": api}
            config["options"] |= {"enableUnifiedAccount": True, "enableUnifiedMargin": False}
            config["has"] = {"fetchCurrencies": False}
        client = (ccxt_pro.bybit if pro else ccxt_async.bybit)(config)
        if self.environment is BybitEnvironment.TESTNET:
            client.set_sandbox_mode(True)
        elif self.environment is BybitEnvironment.DEMO:
            client.enable_demo_trading(True)
        return client


def _local_urls(url: str) -> dict[str, Any]:
    ws = url.replace("http", "ws", 1)
    return {
        **dict.fromkeys(("public", "private", "spot", "futures", "v2"), url),
        "ws": {
            "public": {k: f"{ws}/v5/public/{k}" for k in ("spot", "linear", "inverse", "option")},
            "private": {
                "contract": f"{ws}/v5/private",
                "spot": {"unified": f"{ws}/v5/private", "nonUnified": f"{ws}/v5/private"},
                "usdc": f"{ws}/v5/private",
                "trade": f"{ws}/v5/trade",
            },
        },
    }


def check_permissions(info: Mapping[str, Any]) -> None:
    """Refuse an API key (as `GET /v5/user/query-api` describes it) that can withdraw,
    or that cannot trade."""
    permissions = info.get("permissions") or {}
    if not isinstance(permissions, Mapping):
        raise ValueError(f"the API key's permissions are unreadable: {permissions!r:.80}")
    withdraw = sorted(
        f"{group}:{p}" for group, granted in permissions.items() for p in granted or ()
        if "withdraw" in str(p).lower()
    )  # fmt: skip
    if withdraw:
        raise ValueError(
            f"the API key may withdraw funds ({', '.join(withdraw)}): use a key without "
            "withdrawal permission for trading"
        )
    if str(info.get("readOnly", "0")) == "1":
        raise ValueError("the API key is read-only: it cannot place orders")


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    return number


def _optional(value: Any) -> Decimal | None:
    return None if value in (None, "", "0") else _decimal(value, "limit")


def instrument_of(market: Mapping[str, Any], venue: str = "BYBIT") -> Instrument:
    """A ccxt Bybit market (spot or linear) as an `Instrument`, its filters read from
    Bybit's own strings (exact, no float on the way)."""
    info = market["info"]
    lot = info.get("lotSizeFilter") or {}
    price_filter = info.get("priceFilter") or {}
    spot = bool(market.get("spot"))
    if not spot and not market.get("linear"):
        raise ValueError(f"market {market.get('symbol')!r} is neither spot nor linear")
    step = lot.get("basePrecision") if spot else lot.get("qtyStep")
    fees = [_decimal(market.get(k) or 0, f"{k} fee") for k in ("maker", "taker")]
    return Instrument(
        InstrumentId(str(market["symbol"]), venue), str(market["base"]), str(market["quote"]),
        str(market.get("settle") or market["quote"]),
        ContractType.SPOT if spot else ContractType.PERPETUAL,
        _decimal(price_filter.get("tickSize"), "tickSize"), _decimal(step, "qty step"),
        maker_fee=fees[0], taker_fee=fees[1], min_qty=_optional(lot.get("minOrderQty")),
        max_qty=_optional(lot.get("maxOrderQty")),
        min_notional=_optional(lot.get("minNotionalValue") or lot.get("minOrderAmt")),
    )  # fmt: skip


def link_id_error(client_order_id: str) -> str | None:
    """Why `client_order_id` cannot be Bybit's orderLinkId (1-36 of A-Z a-z 0-9 _ -)."""
    if not 1 <= len(client_order_id) <= 36 or not set(client_order_id) <= _LINK_ID_CHARS:
        return (
            f"client order id {client_order_id!r} cannot be Bybit's orderLinkId: "
            "expected 1-36 of A-Z a-z 0-9 _ -"
        )
    return None


def order_request(
    order: Order, quantity: Decimal, last_price: Decimal | None = None
) -> tuple[str, str, str, str | None, dict[str, Any]]:
    """ccxt's create_order arguments (type, side, amount, price, params) for `order`
    with `quantity`; `last_price` orients a trigger (rising or falling to it)."""
    kind = order.type
    if kind is OrderType.TRAILING_STOP:
        raise ValueError(f"order {order.client_order_id}: trailing stops are emulated by the node")
    side = "buy" if order.side is OrderSide.BUY else "sell"
    limit = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    params: dict[str, Any] = {"clientOrderId": str(order.client_order_id)}
    if order.reduce_only:
        params["reduceOnly"] = True
    tif = order.time_in_force
    if order.post_only:
        params["postOnly"] = True
    elif tif in (TimeInForce.IOC, TimeInForce.FOK) and limit:
        params["timeInForce"] = tif.value
    elif tif is TimeInForce.GTD:
        raise ValueError(f"order {order.client_order_id}: Bybit has no good-till-date orders")
    trigger = order.trigger_price
    if trigger is not None:
        params["triggerPrice"] = str(trigger)
        # a stop: a buy triggers on a rise, a sell on a fall, unless the price is already
        # past the trigger (then it is the other way, as Bybit decides it from the last)
        rising = order.side is OrderSide.BUY
        if last_price is not None and trigger != last_price:
            rising = trigger > last_price
        params["triggerDirection"] = "ascending" if rising else "descending"
    price = str(order.price) if limit and order.price is not None else None
    return ("limit" if limit else "market"), side, str(quantity), price, params


@dataclass(frozen=True)
class Fill:
    """One execution as Bybit reports it, its numbers exact."""

    exec_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: LiquiditySide
    ts_ns: int


def fill_of(trade: Mapping[str, Any], settle: str) -> Fill:
    """A ccxt trade of `fetch_my_trades` as a `Fill`, read from Bybit's strings."""
    info = trade["info"]
    maker = info.get("isMaker")
    if isinstance(maker, str):
        maker = maker.lower() == "true"
    return Fill(
        exec_id=str(info["execId"]),
        qty=_decimal(info["execQty"], "execQty"),
        price=_decimal(info["execPrice"], "execPrice"),
        fee=_decimal(info.get("execFee") or 0, "execFee"),
        fee_currency=str(info.get("feeCurrency") or settle),
        liquidity=LiquiditySide.MAKER if maker else LiquiditySide.TAKER,
        ts_ns=int(info["execTime"]) * 1_000_000,
    )


def wallet_equity(info: Mapping[str, Any], coin: str) -> Decimal:
    """The equity of `coin` in a `/v5/account/wallet-balance` answer (exact)."""
    for account in info.get("result", {}).get("list") or ():
        for row in account.get("coin") or ():
            if row.get("coin") == coin:
                return _decimal(row.get("equity") or row.get("walletBalance"), f"{coin} equity")
    raise ValueError(f"the wallet has no {coin} balance")
