"""The service's ASGI middleware: security headers, the request body limit and rate limits.

`create_app` stacks them outermost first: security headers (every answer gets them, the
413s and 429s below included), CORS, body limit, rate limits, then the audit trail and the
routes. They are plain ASGI middleware (no `BaseHTTPMiddleware`): nothing is copied that
need not be, and a refusal never reaches the routes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from sapphire.api.security.deps import Principal
    from sapphire.api.settings import ServiceSettings

__all__ = [
    "LOGIN_PATH",
    "BodyLimitMiddleware",
    "RateLimitMiddleware",
    "RateLimiter",
    "Refusal",
    "SecurityHeadersMiddleware",
    "client_address",
    "is_order_route",
]

log = logging.getLogger(__name__)

#: where the stricter login limits apply (POST only)
LOGIN_PATH = "/api/v1/auth/login"
#: order routes (state-changing methods only): a node's orders (cancel, amend) and its kill
#: switch
_ORDER_ROUTE = re.compile(r"^/api/v1/nodes/[^/]+/(orders|kill)(/|$)")
_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: CSP of the API's answers: they are JSON, nothing in them may load or run anything
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: CSP of the interactive docs page (Swagger UI from jsDelivr, started by an inline script)
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def client_address(scope: Scope) -> str:
    """The caller's address: the socket peer (or, behind a trusted proxy, the address it
    forwarded: uvicorn's ProxyHeadersMiddleware rewrites `scope["client"]`)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_order_route(method: str, path: str) -> bool:
    """True for a request that changes or cancels a node's orders or kills the node."""
    return method in _CHANGING and _ORDER_ROUTE.match(path) is not None


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# -- security headers ------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Security headers on every HTTP answer (a route may set its own Cache-Control or CSP);
    an unhandled error becomes a JSON 500 that carries them too."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = [
            ("Content-Security-Policy", DOCS_CSP if scope["path"] in self.docs_paths else API_CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
        ]
        if scope.get("scheme") == "https":
            added.append(("Strict-Transport-Security", HSTS))
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in added:
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                response = _error(500, "internal server error")
                await response(scope, receive, send_with_headers)
            raise


