"""Request signing as Bybit v5 does it, and per-key rate limits.

A private request carries `X-BAPI-API-KEY`, `X-BAPI-TIMESTAMP` (ms), `X-BAPI-RECV-WINDOW`
(ms, default 5000) and `X-BAPI-SIGN` = hex HMAC-SHA256(secret, timestamp + key +
recvWindow + payload), where the payload is the raw query string of a GET (as sent, not
re-encoded) or the raw body of a POST. The signature is checked on those raw bytes, in
constant time. A timestamp is accepted when ``now - recvWindow <= timestamp < now + 1000``
(Bybit's rule), else the request fails with 10002.

A WebSocket connection authenticates once with ``{"op": "auth", "args": [key, expires,
signature]}``: `expires` is a time in ms that must still be in the future, the signature
hex HMAC-SHA256(secret, "GET/realtime" + expires) (`verify_stream`).

Rate limits are Bybit's per-user, per-second limits: one token bucket per API key and
endpoint (and category group: spot orders have their own), its rate set by the
endpoint's group, refilled continuously; an empty bucket answers 10006. Every private
answer carries `X-Bapi-Limit`, `X-Bapi-Limit-Status` (requests left) and
`X-Bapi-Limit-Reset-Timestamp` (ms, when the bucket is full again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sapphire.venues.exchange.errors import (
    BAD_KEY,
    BAD_PARAM,
    BAD_SIGN,
    EXPIRED,
    RATE_LIMIT,
    BybitError,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Credentials",
    "RateLimited",
    "RateLimiter",
    "check_window",
    "sign",
    "verify",
    "verify_stream",
]

#: Bybit's per-user limits, requests per second, by endpoint group
DEFAULT_LIMITS: Mapping[str, int] = {
    "order": 10,  # create, amend, cancel, cancel-all (contracts)
    "spot-order": 20,  # create and cancel on spot
    "query": 50,  # orders, executions, positions, wallet
    "position": 10,  # leverage, position mode, trading stop
}


@dataclass(frozen=True)
class Credentials:
    """One API key and its secret."""

    key: str
    secret: str

    @classmethod
    def generate(cls) -> Credentials:
        """Fresh random credentials (Bybit's lengths: an 18-character key, 36-character
        secret)."""
        return cls(secrets.token_urlsafe(14)[:18], secrets.token_urlsafe(27)[:36])


def sign(secret: str, timestamp: str, key: str, recv_window: str, payload: bytes) -> str:
    """Bybit's v5 signature: hex HMAC-SHA256 of timestamp + key + recvWindow + payload."""
    message = (timestamp + key + recv_window).encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    headers: Mapping[str, str],
    payload: bytes,
    credentials: Mapping[str, Credentials],
    now_ms: int,
) -> Credentials:
    """The credentials of a correctly signed, timely request; BybitError otherwise.

    `headers` are looked up case-insensitively by the caller's mapping (Starlette's are).
    """
    key = headers.get("x-bapi-api-key")
    timestamp = headers.get("x-bapi-timestamp")
    signature = headers.get("x-bapi-sign")
    recv_window = headers.get("x-bapi-recv-window", "5000")
    if not key:
        raise BybitError(BAD_KEY, "API key is missing (header X-BAPI-API-KEY).")
    found = credentials.get(key)
    if found is None:
        raise BybitError(BAD_KEY, f"API key is invalid: {key!r}.")
    check_window(timestamp, recv_window, now_ms)
    expected = sign(found.secret, str(timestamp), key, recv_window, payload)
    if not signature or not hmac.compare_digest(expected, signature.lower()):
        raise BybitError(
            BAD_SIGN,
            "error sign! please check your signature generation algorithm: "
            "HMAC-SHA256(secret, timestamp + api_key + recv_window + payload)",
        )
    return found


def verify_stream(args: object, credentials: Mapping[str, Credentials], now_ms: int) -> Credentials:
    """The credentials of a WebSocket ``auth`` op's ``args``, ``[key, expires,
    signature]``: `expires` (ms) must be later than `now_ms` and the signature hex
    HMAC-SHA256(secret, "GET/realtime" + expires); BybitError otherwise."""
    if not isinstance(args, list) or len(args) != 3:
        raise BybitError(
            BAD_PARAM, f"Params Error: args must be [api_key, expires, signature], got {args!r}"
        )
    key, expires, signature = (str(a) for a in args)
    found = credentials.get(key)
    if found is None:
        raise BybitError(BAD_KEY, f"Params Error: API key is invalid: {key!r}")
    if not expires.isdigit():
        raise BybitError(BAD_PARAM, f"Params Error: expires {expires!r} must be milliseconds")
    if int(expires) <= now_ms:
        raise BybitError(
            EXPIRED, f"Params Error: request expired: expires {expires} <= server time {now_ms}"
        )
    message = f"GET/realtime{expires}".encode()
    expected = hmac.new(found.secret.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BybitError(
            BAD_SIGN,
            "Params Error: error sign! expected hex HMAC-SHA256(secret, 'GET/realtime' + expires)",
        )
    return found


def check_window(timestamp: str | None, recv_window: str, now_ms: int) -> None:
    """BybitError unless `timestamp` (ms) is within `recv_window` ms before `now_ms` (or
    under a second ahead of it), Bybit's rule for REST requests and trade-stream orders."""
    if not timestamp or not timestamp.isdigit():
        raise BybitError(BAD_PARAM, f"X-BAPI-TIMESTAMP must be milliseconds, got {timestamp!r}.")
    if not recv_window.isdigit() or int(recv_window) <= 0:
        raise BybitError(
            BAD_PARAM, f"X-BAPI-RECV-WINDOW must be positive milliseconds, got {recv_window!r}."
        )
    ts, window = int(timestamp), int(recv_window)
    if not now_ms - window <= ts < now_ms + 1000:
        raise BybitError(
            EXPIRED,
            f"invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{window}]",
        )


class RateLimiter:
    """Token buckets per (API key, endpoint, group); `limits` are requests per second
    by group."""

    def __init__(
        self, limits: Mapping[str, int] | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        for group, rate in self.limits.items():
            if not isinstance(rate, int) or rate < 1:
                raise ValueError(f"rate limit of {group!r} must be an int >= 1, got {rate!r}")
        self._clock = clock or time.monotonic
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # tokens, at
        self._lock = threading.Lock()

    def take(self, key: str, group: str, endpoint: str = "") -> dict[str, str]:
        """Spend one request of `key` at `endpoint` (rate: its `group`'s): the
        X-Bapi-Limit headers, or RateLimited (10006) when the bucket is empty."""
        rate = self.limits.get(group)
        if rate is None:
            raise ValueError(
                f"unknown rate-limit group {group!r}: expected one of {sorted(self.limits)}"
            )
        with self._lock:
            now = self._clock()
            bucket = (key, endpoint, group)
            tokens, at = self._buckets.get(bucket, (float(rate), now))
            tokens = min(float(rate), tokens + (now - at) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[bucket] = (tokens, now)
        # the bucket is full again after (rate - tokens) / rate seconds
        reset = int(time.time() * 1000 + (rate - tokens) / rate * 1000)
        headers = {
            "X-Bapi-Limit": str(rate),
            "X-Bapi-Limit-Status": str(int(tokens)),
            "X-Bapi-Limit-Reset-Timestamp": str(reset),
        }
        if not allowed:
            raise RateLimited(headers)
        return headers


class RateLimited(BybitError):
    """10006, with the limit headers the answer carries."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(RATE_LIMIT, "Too many visits. Exceeded the API Rate Limit.")
        self.headers = headers
