"""Rate limits in the real Redis (SAPPHIRE_TEST_REDIS_URL, default redis://127.0.0.1:6379/0):
two service processes (two limiters) share one count, the keys live under the configured
prefix and expire, the service answers 429 with Retry-After from the shared count, and
`create_app` keeps its limits there when SAPPHIRE_REDIS_URL is set (a restart remembers).

Skipped when Redis is unreachable, except in CI (CI=true), where that fails. Each test
uses a prefix of its own and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from sapphire.api.app import create_app
from sapphire.api.middleware import RateLimiter, RateLimitMiddleware
from sapphire.api.security.deps import Principal
from sapphire.api.settings import ServiceSettings

redis = pytest.importorskip("redis")

URL = os.environ.get("SAPPHIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = {"SAPPHIRE_API_SECRET": "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2}


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis.from_url(URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {URL} is unreachable in CI: {exc}")
        pytest.skip(f"Redis at {URL} is unreachable: {exc}")
    name = f"sapphire-test-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = list(client.scan_iter(match=f"{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def settings(prefix: str, **limits: str) -> ServiceSettings:
    return ServiceSettings(redis_url=URL, rate_limit_prefix=prefix, **limits)


def test_two_service_processes_share_one_count(prefix: str) -> None:
    config = settings(prefix, rate_limit_ip="3/minute")
    first, second = RateLimiter(config), RateLimiter(config)
    assert first.where == second.where == "redis"

    async def run() -> list[bool]:
        allowed = []
        for limiter in (first, second, first, second, first):
            allowed.append(await limiter.hit("ip", "203.0.113.7") is None)
        return allowed

    assert asyncio.run(run()) == [True, True, True, False, False]


def test_the_keys_live_under_the_prefix_and_expire(prefix: str) -> None:
    limiter = RateLimiter(settings(prefix, rate_limit_user="5/minute"))

    async def run() -> None:  # one event loop: the Redis client belongs to it
        assert await limiter.reachable() is True
        assert await limiter.hit("user", "42") is None

    asyncio.run(run())
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    assert keys, "no key written under the prefix"
    assert all(b"42" in key for key in keys)
    assert all(0 < client.ttl(key) <= 60 for key in keys)
    client.close()


def test_the_service_refuses_from_the_shared_count(prefix: str) -> None:
    config = settings(prefix, rate_limit_user="2/minute", rate_limit_ip="100/minute")
    alice = Principal(7, "alice", "trader", frozenset({"read", "trade"}), "token")

    async def principal_of(credential: str) -> Principal | None:
        return alice if credential == "alice-token" else None

    def service() -> TestClient:  # one app per "process", each with its own limiter
        app = FastAPI()

        @app.get("/api/v1/thing")
        def thing() -> dict[str, bool]:
            return {"ok": True}

        app.add_middleware(
            RateLimitMiddleware, limiter=RateLimiter(config), principal_of=principal_of
        )
        return TestClient(app)

    headers = {"Authorization": "Bearer alice-token"}
    with service() as one, service() as two:  # `with`: one event loop per client
        assert one.get("/api/v1/thing", headers=headers).status_code == 200
        assert two.get("/api/v1/thing", headers=headers).status_code == 200
        refused = one.get("/api/v1/thing", headers=headers)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        detail = refused.json()["detail"]
        assert detail.startswith("rate limit exceeded: 2 per 1 minute per user")
        assert two.get("/api/v1/thing").status_code == 200  # anonymous: the address only


def test_the_service_keeps_its_limits_in_redis_when_configured(prefix: str, tmp_path: Path) -> None:
    config = settings(prefix, rate_limit_ip="2/minute").replace(home=tmp_path)
    app = create_app(config, environ=SECRET)
    assert app.state.service.limiter.where == "redis"
    with TestClient(app) as client:
        ready = client.get("/api/v1/ready")
        assert ready.json()["checks"]["rate_limits"] == {"ok": True, "detail": "ok (redis)"}
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/v1/health").status_code == 429
    again = create_app(config, environ=SECRET)
    with TestClient(again) as client:  # a restarted service remembers the count
        assert client.get("/api/v1/health").status_code == 429
