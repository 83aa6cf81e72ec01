"""`audit_requests`: the HTTP middleware that appends one audit record for every
state-changing request (POST, PUT, PATCH, DELETE), answered or failed.

The record: actor = the authenticated user (`request.state.principal`), else the
username tried on a login route (`request.state.audit_actor` when a route sets one), else
"anonymous"; action = method and route template (`POST /api/v1/exchange-keys/{name}`);
target = the path parameters; detail = the status code and a summary of the query and of
a JSON or form body in which every field that could hold a secret (a password, token,
key, secret, code...) and every value that looks like a credential is replaced by
"[redacted]"; ip = the client's address. The append (a blocking database write) runs in
a worker thread; a failed append is logged and does not change the response.

Install it with `app.middleware("http")(audit_requests)`; it reads the log from
`request.app.state.service.audit`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "REDACTED",
    "STATE_CHANGING",
    "audit_requests",
    "is_sensitive_name",
    "redact",
    "request_summary",
]

log = logging.getLogger(__name__)

#: the methods whose requests are audited
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REDACTED = "[redacted]"
#: bodies larger than this (or of unknown length) are summarised by their size only
BODY_SUMMARY_MAX = 64 * 1024
#: route paths that end so are logins: their actor is the username tried
LOGIN_SUFFIXES = ("/login", "/token")
_SENSITIVE_NAME = re.compile(
    r"pass|secret|token|key|code|otp|auth|credential|signature|cookie|session|recovery",
    re.IGNORECASE,
)
# a JWT, an API key of ours (sk_...), a bearer credential, a PEM block
_SENSITIVE_VALUE = re.compile(r"^\s*(eyJ[\w-]*\.|sk_|bearer\s|-----BEGIN)", re.IGNORECASE)
_TEXT_MAX, _ITEMS_MAX, _DEPTH_MAX = 200, 20, 4
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str, limit: int) -> str:
    """`text` without control characters, cut to `limit` characters."""
    cleaned = _CONTROL.sub("?", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def is_sensitive_name(name: str) -> bool:
    """Whether a field called `name` may hold a secret (password, token, key, code...)."""
    return _SENSITIVE_NAME.search(name) is not None


def redact(value: Any, depth: int = 0) -> Any:
    """`value` (parsed JSON or form fields) with sensitive fields and credential-looking
    values replaced by REDACTED, long strings cut and large collections shortened."""
    if depth > _DEPTH_MAX:
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i == _ITEMS_MAX:
                out["…"] = f"{len(value) - _ITEMS_MAX} more fields"
                break
            name = _clean(str(key), 100)
            out[name] = REDACTED if is_sensitive_name(name) else redact(item, depth + 1)
        return out
    if isinstance(value, list):
        items = [redact(item, depth + 1) for item in value[:_ITEMS_MAX]]
        return [*items, f"… {len(value) - _ITEMS_MAX} more"] if len(value) > _ITEMS_MAX else items
    if isinstance(value, str):
        return REDACTED if _SENSITIVE_VALUE.search(value) else _clean(value, _TEXT_MAX)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return _clean(str(value), _TEXT_MAX)


def _parse_body(content_type: str, body: bytes) -> Any:
    """The body's fields (JSON or a form), or None when it is neither or unreadable."""
    try:
        if content_type.startswith("application/json") or content_type.endswith("+json"):
            return json.loads(body)
        if content_type.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        return None
    return None


async def _read_body(request: Request) -> tuple[Any, int | None]:
    """The parsed body (None if not summarised) and its size in bytes (None if unknown);
    read only when small and of a known length (Starlette hands it on to the route)."""
    length_header = request.headers.get("content-length")
    try:
        length = int(length_header) if length_header is not None else None
    except ValueError:
        length = None
    content_type = request.headers.get("content-type", "").lower()
    parseable = "json" in content_type or "x-www-form-urlencoded" in content_type
    if length is None or length == 0 or length > BODY_SUMMARY_MAX or not parseable:
        return None, length
    return _parse_body(content_type, await request.body()), length


def request_summary(
    request: Request, parsed: Any, length: int | None, status: int
) -> dict[str, Any]:
    """The audit detail of a request: status, redacted query and body."""
    detail: dict[str, Any] = {"status": status}
    if request.query_params:
        detail["query"] = redact(dict(request.query_params))
    if parsed is not None:
        detail["body"] = redact(parsed)
    elif length:
        detail["body_bytes"] = length
        detail["content_type"] = _clean(request.headers.get("content-type", ""), 100)
    return detail


def _actor(request: Request, parsed: Any, action_path: str) -> str:
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return _clean(str(principal.username), 200) or "anonymous"
    named = getattr(request.state, "audit_actor", None)
    if isinstance(named, str) and named.strip():
        return _clean(named.strip(), 200)
    if action_path.endswith(LOGIN_SUFFIXES) and isinstance(parsed, dict):
        tried = parsed.get("username")
        if isinstance(tried, str) and tried.strip():
            return _clean(tried.strip(), 200)
    return "anonymous"


def _route_path(request: Request) -> str:
    """The matched route's template with the routers' prefixes (`/api/v1/x/{name}`), or
    the path itself when no route matched."""
    path = request.url.path
    template = getattr(request.scope.get("route"), "path", None)
    if not isinstance(template, str) or not template or ":path}" in template:
        return _clean(path, 150)
    # the route's template is the end of the path (its own segments): the prefixes of the
    # routers it was included through are the segments before them
    parts = path.split("/")
    prefix = "/".join(parts[: max(len(parts) - template.count("/"), 0)])
    return _clean(prefix + template, 150)


async def audit_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Answer the request, then append its audit record (state-changing methods only)."""
    method = request.method.upper()
    if method not in STATE_CHANGING:
        return await call_next(request)
    parsed, length = await _read_body(request)
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
    finally:
        path = _route_path(request)
        params = request.scope.get("path_params") or {}
        target = "&".join(f"{_clean(str(k), 50)}={_clean(str(v), 200)}" for k, v in params.items())
        append = functools.partial(
            request.app.state.service.audit.append,
            _actor(request, parsed, path),
            f"{method} {path}",
            target,
            request_summary(request, parsed, length, status),
            request.client.host if request.client else None,
        )
        try:
            await anyio.to_thread.run_sync(append)
        except Exception:
            log.exception("the audit record of %s %s could not be appended", method, path)
    return response