# -- body size ----------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse (413) a request body over `max_bytes` before the routes see any of it: at
    once from Content-Length, or as soon as a body without one (chunked) passes the limit.

    The body is read here and handed on whole, so no route ever sees half of a body."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _error(400, f"Content-Length {declared!r} is not a number")(
                    scope, receive, send
                )
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than the limit of {self.max_bytes} bytes"
        await _error(413, detail, {"Connection": "close"})(scope, receive, send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then what `receive` gives
    (the client's disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


# -- rate limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over a rate limit: which limit, for whom, and when to try again."""

    limit: str  # e.g. "10 per 1 minute"
    who: str  # e.g. "per client address"
    retry_after_s: int

    @property
    def detail(self) -> str:
        """The 429's message."""
        return f"rate limit exceeded: {self.limit} {self.who}; retry in {self.retry_after_s} s"


#: the limits a request can count against: (setting, who it is counted for)
_RULES = {
    "ip": ("rate_limit_ip", "per client address"),
    "user": ("rate_limit_user", "per user"),
    "login_ip": ("rate_limit_login", "for logins per client address"),
    "login_user": ("rate_limit_login", "for logins per username"),
    "orders": ("rate_limit_orders", "for order requests per caller"),
}


class RateLimiter:
    """Moving-window rate limits (the `limits` library) in Redis when `redis_url` is set
    (shared by every process of the service), in memory otherwise."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.storage: Storage
        if settings.redis_url:
            self.storage = RedisStorage(
                settings.redis_url,
                implementation="redispy",
                key_prefix=settings.rate_limit_prefix,
                wrap_exceptions=True,
            )
            self.where = "redis"
        else:
            self.storage = MemoryStorage(wrap_exceptions=True)
            self.where = "memory"
        self._window = MovingWindowRateLimiter(self.storage)
        self.rules: dict[str, list[RateLimitItem]] = {
            rule: parse_many(getattr(settings, setting)) for rule, (setting, _) in _RULES.items()
        }

    async def hit(self, rule: str, key: str) -> Refusal | None:
        """Count one request for `key` under `rule` ("ip", "user", "login_ip",
        "login_user", "orders"): None if allowed, else the Refusal (not counted)."""
        items = self.rules[rule]
        for item in items:
            if not await self._window.test(item, rule, key):
                return await self._refusal(rule, key, item)
        for item in items:
            if not await self._window.hit(item, rule, key):  # lost a race to another caller
                return await self._refusal(rule, key, item)
        return None

    async def _refusal(self, rule: str, key: str, item: RateLimitItem) -> Refusal:
        stats = await self._window.get_window_stats(item, rule, key)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        return Refusal(limit=str(item), who=_RULES[rule][1], retry_after_s=wait)

    async def reachable(self) -> bool:
        """True if the limits' storage answers (always, in memory)."""
        try:
            return bool(await self.storage.check())
        except (StorageError, OSError):
            return False

    async def reset(self) -> None:
        """Forget every count (tests; an operator after a false alarm)."""
        await self.storage.reset()


#: how the rate-limit middleware learns who is calling: the credential (the bearer token or
#: API key as sent) to the Principal, or None when it is not valid
PrincipalOf = Callable[[str], Awaitable["Principal | None"]]


class RateLimitMiddleware:
    """Count each request against the limits that apply to it; 429 with Retry-After when
    one is exceeded (the request is not served and not counted).

    Every request counts per client address; an authenticated one per user too (the
    principal, resolved from its credential as the routes will); POST /auth/login per
    address and per username (stricter); order routes per user (or address) (stricter).
    WebSocket handshakes count per address. Storage down: 503 (fail closed)."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, principal_of: PrincipalOf) -> None:
        self.app = app
        self.limiter = limiter
        self.principal_of = principal_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            refusal, receive = await self._check(scope, receive)
        except StorageError as exc:
            log.error("rate limits: the %s storage failed: %s", self.limiter.where, exc)
            if scope["type"] == "http":
                detail = "the rate limiter's storage is unreachable; try again shortly"
                await _error(503, detail, {"Retry-After": "5"})(scope, receive, send)
                return
            await send({"type": "websocket.close", "code": 1013})
            return
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            headers = {"Retry-After": str(refusal.retry_after_s)}
            await _error(429, refusal.detail, headers)(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": refusal.detail})

    async def _check(self, scope: Scope, receive: Receive) -> tuple[Refusal | None, Receive]:
        limiter = self.limiter
        address = client_address(scope)
        refusal = await limiter.hit("ip", address)
        if refusal or scope["type"] == "websocket":
            return refusal, receive
        method, path = scope["method"], scope["path"]
        if method == "POST" and path == LOGIN_PATH:
            refusal = await limiter.hit("login_ip", address)
            if refusal:
                return refusal, receive
            body, receive = await _body(receive)
            username = _login_username(Headers(scope=scope), body)
            if username is not None:
                refusal = await limiter.hit("login_user", username)
            return refusal, receive
        credential = _credential(Headers(scope=scope))
        principal = await self.principal_of(credential) if credential else None
        if principal is not None:
            refusal = await limiter.hit("user", str(principal.user_id))
        if refusal is None and is_order_route(method, path):
            caller = f"user:{principal.user_id}" if principal else f"ip:{address}"
            refusal = await limiter.hit("orders", caller)
        return refusal, receive


def _credential(headers: Headers) -> str | None:
    """The credential as `deps.authenticated` reads it (Bearer, else X-API-Key)."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return value.strip() or None
    return (headers.get("x-api-key") or "").strip() or None


async def _body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (the body limit has bounded it) and a `receive` that gives it again."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replay(body, receive)


def _login_username(headers: Headers, body: bytes) -> str | None:
    """The username a login names (JSON or form body), normalised; None if none."""
    value: Any = None
    content_type = headers.get("content-type", "")
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            value = parse_qs(body.decode()).get("username", [None])[0]
        else:
            document = json.loads(body)
            value = document.get("username") if isinstance(document, dict) else None
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().casefold()[:200]
