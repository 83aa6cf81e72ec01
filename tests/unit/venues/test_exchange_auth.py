"""Bybit v5 signatures, the recvWindow rule and the per-key rate limits."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sapphire.venues.exchange.auth import Credentials, RateLimited, RateLimiter, sign, verify
from sapphire.venues.exchange.errors import BAD_KEY, BAD_SIGN, EXPIRED, RATE_LIMIT, BybitError

KEY = Credentials("XXXXXXXXXX", "YYYYYYYYYY")
KEYS = {KEY.key: KEY}
NOW = 1_700_000_000_000


def headers(ts: int, signature: str, window: str = "5000", key: str = KEY.key) -> dict[str, str]:
    return {
        "x-bapi-api-key": key,
        "x-bapi-timestamp": str(ts),
        "x-bapi-recv-window": window,
        "x-bapi-sign": signature,
    }


def test_the_signature_is_hmac_sha256_of_timestamp_key_window_and_payload() -> None:
    payload = b"category=linear&symbol=BTCUSDT"
    expected = hmac.new(
        b"YYYYYYYYYY", b"1700000000000XXXXXXXXXX5000category=linear&symbol=BTCUSDT", hashlib.sha256
    ).hexdigest()
    assert sign(KEY.secret, "1700000000000", KEY.key, "5000", payload) == expected


def test_a_correctly_signed_request_is_accepted_on_its_raw_bytes() -> None:
    body = b'{"category":"linear","symbol":"BTCUSDT","qty":"0.010"}'
    signature = sign(KEY.secret, str(NOW), KEY.key, "5000", body)
    assert verify(headers(NOW, signature), body, KEYS, NOW) == KEY
    # the same JSON written differently is another payload: its signature does not match
    with pytest.raises(BybitError) as err:
        verify(headers(NOW, signature), body.replace(b"0.010", b"0.01"), KEYS, NOW)
    assert err.value.code == BAD_SIGN


def test_an_unknown_key_is_10003() -> None:
    with pytest.raises(BybitError) as err:
        verify(headers(NOW, "00", key="other"), b"", KEYS, NOW)
    assert err.value.code == BAD_KEY and "'other'" in err.value.message


@pytest.mark.parametrize(
    ("ts", "accepted"),
    [
        (NOW - 5000, True),  # the oldest accepted: now - recvWindow
        (NOW - 5001, False),
        (NOW + 999, True),  # up to a second ahead of the server
        (NOW + 1000, False),
    ],
)
def test_the_timestamp_must_be_inside_the_recv_window(ts: int, accepted: bool) -> None:
    signature = sign(KEY.secret, str(ts), KEY.key, "5000", b"")
    if accepted:
        assert verify(headers(ts, signature), b"", KEYS, NOW) == KEY
    else:
        with pytest.raises(BybitError) as err:
            verify(headers(ts, signature), b"", KEYS, NOW)
        assert err.value.code == EXPIRED and f"req_timestamp[{ts}]" in err.value.message


def test_a_wider_recv_window_accepts_an_older_timestamp() -> None:
    ts = NOW - 20_000
    signature = sign(KEY.secret, str(ts), KEY.key, "30000", b"")
    assert verify(headers(ts, signature, window="30000"), b"", KEYS, NOW) == KEY


def test_the_rate_limit_is_a_token_bucket_per_key_and_group() -> None:
    now = [100.0]
    limiter = RateLimiter({"query": 2, "order": 1}, clock=lambda: now[0])
    first = limiter.take("a", "query")
    assert (first["X-Bapi-Limit"], first["X-Bapi-Limit-Status"]) == ("2", "1")
    assert limiter.take("a", "query")["X-Bapi-Limit-Status"] == "0"
    with pytest.raises(RateLimited) as err:
        limiter.take("a", "query")
    assert err.value.code == RATE_LIMIT and err.value.headers["X-Bapi-Limit-Status"] == "0"
    limiter.take("b", "query")  # another key has its own bucket
    limiter.take("a", "order")  # and another group
    limiter.take("a", "query", "/v5/position/list")  # and another endpoint
    now[0] += 0.5  # half a second refills one of two requests per second
    limiter.take("a", "query")
    with pytest.raises(RateLimited):
        limiter.take("a", "query")


def test_a_bad_rate_limit_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'query' must be an int >= 1, got 0"):
        RateLimiter({"query": 0})
    with pytest.raises(ValueError, match="unknown rate-limit group 'x'"):
        RateLimiter().take("k", "x")
