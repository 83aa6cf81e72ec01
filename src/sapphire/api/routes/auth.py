"""The /api/v1 routes of auth: login, token refresh, logout, the caller, TOTP and API keys.

Login and refresh are public; every other route needs the `read` scope (any user), and
TOTP and key management need a user session (not an API key). A key with the `admin`
scope is made only with a second factor (`X-Sapphire-TOTP`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.accounts import role_scopes, to_ns, utc
from sapphire.api.security.deps import Principal, require, second_factor
from sapphire.api.security.service import AuthService, TokenPair
from sapphire.store.auth_repo import ApiKeyRecord

__all__ = ["ROUTE_ERRORS", "RowId", "error_answers", "router"]

router = APIRouter(tags=["auth"])

ScopeName = Literal["read", "trade", "admin"]
Reader = Annotated[Principal, Depends(require("read"))]
#: a stored row's id in a path: a positive 64-bit integer (a larger one is a 422, not a
#: database overflow)
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The row's id.")]

#: what the route-specific error answers mean (the app documents 401, 403, 422, 429...)
ROUTE_ERRORS = {
    401: "Wrong, expired, revoked or reused credentials (the message never says which part).",
    400: "The request cannot be carried out as sent (the message says why).",
    404: "No such resource (or not one the caller may see).",
    409: "The resource is not in a state that allows this (the message says why).",
}


def _auth(request: Request) -> AuthService:
    auth: AuthService = request.app.state.service.auth
    return auth


def _user_session(principal: Principal) -> None:
    if principal.via != "token":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this needs a user session (log in), not an API key",
        )


def error_answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the route-specific error answers (body `{"detail": "..."}`)."""
    return {code: {"model": ErrorDetail, "description": ROUTE_ERRORS[code]} for code in codes}


# -- models -----------------------------------------------------------------------------------


class LoginRequest(BaseModel):
    """A username and password, and the second factor once the user has TOTP on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"username": "alice", "password": "correct horse battery", "totp_code": "492039"}
            ]
        },
    )

    username: str = Field(min_length=1, max_length=64, description="The user's name.")
    password: str = Field(min_length=1, max_length=1024, description="The user's password.")
    totp_code: str | None = Field(
        default=None,
        max_length=32,
        description="The authenticator app's current 6-digit code, or an unused recovery "
        "code; needed once the user has TOTP enabled.",
    )


class RefreshRequest(BaseModel):
    """A refresh token to exchange (once) for a new pair."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "eyJhbGciOiJIUzI1NiIs..."}]},
    )

    refresh_token: str = Field(min_length=1, max_length=4096, description="A refresh token.")


class TokenResponse(BaseModel):
    """A new session's (or a refreshed session's) tokens."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs...",
                    "refresh_token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_expires_in": 1209600,
                    "session_id": "b0cTe8Kq3xM1Jw2YfQ9rLg",
                }
            ]
        }
    )

    access_token: str = Field(description="Send as `Authorization: Bearer <access_token>`.")
    refresh_token: str = Field(
        description="Exchange at POST /api/v1/auth/refresh for a new pair; works once."
    )
    token_type: Literal["bearer"] = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")
    session_id: str = Field(description="The session (refresh-token family) these belong to.")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        """The response for a new pair."""
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.access_expires_in,
            refresh_expires_in=pair.refresh_expires_in,
            session_id=pair.session_id,
        )


class LogoutResponse(BaseModel):
    """The session that ended."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"session_id": "b0cTe8Kq3xM1Jw2YfQ9rLg"}]}
    )

    session_id: str = Field(description="The ended session; its tokens no longer work.")


class MeResponse(BaseModel):
    """Who the caller is and what it may do."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "username": "alice",
                    "role": "admin",
                    "scopes": ["admin", "read", "trade"],
                    "via": "token",
                    "totp_enabled": True,
                    "api_key_id": None,
                    "session_id": "b0cTe8Kq3xM1Jw2YfQ9rLg",
                }
            ]
        }
    )

    id: int = Field(description="The user's id.")
    username: str = Field(description="The user's name.")
    role: Literal["viewer", "trader", "admin"] = Field(description="The user's role.")
    scopes: list[ScopeName] = Field(
        description="The scopes this credential holds now (an admin without TOTP has no "
        "`admin`; an API key has at most its own scopes)."
    )
    via: Literal["token", "api_key"] = Field(description="How the caller authenticated.")
    totp_enabled: bool = Field(description="Whether the user has TOTP on.")
    api_key_id: int | None = Field(description="The API key's id when via is `api_key`.")
    session_id: str | None = Field(description="The session's id when via is `token`.")


class TotpEnrolResponse(BaseModel):
    """A new TOTP seed, shown once: add it to an authenticator app, then confirm."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                    "otpauth_uri": "otpauth://totp/Sapphire:alice?secret=JBSWY3DPEHPK3PXPJBSWY3"
                    "DPEHPK3PXP&issuer=Sapphire",
                }
            ]
        }
    )

    secret: str = Field(description="The base32 seed (for typing into an app).")
    otpauth_uri: str = Field(description="The `otpauth://` URI (for a QR code).")


