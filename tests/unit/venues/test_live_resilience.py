"""The failure-handling pieces of the live venue (`sapphire.venues.resilience`), on
fake clocks; the venue using them is tested against the local exchange
(tests/integration/test_live_venue.py)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import ccxt
import pytest

from sapphire.venues.resilience import (
    CircuitBreaker,
    ClockSkew,
    Guard,
    Outcome,
    RateLimiter,
    RetryPolicy,
    classify,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (ccxt.RateLimitExceeded("10006"), Outcome.RATE_LIMITED),
        (ccxt.DDoSProtection("429"), Outcome.RATE_LIMITED),
        (ccxt.InvalidNonce("10002"), Outcome.BAD_TIMESTAMP),
        (ccxt.RequestTimeout("timeout"), Outcome.UNAVAILABLE),
        (ccxt.ExchangeNotAvailable("503"), Outcome.UNAVAILABLE),
        (ccxt.NetworkError("reset"), Outcome.UNAVAILABLE),
        (ConnectionResetError(), Outcome.UNAVAILABLE),
        (TimeoutError(), Outcome.UNAVAILABLE),
        (ccxt.InsufficientFunds("110007"), Outcome.REFUSED),
        (ccxt.OrderNotFound("110001"), Outcome.REFUSED),
        (ccxt.AuthenticationError("10003"), Outcome.REFUSED),
    ],
)
def test_classify_says_whether_the_request_may_have_run(exc: Exception, outcome: Outcome) -> None:
    assert classify(exc) is outcome


def test_the_back_off_doubles_with_a_random_half_and_a_cap() -> None:
    policy = RetryPolicy(attempts=5, base_s=0.2, cap_s=1.0, rng=random.Random(7))
    for attempt, full in [(0, 0.2), (1, 0.4), (2, 0.8), (3, 1.0), (9, 1.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) == 50  # jittered: no two clients retry in step


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attempts": 0}, "attempts=0"),
        ({"attempts": True}, "attempts=True"),
        ({"base_s": 0.0}, "base_s=0.0"),
        ({"base_s": 2.0, "cap_s": 1.0}, "base_s=2.0"),
    ],
)
def test_a_bad_retry_policy_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_limiter_spaces_requests_below_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"order/create": 10}, headroom=0.5, clock=clock)
    # 5 a second: a burst of 5, then one every 0.2 s
    waits = [limiter._wait_for("order/create") for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.2, 0.4, 0.6])
    clock.now += 10  # refilled, but never above one second's worth
    assert [limiter._wait_for("order/create") for _ in range(6)][-1] == pytest.approx(0.2)


def test_the_limiter_waits_and_is_blocked_after_a_refusal() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"q": 1}, headroom=1.0, clock=clock)
    asyncio.run(limiter.acquire("q"))
    assert limiter.waited_s == 0
    limiter.block("q", 0.05)
    assert limiter._wait_for("q") == pytest.approx(1.05)
    with pytest.raises(ValueError, match="group 'nope' is unknown: expected one of q"):
        limiter._wait_for("nope")
    with pytest.raises(ValueError, match="headroom=0"):
        RateLimiter({"q": 1}, headroom=0)
    with pytest.raises(ValueError, match="q=0"):
        RateLimiter({"q": 0})


def test_the_breaker_opens_after_n_failures_and_closes_on_a_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # not consecutive
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allows_orders()
    breaker.record_failure()
    assert not breaker.allows_orders() and breaker.trips == 1
    assert not breaker.probe_due()
    clock.now += 5
    assert breaker.probe_due()
    breaker.record_failure()  # the probe failed: another cool-down
    assert not breaker.probe_due()
    clock.now += 5
    breaker.record_success()
    assert breaker.allows_orders() and not breaker.is_open
    with pytest.raises(ValueError, match="threshold=0"):
        CircuitBreaker(threshold=0)


def test_the_skew_keeps_the_shortest_round_trip() -> None:
    skew = ClockSkew(bias_ms=100)
    assert skew.time_difference == 100  # unmeasured: our clock, 100 ms early
    skew.add(1_000, 31_100, 1_200)  # rtt 200: the server is ~30 000 ms ahead
    skew.add(2_000, 32_010, 2_020)  # rtt 20: more precise
    skew.add(3_000, 40_000, 3_500)  # rtt 500: ignored
    assert (skew.offset_ms, skew.rtt_ms) == (30_000, 20)
    assert skew.server_ms(5_000) == 35_000
    # ccxt signs with local - timeDifference: the server's time, 100 ms in the past
    assert 5_000 - skew.time_difference == 35_000 - 100
    with pytest.raises(ValueError, match="before it began"):
        skew.add(10, 0, 5)


def test_the_guard_repeats_only_what_is_safe_to_repeat() -> None:
    guard = Guard(
        {"g": 1000},
        retry=RetryPolicy(attempts=3, base_s=0.001, cap_s=0.002),
        breaker=CircuitBreaker(threshold=10),
    )
    calls: list[str] = []

    def failing(*errors: Exception) -> Any:
        queue = list(errors)

        async def call() -> str:
            calls.append("call")
            if queue:
                raise queue.pop(0)
            return "ok"

        return call

    async def run(call: Any, repeatable: bool) -> Any:
        return await guard.request("g", call, repeatable=repeatable)

    # refused before processing: sent again even when not repeatable (a creation)
    assert asyncio.run(run(failing(ccxt.RateLimitExceeded("10006")), False)) == "ok"
    assert len(calls) == 2 and len(guard.backoffs) == 1
    calls.clear()
    # outcome unknown: a read is retried, a creation is not
    assert asyncio.run(run(failing(ccxt.RequestTimeout("t")), True)) == "ok"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(ccxt.RequestTimeout):
        asyncio.run(run(failing(ccxt.RequestTimeout("t")), False))
    assert len(calls) == 1
    calls.clear()
    # a definite refusal is never repeated, and the attempts are bounded
    with pytest.raises(ccxt.InsufficientFunds):
        asyncio.run(run(failing(ccxt.InsufficientFunds("110007")), True))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        asyncio.run(run(failing(*[ccxt.ExchangeNotAvailable("503")] * 5), True))
    assert len(calls) == 1 + 3
