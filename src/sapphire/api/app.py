"""`create_app`: the Sapphire service as one FastAPI app.

```python
from sapphire.api.app import create_app

app = create_app()  # settings from SAPPHIRE_* variables; refuses without a signing secret
# uvicorn.run(app, host="127.0.0.1", port=8000)   (what `sapphire serve` does)
```

Every router is mounted under `/api/v1`. The middleware, outermost first: trusted-proxy
headers (only when proxies are configured), security headers, CORS, the body limit, rate
limits, the audit trail. Errors are `{"detail": "..."}`; validation errors name the field
and the value.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sapphire import __version__
from sapphire.api import ws
from sapphire.api.audit_trail import audit_requests
from sapphire.api.jobs import JobManager
from sapphire.api.middleware import (
    BodyLimitMiddleware,
    RateLimiter,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
)
from sapphire.api.nodes import NodeManager
from sapphire.api.routes import (
    audit,
    auth,
    exchange_keys,
    health,
    jobs,
    logs,
    models,
    nodes,
    portfolio,
    risk,
    users,
)
from sapphire.api.schemas import ErrorDetail, error_response
from sapphire.api.security.deps import TOTP_HEADER, Principal, authenticated
from sapphire.api.security.secrets import load_signing_secret
from sapphire.api.security.service import AuthService
from sapphire.api.service import Service
from sapphire.api.settings import ServiceSettings
from sapphire.compliance.audit import AuditLog
from sapphire.engine.stream import open_stream
from sapphire.ops.logging import RequestIdMiddleware
from sapphire.ops.metrics import new_registry
from sapphire.ops.metrics_service import metrics_route, metrics_token
from sapphire.ops.notify.config import NotificationsConfig
from sapphire.ops.notify.service import NotifyService
from sapphire.store import Store
from sapphire.store.keyvault import KeyVault, load_master_key

__all__ = [
    "API_PREFIX",
    "PUBLIC_SCOPE",
    "Operation",
    "create_app",
    "describe_validation",
    "operations",
    "route_scopes",
]

log = logging.getLogger(__name__)

#: every router of the service, mounted under API_PREFIX in this order
ROUTERS = (
    health, auth, users, audit, exchange_keys, nodes, jobs, ws, portfolio, models, risk, logs,
)  # fmt: skip

API_PREFIX = "/api/v1"
DOCS_PATH = "/docs"
#: `route_scopes` of a route that only needs a valid credential (any scope)
PUBLIC_SCOPE = "authenticated"

DESCRIPTION = """\
Run and watch Sapphire: trading nodes (paper, testnet, live), the portfolio, research
jobs (backtests, optimisation, walk-forward, downloads), the model registry, risk, logs and
the audit log. WebSocket streams at `/api/v1/ws` (authenticated by the first message).

**Authentication.** `POST /api/v1/auth/login` gives a short-lived access token and a
refresh token (rotated on every use; a reused one revokes its whole family). Send
`Authorization: Bearer <access token>`, or `Authorization: Bearer sk_...` with an API
key (`X-API-Key: sk_...` works too). Sensitive actions also need the current TOTP code in
`X-Sapphire-TOTP`.

**Scopes.** `read` (viewer), `read` + `trade` (trader), all three with `admin` (admin);
each operation names the scope it needs in `x-required-scope`.

