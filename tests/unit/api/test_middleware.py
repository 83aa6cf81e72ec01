"""The service's middleware on a small app of its own: security headers on every answer,
the body limit (declared and chunked bodies), and rate limits in memory (per address, per
user, login per address and username, order routes, WebSocket handshakes, Retry-After),
with a failing storage answered 503."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sapphire.api.middleware import (
    API_CSP,
    DOCS_CSP,
    HSTS,
    BodyLimitMiddleware,
    RateLimiter,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
    is_order_route,
)
from sapphire.api.security.deps import Principal
from sapphire.api.settings import ServiceSettings

TOKENS = {
    "alice-token": Principal(1, "alice", "trader", frozenset({"read", "trade"}), "token"),
    "bob-token": Principal(2, "bob", "viewer", frozenset({"read"}), "token"),
}


async def principal_of(credential: str) -> Principal | None:
    return TOKENS.get(credential)


def make_app(settings: ServiceSettings, limiter: RateLimiter | None = None) -> FastAPI:
    app = FastAPI(docs_url="/docs")
    seen: list[bytes] = []
    app.state.seen = seen

    @app.get("/api/v1/thing")
    def thing() -> dict[str, str]:
        return {"thing": "ok"}

    @app.get("/api/v1/cached")
    def cached() -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "max-age=60"})

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.post("/api/v1/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.append(body)
        return {"bytes": len(body)}

    @app.post("/api/v1/auth/login")
    async def login(request: Request) -> dict[str, str]:
        body = await request.body()  # the limiter read it first: it must still be here
        return {"body": body.decode()}

    @app.api_route("/api/v1/nodes/{node}/orders", methods=["GET", "POST", "DELETE"])
    def orders(node: str) -> dict[str, str]:
        return {"node": node}

    @app.post("/api/v1/nodes/{node}/kill")
    def kill(node: str) -> dict[str, str]:
        return {"killed": node}

    @app.websocket("/api/v1/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    limiter = limiter or RateLimiter(settings)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, principal_of=principal_of)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=frozenset({"/docs"}))
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(ServiceSettings(max_body_bytes=2048))) as c:
        yield c


def assert_security_headers(response: Any, *, csp: str = API_CSP) -> None:
    headers = response.headers
    assert headers["content-security-policy"] == csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


# -- security headers ------------------------------------------------------------------------


def test_security_headers_on_every_answer(client: TestClient) -> None:
    answers = [
        client.get("/api/v1/thing"),  # 200
        client.get("/api/v1/nowhere"),  # 404
        client.put("/api/v1/thing"),  # 405
        client.post("/api/v1/echo", content=b"x" * 4096),  # 413
    ]
    assert [r.status_code for r in answers] == [200, 404, 405, 413]
    for response in answers:
        assert_security_headers(response)
        assert response.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in response.headers  # plain HTTP


def test_a_bug_is_a_json_500_with_the_headers_and_no_traceback() -> None:
    app = make_app(ServiceSettings())
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "a bug" not in response.text
    assert_security_headers(response)


def test_hsts_only_behind_tls_and_a_route_may_set_its_own_cache_control() -> None:
    with TestClient(make_app(ServiceSettings()), base_url="https://testserver") as c:
        response = c.get("/api/v1/thing")
        cached = c.get("/api/v1/cached")
    assert response.headers["strict-transport-security"] == HSTS
    assert cached.headers["cache-control"] == "max-age=60"


def test_the_docs_page_gets_the_csp_swagger_needs(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert_security_headers(response, csp=DOCS_CSP)
    assert "swagger-ui" in response.text


# -- body limit -------------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    response = client.post("/api/v1/echo", content=b"x" * 2049)
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is larger than the limit of 2048 bytes"}
    assert client.app.state.seen == []  # type: ignore[attr-defined]


def test_a_chunked_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"y" * 512

    over = client.post("/api/v1/echo", content=chunks(5))  # no Content-Length: chunked
    assert over.status_code == 413
    assert client.app.state.seen == []  # type: ignore[attr-defined]
    under = client.post("/api/v1/echo", content=chunks(4))
    assert under.status_code == 200 and under.json() == {"bytes": 2048}
    assert client.app.state.seen == [b"y" * 2048]  # type: ignore[attr-defined]


def test_a_content_length_that_is_not_a_number_is_refused(client: TestClient) -> None:
    response = client.post("/api/v1/echo", content=b"{}", headers={"Content-Length": "2x"})
    assert response.status_code == 400
    assert "'2x'" in response.json()["detail"]


# -- rate limits ------------------------------------------------------------------------------


def limited_client(**limits: str) -> TestClient:
    return TestClient(make_app(ServiceSettings(**limits)))


def test_per_address_limit_answers_429_with_retry_after() -> None:
    c = limited_client(rate_limit_ip="3/minute")
    assert [c.get("/api/v1/thing").status_code for _ in range(3)] == [200] * 3
    refused = c.get("/api/v1/thing")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["detail"].startswith(
        "rate limit exceeded: 3 per 1 minute per client address; retry in"
    )
    assert_security_headers(refused)
    other = TestClient(c.app, client=("10.1.2.3", 4000))  # another address has its own
    assert other.get("/api/v1/thing").status_code == 200


def test_per_user_limit_counts_the_principal_not_the_address() -> None:
    c = limited_client(rate_limit_user="2/minute", rate_limit_ip="100/minute")
    alice = {"Authorization": "Bearer alice-token"}
    assert [c.get("/api/v1/thing", headers=alice).status_code for _ in range(2)] == [200, 200]
    refused = c.get("/api/v1/thing", headers=alice)
    assert refused.status_code == 429 and "per user" in refused.json()["detail"]
    # the same address: bob, an invalid credential and no credential are not alice
    assert c.get("/api/v1/thing", headers={"X-API-Key": "bob-token"}).status_code == 200
    assert c.get("/api/v1/thing", headers={"Authorization": "Bearer forged"}).status_code == 200
    assert c.get("/api/v1/thing").status_code == 200
    # alice from another address is still alice
    elsewhere = TestClient(c.app, client=("10.9.9.9", 1))
    assert elsewhere.get("/api/v1/thing", headers=alice).status_code == 429


def test_login_is_limited_per_address_and_per_username() -> None:
    c = limited_client(rate_limit_login="2/minute", rate_limit_ip="100/minute")
    for _ in range(2):
        answer = c.post("/api/v1/auth/login", json={"username": "Alice", "password": "x"})
        assert answer.status_code == 200
        assert answer.json()["body"] == '{"username":"Alice","password":"x"}'
    refused = c.post("/api/v1/auth/login", json={"username": "carol", "password": "x"})
    assert refused.status_code == 429
    assert "for logins per client address" in refused.json()["detail"]
    # alice from other addresses: her username's limit is spent (2 tries), case-blind,
    # in a form body too
    for n, body in enumerate(
        [{"json": {"username": "ALICE"}}, {"data": {"username": " alice ", "password": "x"}}]
    ):
        elsewhere = TestClient(c.app, client=(f"10.0.0.{n}", 1))
        refused = elsewhere.post("/api/v1/auth/login", **body)  # type: ignore[arg-type]
        assert refused.status_code == 429
        assert "for logins per username" in refused.json()["detail"]
    fresh = TestClient(c.app, client=("10.0.0.9", 1))
    assert fresh.post("/api/v1/auth/login", json={"username": "dave"}).status_code == 200
    assert fresh.get("/api/v1/thing").status_code == 200  # only logins are this strict


def test_order_routes_are_stricter_for_changes_only() -> None:
    c = limited_client(rate_limit_orders="2/minute", rate_limit_ip="100/minute")
    alice = {"Authorization": "Bearer alice-token"}
    assert c.post("/api/v1/nodes/n1/orders", headers=alice).status_code == 200
    assert c.post("/api/v1/nodes/n2/kill", headers=alice).status_code == 200
    refused = c.delete("/api/v1/nodes/n1/orders", headers=alice)
    assert refused.status_code == 429
    assert "for order requests per caller" in refused.json()["detail"]
    assert c.get("/api/v1/nodes/n1/orders", headers=alice).status_code == 200  # reads
    bob = {"Authorization": "Bearer bob-token"}
    assert c.post("/api/v1/nodes/n1/orders", headers=bob).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/nodes/n1/orders", True),
        ("DELETE", "/api/v1/nodes/n1/orders/abc", True),
        ("PATCH", "/api/v1/nodes/n1/orders/abc", True),
        ("POST", "/api/v1/nodes/n1/kill", True),
        ("GET", "/api/v1/portfolio/orders", False),
        ("GET", "/api/v1/nodes/n1/orders", False),
        ("POST", "/api/v1/nodes/n1/stop", False),
        ("POST", "/api/v1/nodes/n1/ordersx", False),
        ("POST", "/api/v1/nodes", False),
    ],
)
def test_which_requests_are_order_requests(method: str, path: str, expected: bool) -> None:
    assert is_order_route(method, path) is expected


def test_websocket_handshakes_count_per_address() -> None:
    c = limited_client(rate_limit_ip="2/minute")
    with c.websocket_connect("/api/v1/ws") as ws:
        assert ws.receive_text() == "hello"
    assert c.get("/api/v1/thing").status_code == 200
    with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect("/api/v1/ws"):
        pass
    assert refused.value.code == 1008  # policy violation


def test_a_refused_request_is_not_counted() -> None:
    settings = ServiceSettings(rate_limit_ip="2/minute")
    limiter = RateLimiter(settings)

    async def run() -> list[bool]:
        answers = [await limiter.hit("ip", "1.1.1.1") is None for _ in range(5)]
        stats = await limiter._window.get_window_stats(limiter.rules["ip"][0], "ip", "1.1.1.1")
        assert stats.remaining == 0
        await limiter.reset()
        answers.append(await limiter.hit("ip", "1.1.1.1") is None)
        return answers

    assert asyncio.run(run()) == [True, True, False, False, False, True]


def test_several_limits_in_one_setting_all_apply() -> None:
    limiter = RateLimiter(ServiceSettings(rate_limit_ip="5/minute;2/second"))

    async def run() -> str:
        for _ in range(2):
            assert await limiter.hit("ip", "a") is None
        refusal = await limiter.hit("ip", "a")
        assert refusal is not None
        return refusal.limit

    assert asyncio.run(run()) == "2 per 1 second"


def test_an_unreachable_storage_fails_closed_with_503() -> None:
    settings = ServiceSettings(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    limiter = RateLimiter(settings)
    assert asyncio.run(limiter.reachable()) is False
    with TestClient(make_app(settings, limiter)) as c:
        response = c.get("/api/v1/thing")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "127.0.0.1:1" not in response.text  # where Redis is stays inside
