"""Failure handling for an exchange client: what may be retried, a client-side rate
limiter, a circuit breaker and the clock-skew correction.

- `classify(exc)` sorts a ccxt exception into what it says about the request: the
  exchange refused it before doing anything (`RATE_LIMITED`, `BAD_TIMESTAMP`: safe to
  send again, after a back-off or a clock resync), the outcome is unknown (`UNAVAILABLE`:
  a timeout, a 5xx, a dropped connection; the request may have been executed) or the
  exchange answered it (`REFUSED`: a definite no). Only calls that are safe to repeat
  (reads, a cancel by client order id) are retried after `UNAVAILABLE`; an order creation
  never is (see `sapphire.venues.live`).
- `RetryPolicy`: how many tries and the exponential back-off with jitter between them.
- `RateLimiter`: one token bucket per endpoint group, refilled at a share (`headroom`) of
  the exchange's per-second limit, so requests wait here before the exchange complains.
- `CircuitBreaker`: after `threshold` consecutive failures new orders are refused until
  a probe succeeds after `cooldown_s`.
- `ClockSkew`: the server clock's offset from ours, measured from round trips (the
  sample with the shortest round trip wins), as ccxt's `timeDifference` wants it.
- `Guard`: one ccxt client's requests through all of these.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import ccxt

__all__ = [
    "FAILURES",
    "CircuitBreaker",
    "ClockSkew",
    "Guard",
    "Outcome",
    "RateLimiter",
    "RetryPolicy",
    "classify",
]


class Outcome(StrEnum):
    """What a failed request says about its effect on the exchange."""

    RATE_LIMITED = "RATE_LIMITED"  # refused before processing (10006, 10018, HTTP 429)
    BAD_TIMESTAMP = "BAD_TIMESTAMP"  # refused before processing (10002: our clock is off)
    UNAVAILABLE = "UNAVAILABLE"  # no reliable answer: it may or may not have been executed
    REFUSED = "REFUSED"  # the exchange answered: a definite refusal


def classify(exc: BaseException) -> Outcome:
    """The `Outcome` of a request that raised `exc` (any ccxt error, or a network one)."""
    if isinstance(exc, ccxt.InvalidNonce):
        return Outcome.BAD_TIMESTAMP
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return Outcome.RATE_LIMITED
    if isinstance(exc, ccxt.NetworkError | OSError | asyncio.TimeoutError):
        return Outcome.UNAVAILABLE
    return Outcome.REFUSED


#: what a request may raise that says something about the exchange
FAILURES = (ccxt.BaseError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; before try n+1 a back-off of ``base_s * 2**n`` capped
    at `cap_s`, of which a random half is jitter (so clients do not retry in step)."""

    attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"attempts={self.attempts!r} is invalid: expected an int >= 1")
        if self.attempts < 1:
            raise ValueError(f"attempts={self.attempts!r} is invalid: expected an int >= 1")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(
                f"base_s={self.base_s!r}, cap_s={self.cap_s!r} are invalid: expected "
                "0 < base_s <= cap_s"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the failed try number `attempt` (0 = the first)."""
        full = min(self.cap_s, self.base_s * 2**attempt)
        return full / 2 + self.rng.uniform(0, full / 2)


class RateLimiter:
    """Token buckets per endpoint group: `limits` requests per second each, of which
    `headroom` is used (capacity one second's worth). `acquire(group)` waits for a
    token; `block(group, seconds)` empties a bucket after the exchange said "too many"."""

    def __init__(
        self,
        limits: Mapping[str, float],
        *,
        headroom: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom={headroom!r} is invalid: expected 0 < headroom <= 1")
        for group, rate in limits.items():
            if not rate > 0:
                raise ValueError(f"rate limit {group}={rate!r} is invalid: expected > 0")
        self.rates = {g: float(r) * headroom for g, r in limits.items()}
        self._clock = clock
        # per group: (tokens, at): tokens held at time `at`
        self._buckets: dict[str, tuple[float, float]] = {}
        self.waited_s = 0.0

    def _wait_for(self, group: str) -> float:
        """Take a token of `group` (reserving one ahead when empty); seconds to wait."""
        rate = self.rates.get(group)
        if rate is None:
            listed = ", ".join(sorted(self.rates))
            raise ValueError(f"rate-limit group {group!r} is unknown: expected one of {listed}")
        now = self._clock()
        capacity = max(rate, 1.0)
        tokens, at = self._buckets.get(group, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * rate) - 1
        self._buckets[group] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / rate

    async def acquire(self, group: str) -> None:
        wait = self._wait_for(group)
        if wait > 0:
            self.waited_s += wait
            await asyncio.sleep(wait)

    def block(self, group: str, seconds: float) -> None:
        """The exchange refused a request of `group`: no token for `seconds`."""
        rate = self.rates.get(group)
        if rate is not None:
            self._buckets[group] = (-seconds * rate, self._clock())


class CircuitBreaker:
    """CLOSED lets orders through; `threshold` consecutive failures make it OPEN (orders
    refused); after `cooldown_s` a probe is due, and a successful one closes it again."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold={threshold!r} is invalid: expected an int >= 1")
        if not cooldown_s >= 0:
            raise ValueError(f"cooldown_s={cooldown_s!r} is invalid: expected >= 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allows_orders(self) -> bool:
        return self.opened_at is None

    def probe_due(self) -> bool:
        """Open, and the cool-down since it opened (or since the last failed probe) is over."""
        return self.opened_at is not None and self._clock() - self.opened_at >= self.cooldown_s

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        self.failures += 1
        if self.opened_at is not None:
            self.opened_at = self._clock()  # a failed probe: another cool-down
        elif self.failures >= self.threshold:
            self.opened_at = self._clock()
            self.trips += 1


class ClockSkew:
    """The server clock's offset from ours (ms, server - local), from round trips:
    a sample ``(sent, server, received)`` estimates the server's time at the midpoint,
    and the one with the shortest round trip is the most precise. `time_difference` is
    ccxt's option (local - server), `bias_ms` earlier: a request signed a little in the
    past is accepted (within recvWindow), one from the future (> 1 s ahead) is not."""

    def __init__(self, bias_ms: int = 100) -> None:
        self.bias_ms = bias_ms
        self.offset_ms: int | None = None
        self.rtt_ms: int | None = None

    def add(self, sent_ms: int, server_ms: int, received_ms: int) -> None:
        rtt = received_ms - sent_ms
        if rtt < 0:
            raise ValueError(f"a round trip cannot end ({received_ms}) before it began ({sent_ms})")
        if self.rtt_ms is None or rtt <= self.rtt_ms:
            self.rtt_ms = rtt
            self.offset_ms = server_ms - (sent_ms + received_ms) // 2

    def reset(self) -> None:
        self.offset_ms = self.rtt_ms = None

    @property
    def time_difference(self) -> int:
        return self.bias_ms - (self.offset_ms or 0)

    def server_ms(self, local_ms: int) -> int:
        """Our estimate of the server's clock at our `local_ms`."""
        return local_ms + (self.offset_ms or 0)


class Guard:
    """The requests of one ccxt client (`client`, set once connected) through the rate
    limiter, the retry policy and the circuit breaker, and the clock skew measured from
    the server's time and given to the client as its `timeDifference`."""

    def __init__(
        self,
        limits: Mapping[str, float],
        *,
        headroom: float = 0.8,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock_sync_s: float = 60.0,
    ) -> None:
        self.limiter = RateLimiter(limits, headroom=headroom)
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.skew = ClockSkew()
        self.clock_sync_s = clock_sync_s
        self.client: Any = None
        #: the back-offs taken after rate-limit answers (seconds)
        self.backoffs: list[float] = []
        self._synced_at = 0.0

    async def request(
        self,
        group: str,
        call: Callable[..., Awaitable[Any]],
        *args: Any,
        repeatable: bool,
        probe: bool = False,
    ) -> Any:
        """`call(*args)` after the limiter's token of `group`. A refusal before processing
        (`RATE_LIMITED`: after a back-off; `BAD_TIMESTAMP`: after a clock resync) is sent
        again; an `UNAVAILABLE` one only when `repeatable`; none while the breaker is open
        (then only a `probe` goes out, and only its outcome moves the breaker)."""
        breaker = self.breaker
        attempt = 0
        while True:
            await self.limiter.acquire(group)
            try:
                result = await call(*args)
            except FAILURES as exc:
                outcome = classify(exc)
                counts = probe or not breaker.is_open
                if outcome is Outcome.UNAVAILABLE and counts:
                    breaker.record_failure()
                elif outcome is Outcome.REFUSED and counts:
                    breaker.record_success()  # a definite answer: the exchange works
                attempt += 1
                if attempt >= self.retry.attempts or outcome is Outcome.REFUSED:
                    raise
                if breaker.is_open and not probe:
                    raise  # no retries against an exchange that keeps failing
                if outcome is Outcome.BAD_TIMESTAMP:
                    await self.sync_clock()
                elif outcome is Outcome.RATE_LIMITED:
                    delay = self.retry.delay(attempt - 1)
                    self.backoffs.append(delay)
                    self.limiter.block(group, delay)  # the next acquire waits it out
                elif repeatable:
                    await asyncio.sleep(self.retry.delay(attempt - 1))
                else:
                    raise
                continue
            if probe or not breaker.is_open:
                breaker.record_success()
            return result

    async def sync_clock(self, samples: int = 3) -> None:
        """Measure the server clock's offset (`fetch_time`) and give it to the client."""
        self.skew.reset()
        for _ in range(samples):
            sent = time.time_ns() // 1_000_000
            server = await self.request("market", self.client.fetch_time, repeatable=True)
            self.skew.add(sent, int(server), time.time_ns() // 1_000_000)
        self.client.options["timeDifference"] = self.skew.time_difference
        self._synced_at = time.monotonic()

    async def upkeep(self) -> bool:
        """While the breaker is open: the probe (the server time) when it is due, and
        False: nothing else may go out. Else the clock resync when due, and True."""
        if self.breaker.is_open:
            if self.breaker.probe_due():
                await self.request("market", self.client.fetch_time, repeatable=False, probe=True)
            return False
        if time.monotonic() - self._synced_at > self.clock_sync_s:
            await self.sync_clock()
        return True

    def server_ms(self) -> int:
        """Our estimate of the server's clock now (ms)."""
        return self.skew.server_ms(time.time_ns() // 1_000_000)
