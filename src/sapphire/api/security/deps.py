"""The FastAPI dependencies every route declares: who is calling (`Principal`) and what
they may do (`require("read" | "trade" | "admin")`, `second_factor`).

Credentials come in the `Authorization` header only: `Bearer <access JWT>` or
`Bearer sk_<api key>` (`X-API-Key: sk_...` is accepted too). Scopes: a viewer has `read`,
a trader `read` and `trade`, an admin all three; an API key has the scopes it was made
with (never more than its owner's role allows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status

Scope = Literal["read", "trade", "admin"]
Role = Literal["viewer", "trader", "admin"]

#: the scopes each role holds
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "trade"}),
    "admin": frozenset({"read", "trade", "admin"}),
}

#: the header a sensitive action's current TOTP code (or a recovery code) comes in
TOTP_HEADER = "X-Sapphire-TOTP"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user through an access token, or a user's API key."""

    user_id: int
    username: str
    role: str
    scopes: frozenset[str]
    via: Literal["token", "api_key"]
    key_id: int | None = None  # the API key's id when via == "api_key"
    session_id: str | None = None  # the refresh-token family when via == "token"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _credential(request: Request) -> str:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token or API key>'")
        return value.strip()
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    raise _unauthorized("not authenticated: send 'Authorization: Bearer <token or API key>'")


def authenticated(request: Request) -> Principal:
    """The caller, or 401 (no, malformed, expired, revoked or forged credentials)."""
    auth = request.app.state.service.auth
    principal: Principal = auth.principal_from_bearer(_credential(request))
    request.state.principal = principal
    return principal


def require(scope: Scope):  # type: ignore[no-untyped-def]
    """A dependency: the caller if it holds `scope`, else 401 (unauthenticated) / 403."""

    def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this needs the '{scope}' scope; the caller has "
                f"{', '.join(sorted(principal.scopes)) or 'none'}",
            )
        return principal

    dependency.__name__ = f"require_{scope}"
    dependency.required_scope = scope  # type: ignore[attr-defined]  # read by the route audit
    return dependency


def second_factor(request: Request, principal: Principal) -> None:
    """Refuse a sensitive action (403) unless a user's session sends a current, unused
    TOTP code (or a recovery code) in `X-Sapphire-TOTP`; API keys cannot do them."""
    if principal.via != "token":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="this action needs a user session, not an API key"
        )
    code = request.headers.get(TOTP_HEADER.lower())
    if not code:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this action needs a second factor: the current TOTP code in {TOTP_HEADER}",
        )
    request.app.state.service.auth.check_second_factor(principal.user_id, code.strip())