**Errors** are `{"detail": "..."}` naming the bad value; over a rate limit: 429 with
`Retry-After`. Decimals are JSON strings; timestamps ISO-8601 UTC.
"""


def has_channels(config: NotificationsConfig) -> bool:
    """Whether the notifications name at least one channel to send to."""
    chosen = (config.telegram, config.slack, config.discord, config.email)
    return bool(config.webhooks) or any(c is not None for c in chosen)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    notifications: NotificationsConfig | None = None,
) -> FastAPI:
    """The service app, its components built from `settings` (default: from `environ`,
    itself defaulting to `os.environ`). Raises `SigningSecretError` (a ValueError saying
    how to set one) without a signing secret, and `SettingsError` on a bad setting.
    With `notifications` that name a channel, the service sends the nodes' messages and
    watches their heartbeats while it runs (`sapphire.ops.notify.NotifyService`)."""
    settings = settings or ServiceSettings.from_environ(environ)
    home = settings.resolved_home()
    secret = load_signing_secret(home, environ)
    master = load_master_key(home, environ, create=True)
    store = Store(settings.resolved_database_url())
    events = open_stream(settings.redis_url, home)
    service = Service(
        settings=settings,
        home=home,
        store=store,
        auth=AuthService(
            store, secret, access_ttl_s=settings.access_ttl_s, refresh_ttl_s=settings.refresh_ttl_s
        ),
        audit=AuditLog(store),
        vault=KeyVault(store, master),
        events=events,
        nodes=NodeManager(store, home, events),
        jobs=JobManager(store, home, events),
        limiter=RateLimiter(settings),
    )

    notifier = (
        NotifyService(notifications, events, home)
        if notifications is not None and notifications.enabled and has_channels(notifications)
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if notifier is not None:
            notifier.start()
        try:
            yield
        finally:
            if notifier is not None:
                notifier.stop()
            service.jobs.close()
            service.nodes.close()  # the nodes keep running: only the service's side closes
            events.close()
            store.close()

    app = FastAPI(
        title="Sapphire API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=DOCS_PATH if settings.docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.service = service
    for module in ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX)
    _install_middleware(app, service)
    # GET /metrics for Prometheus (a bearer metrics token, or loopback clients only), and
    # every request counted and timed by route template; a registry of its own per app
    app.state.metrics_registry = metrics_route(
        app, service, registry=new_registry(), token=metrics_token(environ)
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _install_middleware(app: FastAPI, service: Service) -> None:
    """The middleware stack; `add_middleware` puts each outside the ones before it."""
    settings = service.settings

    async def principal_of(credential: str) -> Principal | None:
        try:
            principal: Principal = await run_in_threadpool(
                service.auth.principal_from_bearer, credential
            )
        except HTTPException:
            return None
        return principal

    app.middleware("http")(audit_requests)
    app.add_middleware(RateLimitMiddleware, limiter=service.limiter, principal_of=principal_of)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=bool(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", TOTP_HEADER],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    docs = frozenset({DOCS_PATH}) if settings.docs else frozenset()
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    # outermost: every answer (413, 429 and 500 included) carries its X-Request-ID, and
    # the request's log lines its correlation id
    app.add_middleware(RequestIdMiddleware)


# -- errors -------------------------------------------------------------------------------------

_SECRET_WORDS = ("password", "secret", "token", "totp", "code", "key")


def describe_validation(errors: Any) -> str:
    """Validation errors as one line: where, what is wrong, and the value (never a
    password's, a token's or a key's)."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ())) or "request"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        value = error.get("input")
        secret = any(word in where.lower() for word in _SECRET_WORDS)
        if error.get("type") != "missing" and not secret and _scalar(value):
            shown = repr(value)
            message += f" (got {shown[:80]}{'…' if len(shown) > 80 else ''})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "the request is not valid"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": describe_validation(exc.errors())}, status_code=422)


# -- OpenAPI ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """One HTTP operation of the app: its method, its full path template, the scopes its
    dependencies require (see `route_scopes`) and whether the OpenAPI shows it."""

    method: str
    path: str
    scopes: frozenset[str]
    in_schema: bool
    has_body: bool


def route_scopes(dependant: Dependant) -> frozenset[str]:
    """The scopes a route's dependencies require (`deps.require` marks them), with
    PUBLIC_SCOPE for one that only authenticates; empty for a public route."""
    scopes: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        scope = getattr(current.call, "required_scope", None)
        if scope is not None:
            scopes.add(str(scope))
        elif current.call is authenticated:
            scopes.add(PUBLIC_SCOPE)
        stack.extend(current.dependencies)
    if len(scopes) > 1:
        scopes.discard(PUBLIC_SCOPE)
    return frozenset(scopes)


def operations(app: FastAPI) -> list[Operation]:
    """Every HTTP operation of the app's API routes (WebSocket routes are not)."""
    found = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        dependant = context.dependant
        for method in sorted(context.methods or ()):
            found.append(
                Operation(
                    method=method,
                    path=str(context.path_format),
                    scopes=route_scopes(dependant),
                    in_schema=bool(context.include_in_schema),
                    has_body=bool(dependant.body_params),
                )
            )
    return found


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the bearer scheme on every protected operation, the scope
    each needs, and the error answers middleware and validation can give."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorDetail"] = ErrorDetail.model_json_schema()
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT access token, or an sk_ API key",
        },
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for op in operations(app):
        operation = schema["paths"].get(op.path, {}).get(op.method.lower())
        if not op.in_schema or operation is None:
            continue
        answers = operation.setdefault("responses", {})
        codes = [429, 503]
        if op.scopes:
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            operation["x-required-scope"] = sorted(op.scopes)
            codes += [401, 403]
        else:
            operation["security"] = []
        if op.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes += [400, 413]
        if "422" in answers or op.has_body:
            codes.append(422)
            answers.pop("422", None)  # FastAPI's list-shaped body: ours is ErrorDetail
        for code in codes:
            answers.setdefault(str(code), error_response(code))
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.summary is None and route.endpoint.__doc__:
            # a summary from the docstring's first sentence, not the function's name
            summary = route.endpoint.__doc__.strip().split("\n\n")[0].split(". ")[0]
            for method in context.methods or ():
                found = schema["paths"].get(str(context.path_format), {}).get(method.lower())
                if found is not None:
                    found["summary"] = " ".join(summary.split()).rstrip(".:")
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = schema
    return schema
