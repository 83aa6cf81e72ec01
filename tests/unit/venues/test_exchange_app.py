"""The local exchange's HTTP answers, seen by a plain HTTP client: Bybit's envelope,
numbers as strings, the rate-limit headers, signatures checked on the raw bytes."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pandas as pd
import pytest

from sapphire.venues.exchange import BackgroundServer, Credentials, ExchangeState, create_app
from sapphire.venues.exchange.auth import sign

CREDS = Credentials("app-key", "app-secret")


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    n = 50
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC"),
            "open": [50000.0] * n,
            "high": [50100.0] * n,
            "low": [49900.0] * n,
            "close": [50000.0] * n,
            "volume": [1e6] * n,
        }
    )
    state = ExchangeState(frame, credentials=[CREDS], history=10)
    limits = {"order": 10, "spot-order": 20, "query": 3, "position": 10}
    with BackgroundServer(create_app(state, limits=limits)) as running:
        yield running


def call(
    server: BackgroundServer,
    method: str,
    path: str,
    payload: str = "",
    *,
    secret: str = CREDS.secret,
) -> tuple[dict[str, Any], Message]:
    """A signed request; `payload` is the query string (GET) or body (POST), sent as is."""
    ts = str(int(time.time() * 1000))
    raw = payload.encode()
    headers = {
        "X-BAPI-API-KEY": CREDS.key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": sign(secret, ts, CREDS.key, "5000", raw),
        "Content-Type": "application/json",
    }
    url = server.url + path + (f"?{payload}" if method == "GET" and payload else "")
    request = urllib.request.Request(
        url, data=raw if method == "POST" else None, headers=headers, method=method
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        return json.loads(answer.read()), answer.headers  # case-insensitive, as HTTP


def test_answers_are_bybit_envelopes_with_numbers_as_strings(server: BackgroundServer) -> None:
    with urllib.request.urlopen(
        f"{server.url}/v5/market/tickers?category=linear&symbol=BTCUSDT"
    ) as r:
        body = json.loads(r.read())
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert (body["retCode"], body["retMsg"]) == (0, "OK")
    (ticker,) = body["result"]["list"]
    assert ticker["lastPrice"] == "50000" and ticker["bid1Price"] == "49999.9"


def test_private_answers_carry_the_rate_limit_headers(server: BackgroundServer) -> None:
    body, headers = call(server, "GET", "/v5/execution/list", "category=linear&limit=5")
    assert body["retCode"] == 0 and body["result"]["list"] == []
    assert headers["X-Bapi-Limit"] == "3"
    assert int(headers["X-Bapi-Limit-Status"]) in (0, 1, 2)
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) >= int(time.time() * 1000) - 1000


def test_the_body_is_verified_as_sent_and_parsed_as_sent(server: BackgroundServer) -> None:
    body = (
        '{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
        '"qty":"0.010","price":"40000.0","orderLinkId":"raw-1"}'
    )
    answer, _ = call(server, "POST", "/v5/order/create", body)
    assert answer["retCode"] == 0 and answer["result"]["orderLinkId"] == "raw-1"
    wrong, _ = call(server, "POST", "/v5/order/cancel", '{"category":"linear"}', secret="nope")
    assert wrong["retCode"] == 10004 and wrong["result"] == {}
    unsigned = urllib.request.Request(
        f"{server.url}/v5/position/list?category=linear&symbol=BTCUSDT"
    )
    with urllib.request.urlopen(unsigned) as r:
        assert json.loads(r.read())["retCode"] == 10003
    broken, _ = call(server, "POST", "/v5/order/amend", "not json")
    assert broken["retCode"] == 10001 and "not JSON" in broken["retMsg"]


def test_each_endpoint_has_its_own_bucket(server: BackgroundServer) -> None:
    codes = [
        call(server, "GET", "/v5/order/history", "category=linear")[0]["retCode"] for _ in range(6)
    ]
    assert codes[:3] == [0, 0, 0] and 10006 in codes[3:]
    assert call(server, "GET", "/v5/order/realtime", "category=linear")[0]["retCode"] == 0