class TotpCodeRequest(BaseModel):
    """A code from the authenticator app (or, to disable TOTP, a recovery code)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "492039"}]})

    code: str = Field(min_length=1, max_length=32, description="The code.")


class RecoveryCodesResponse(BaseModel):
    """TOTP is on; the recovery codes, shown this once (each works once)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"totp_enabled": True, "recovery_codes": ["K7QM-2XHP-9DWA", "..."]}]
        }
    )

    totp_enabled: bool = Field(description="Always true here.")
    recovery_codes: list[str] = Field(
        description="Ten single-use codes to use instead of a TOTP code; store them offline."
    )


class TotpStatusResponse(BaseModel):
    """Whether the user has TOTP on."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"totp_enabled": False}]})

    totp_enabled: bool = Field(description="Whether TOTP is on.")


class ApiKeyRequest(BaseModel):
    """A new API key: a name, its scopes (within the caller's role) and an optional expiry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "grafana reader",
                    "scopes": ["read"],
                    "expires_at": "2027-06-30T00:00:00Z",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100, description="What the key is for.")
    scopes: list[ScopeName] = Field(
        min_length=1, max_length=3, description="A subset of the caller's scopes."
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (ISO-8601 with a zone)."
    )


class ApiKeyResponse(BaseModel):
    """An API key as listed (never its secret)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "name": "grafana reader",
                    "prefix": "sk_Vq3Zr8aB",
                    "scopes": ["read"],
                    "created_at": "2026-12-07T10:00:00Z",
                    "expires_at": "2027-06-30T00:00:00Z",
                    "last_used_at": None,
                    "revoked_at": None,
                }
            ]
        }
    )

    id: int = Field(description="The key's id (for DELETE /api/v1/auth/api-keys/{id}).")
    name: str = Field(description="What the key is for.")
    prefix: str = Field(description="The key's first characters, to recognise it.")
    scopes: list[ScopeName] = Field(description="The scopes it was made with.")
    created_at: datetime = Field(description="When it was made (UTC).")
    expires_at: datetime | None = Field(description="When it stops working (UTC), if ever.")
    last_used_at: datetime | None = Field(description="Its last use (UTC, to the minute).")
    revoked_at: datetime | None = Field(description="When it was revoked (UTC), if it was.")

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyResponse:
        """The listing of a stored key."""
        return cls.model_validate(
            {
                "id": record.id,
                "name": record.name,
                "prefix": record.prefix,
                "scopes": list(record.scopes),
                "created_at": utc(record.ts_created),
                "expires_at": utc(record.ts_expires),
                "last_used_at": utc(record.ts_last_used),
                "revoked_at": utc(record.ts_revoked),
            }
        )


class ApiKeyCreatedResponse(ApiKeyResponse):
    """A new API key with its secret, shown this once."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "name": "grafana reader",
                    "prefix": "sk_Vq3Zr8aB",
                    "scopes": ["read"],
                    "created_at": "2026-12-07T10:00:00Z",
                    "expires_at": None,
                    "last_used_at": None,
                    "revoked_at": None,
                    "key": "sk_Vq3Zr8aB" + "x" * 35,
                }
            ]
        }
    )

    key: str = Field(description="The key: send as `Authorization: Bearer <key>`. Not shown again.")


# -- routes -----------------------------------------------------------------------------------


@router.post(
    "/auth/login", response_model=TokenResponse, responses=error_answers(401), summary="Log in"
)
def login(body: LoginRequest, request: Request) -> TokenResponse:
    """Log in: a new session's access token (15 minutes) and refresh token (14 days)."""
    pair = _auth(request).login(body.username, body.password, body.totp_code)
    user = pair.user  # the audit trail's actor (no credential was sent to authenticate)
    request.state.principal = Principal(
        user.id, user.username, user.role, role_scopes(user), "token", session_id=pair.session_id
    )
    return TokenResponse.of(pair)


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    responses=error_answers(401),
    summary="Refresh a session",
)
def refresh(body: RefreshRequest, request: Request) -> TokenResponse:
    """Exchange a refresh token (once) for a new pair; a reused one ends its session."""
    return TokenResponse.of(_auth(request).refresh(body.refresh_token))


