"""Bybit specifics of the live venue (`sapphire.venues.bybit`): environments and their
credentials, the mainnet interlock, key permissions and the order mapping."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    Order,
    OrderSide,
    StrategyId,
    TimeInForce,
)
from sapphire.venues.bybit import (
    BybitConnection,
    BybitEnvironment,
    check_permissions,
    credentials_from_env,
    link_id_error,
    order_request,
    wallet_equity,
)

ALL = {
    f"BYBIT_{env}_{part}": f"{env.lower()}-{part.lower()}"
    for env in ("TESTNET", "DEMO", "MAINNET", "LOCAL")
    for part in ("API_KEY", "API_SECRET")
}
PERP = InstrumentId("BTC/USDT:USDT", "BYBIT")
CID = ClientOrderId("run-s-1")
S = StrategyId("s")


@pytest.mark.parametrize("env", list(BybitEnvironment))
def test_each_environment_reads_only_its_own_credentials(env: BybitEnvironment) -> None:
    name = env.name.lower()
    assert credentials_from_env(env, ALL) == (f"{name}-api_key", f"{name}-api_secret")
    others = {k: v for k, v in ALL.items() if not k.startswith(env.prefix)}
    with pytest.raises(ValueError, match=rf"\${env.prefix}_API_KEY is not set"):
        credentials_from_env(env, others)
    no_secret = {k: v for k, v in ALL.items() if k != f"{env.prefix}_API_SECRET"}
    with pytest.raises(ValueError, match=rf"\${env.prefix}_API_SECRET is not set"):
        credentials_from_env(env, no_secret)


def _client(env: BybitEnvironment, **kwargs: Any) -> Any:
    client = BybitConnection(env, **kwargs).client(ALL)
    asyncio.run(client.close())  # no request was made: nothing to reach
    return client


def test_the_urls_are_ccxts_for_each_environment() -> None:
    def private(client: Any) -> str:
        return str(client.implode_hostname(client.urls["api"]["private"]))

    testnet = _client(BybitEnvironment.TESTNET)
    assert private(testnet) == "https://api-testnet.bybit.com"
    assert testnet.apiKey == "testnet-api_key"
    demo = _client(BybitEnvironment.DEMO)
    assert private(demo) == "https://api-demo.bybit.com"
    mainnet = _client(BybitEnvironment.MAINNET, confirm_mainnet=True)
    assert private(mainnet) == "https://api.bybit.com"
    assert mainnet.apiKey == "mainnet-api_key"
    local = _client(BybitEnvironment.LOCAL, url="http://127.0.0.1:9", recv_window_ms=2000)
    assert private(local) == "http://127.0.0.1:9"
    assert local.urls["api"]["ws"]["private"]["trade"] == "ws://127.0.0.1:9/v5/trade"
    assert local.options["recvWindow"] == 2000 and local.enableRateLimit is False


def test_mainnet_needs_the_interlock() -> None:
    with pytest.raises(ValueError, match="confirm_mainnet=True"):
        BybitConnection(BybitEnvironment.MAINNET)
    with pytest.raises(ValueError, match="confirm_mainnet=True"):
        BybitConnection(BybitEnvironment.MAINNET, confirm_mainnet="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"environment": "local"}, "url=None is invalid: the local environment needs one"),
        ({"environment": "testnet", "url": "http://x"}, "only the local environment"),
        ({"environment": "paper"}, "'paper' is not a valid BybitEnvironment"),
        ({"environment": "demo", "timeout_ms": 0}, "timeout_ms=0 is invalid"),
    ],
)
def test_bad_connections_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BybitConnection(**kwargs)


def test_keys_that_can_withdraw_or_only_read_are_refused() -> None:
    trading = {
        "readOnly": 0,
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": ["SpotTrade"],
            "Wallet": ["AccountTransfer"],
        },
    }
    check_permissions(trading)
    withdraw = {"readOnly": 0, "permissions": {"Wallet": ["AccountTransfer", "Withdraw"]}}
    with pytest.raises(ValueError, match=r"may withdraw funds \(Wallet:Withdraw\)"):
        check_permissions(withdraw)
    with pytest.raises(ValueError, match="read-only"):
        check_permissions({"readOnly": 1, "permissions": {}})


def test_client_order_ids_must_fit_the_order_link_id() -> None:
    assert link_id_error("run-s-1") is None
    assert link_id_error("a" * 36) is None
    assert "expected 1-36" in str(link_id_error("a" * 37))
    assert "'a b'" in str(link_id_error("a b"))


def test_orders_map_to_bybit_parameters() -> None:
    q = Decimal("0.01")
    assert order_request(Order.market(CID, S, PERP, OrderSide.BUY, q, ts_init=0), q) == (
        "market",
        "buy",
        "0.01",
        None,
        {"clientOrderId": "run-s-1"},
    )
    lim = Order.limit(
        CID,
        S,
        PERP,
        OrderSide.SELL,
        q,
        Decimal("50000.5"),
        ts_init=0,
        post_only=True,
        reduce_only=True,
    )
    assert order_request(lim, Decimal("0.02")) == (
        "limit",
        "sell",
        "0.02",
        "50000.5",
        {"clientOrderId": "run-s-1", "reduceOnly": True, "postOnly": True},
    )
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        ioc = Order.limit(CID, S, PERP, OrderSide.BUY, q, Decimal(1), ts_init=0, time_in_force=tif)
        assert order_request(ioc, q)[4]["timeInForce"] == tif.value
    stop = Order.stop_market(CID, S, PERP, OrderSide.SELL, q, Decimal("40000"), ts_init=0)
    assert order_request(stop, q, Decimal("41000"))[4] | {} == {
        "clientOrderId": "run-s-1",
        "triggerPrice": "40000",
        "triggerDirection": "descending",
    }
    # a sell stop above the last price is triggered on the way up
    assert order_request(stop, q, Decimal("39000"))[4]["triggerDirection"] == "ascending"
    stop_limit = Order.stop_limit(
        CID, S, PERP, OrderSide.BUY, q, Decimal("42010"), Decimal("42000"), ts_init=0
    )
    kind, side, _, price, params = order_request(stop_limit, q, Decimal("41000"))
    assert (kind, side, price, params["triggerDirection"]) == ("limit", "buy", "42010", "ascending")
    gtd = Order.limit(
        CID,
        S,
        PERP,
        OrderSide.BUY,
        q,
        Decimal(1),
        ts_init=0,
        time_in_force=TimeInForce.GTD,
        expire_time_ns=10,
    )
    with pytest.raises(ValueError, match="no good-till-date"):
        order_request(gtd, q)
    trail = Order.trailing_stop(CID, S, PERP, OrderSide.SELL, q, Decimal(100), ts_init=0)
    with pytest.raises(ValueError, match="emulated by the node"):
        order_request(trail, q)


def test_the_wallet_equity_is_read_exactly() -> None:
    info = {
        "result": {
            "list": [
                {
                    "coin": [
                        {"coin": "BTC", "equity": "0.5"},
                        {"coin": "USDT", "equity": "99994.71825"},
                    ]
                }
            ]
        }
    }
    assert wallet_equity(info, "USDT") == Decimal("99994.71825")
    with pytest.raises(ValueError, match="no ETH balance"):
        wallet_equity(info, "ETH")