@router.post("/auth/logout", response_model=LogoutResponse, responses=error_answers(400))
def logout(request: Request, principal: Reader) -> LogoutResponse:
    """End the caller's session: its access and refresh tokens stop working."""
    _auth(request).logout(principal)
    assert principal.session_id is not None  # logout refused anything else
    return LogoutResponse(session_id=principal.session_id)


@router.get("/auth/me", response_model=MeResponse)
def me(request: Request, principal: Reader) -> MeResponse:
    """Who the caller is, its role and the scopes it holds now."""
    user = _auth(request).accounts.get(principal.user_id)
    return MeResponse.model_validate(
        {
            "id": user.id,
            "username": user.username,
            "role": user.role,
            "scopes": sorted(principal.scopes),
            "via": principal.via,
            "totp_enabled": user.totp_enabled,
            "api_key_id": principal.key_id,
            "session_id": principal.session_id,
        }
    )


@router.post("/auth/totp/enroll", response_model=TotpEnrolResponse, responses=error_answers(409))
def totp_enroll(request: Request, principal: Reader) -> TotpEnrolResponse:
    """Start TOTP enrolment: a new seed, shown once; confirm it with a code."""
    _user_session(principal)
    enrolment = _auth(request).accounts.enrol_totp(principal.user_id)
    return TotpEnrolResponse(secret=enrolment.secret, otpauth_uri=enrolment.uri)


@router.post(
    "/auth/totp/confirm", response_model=RecoveryCodesResponse, responses=error_answers(400, 409)
)
def totp_confirm(
    body: TotpCodeRequest, request: Request, principal: Reader
) -> RecoveryCodesResponse:
    """Turn TOTP on with a code from the new seed; the recovery codes, shown once."""
    _user_session(principal)
    codes = _auth(request).accounts.confirm_totp(principal.user_id, body.code)
    return RecoveryCodesResponse(totp_enabled=True, recovery_codes=list(codes))


@router.post("/auth/totp/disable", response_model=TotpStatusResponse, responses=error_answers(409))
def totp_disable(body: TotpCodeRequest, request: Request, principal: Reader) -> TotpStatusResponse:
    """Turn TOTP off, proven with a current code or a recovery code (an admin then loses
    the `admin` scope until TOTP is on again)."""
    _user_session(principal)
    _auth(request).accounts.disable_totp(principal.user_id, body.code)
    return TotpStatusResponse(totp_enabled=False)


@router.get("/auth/api-keys", response_model=list[ApiKeyResponse])
def list_api_keys(request: Request, principal: Reader) -> list[ApiKeyResponse]:
    """The caller's API keys (revoked and expired ones too), never their secrets."""
    return [ApiKeyResponse.of(k) for k in _auth(request).api_keys(principal.user_id)]


@router.post(
    "/auth/api-keys",
    response_model=ApiKeyCreatedResponse,
    status_code=status.HTTP_201_CREATED,
)
def create_api_key(
    body: ApiKeyRequest, request: Request, principal: Reader
) -> ApiKeyCreatedResponse:
    """Make an API key for the caller, shown this once; a key with `admin` needs the
    current TOTP code in `X-Sapphire-TOTP`."""
    _user_session(principal)
    if "admin" in body.scopes and "admin" in principal.scopes:  # (else refused below)
        second_factor(request, principal)
    expires = None if body.expires_at is None else to_ns(body.expires_at)
    key, record = _auth(request).create_api_key(
        principal, body.name, body.scopes, expires_ns=expires
    )
    return ApiKeyCreatedResponse(**ApiKeyResponse.of(record).model_dump(), key=key)


@router.delete(
    "/auth/api-keys/{key_id}", response_model=ApiKeyResponse, responses=error_answers(404, 409)
)
def revoke_api_key(key_id: RowId, request: Request, principal: Reader) -> ApiKeyResponse:
    """Revoke one of the caller's API keys (an admin may revoke anyone's): it stops
    working at once."""
    return ApiKeyResponse.of(_auth(request).revoke_api_key(principal, key_id))
