"""The /api/v1 routes of users (admins only): list, create, change role or disable, and
end a user's sessions. Creating a user and changing one (a role is what a user may do)
need a second factor (`X-Sapphire-TOTP`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.routes.auth import RowId, error_answers
from sapphire.api.security.accounts import UserAccounts, utc
from sapphire.api.security.deps import Principal, require, second_factor
from sapphire.api.security.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from sapphire.api.security.service import AuthService
from sapphire.store.auth_repo import UserRecord

__all__ = ["router"]

router = APIRouter(tags=["users"])

Admin = Annotated[Principal, Depends(require("admin"))]
RoleName = Literal["viewer", "trader", "admin"]


def _auth(request: Request) -> AuthService:
    auth: AuthService = request.app.state.service.auth
    return auth


def _accounts(request: Request) -> UserAccounts:
    return _auth(request).accounts


class UserResponse(BaseModel):
    """A user as an admin sees it (never a hash or a TOTP seed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 2,
                    "username": "bob",
                    "role": "trader",
                    "disabled": False,
                    "totp_enabled": True,
                    "locked_until": None,
                    "created_at": "2026-12-07T10:00:00Z",
                    "updated_at": "2026-12-07T10:05:00Z",
                }
            ]
        }
    )

    id: int = Field(description="The user's id.")
    username: str = Field(description="The user's name (lower case).")
    role: RoleName = Field(description="What the user may do: viewer, trader or admin.")
    disabled: bool = Field(description="A disabled user cannot log in; its credentials fail.")
    totp_enabled: bool = Field(description="Whether the user has TOTP on.")
    locked_until: datetime | None = Field(
        description="Until when logins are refused after repeated failures (UTC), if locked."
    )
    created_at: datetime = Field(description="When the user was made (UTC).")
    updated_at: datetime = Field(description="The user's last change (UTC).")

    @classmethod
    def of(cls, user: UserRecord, accounts: UserAccounts) -> UserResponse:
        """The view of a stored user."""
        locked = accounts.locked_until(user)
        return cls.model_validate(
            {
                "id": user.id,
                "username": user.username,
                "role": user.role,
                "disabled": user.disabled,
                "totp_enabled": user.totp_enabled,
                "locked_until": utc(locked),
                "created_at": utc(user.ts_created),
                "updated_at": utc(user.ts_updated),
            }
        )


class UserCreateRequest(BaseModel):
    """A new user: name, initial password and role (the user enrols TOTP itself)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"username": "bob", "password": "a long passphrase", "role": "trader"}]
        },
    )

    username: str = Field(
        min_length=3,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="3-64 letters, digits, '_', '.' or '-' (stored lower case).",
    )
    password: str = Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
    )
    role: RoleName = Field(description="viewer (read), trader (read, trade) or admin (all).")


class UserUpdateRequest(BaseModel):
    """What to change: the role, the disabled flag, or both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "viewer"}, {"disabled": True}]},
    )

    role: RoleName | None = Field(default=None, description="The new role.")
    disabled: bool | None = Field(
        default=None, description="True disables the user and ends its sessions."
    )


class SessionsRevokedResponse(BaseModel):
    """How many of a user's sessions were ended."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user_id": 2, "sessions_revoked": 3}]}
    )

    user_id: int = Field(description="The user.")
    sessions_revoked: int = Field(description="Sessions that had working tokens.")


@router.get("/users", response_model=list[UserResponse])
def list_users(request: Request, principal: Admin) -> list[UserResponse]:
    """Every user, by id."""
    accounts = _accounts(request)
    return [UserResponse.of(u, accounts) for u in accounts.repo.users()]


@router.post(
    "/users",
    response_model=UserResponse,
    status_code=status.HTTP_201_CREATED,
    responses=error_answers(409),
)
def create_user(body: UserCreateRequest, request: Request, principal: Admin) -> UserResponse:
    """Create a user (needs the current TOTP code in `X-Sapphire-TOTP`)."""
    second_factor(request, principal)
    accounts = _accounts(request)
    user, _ = accounts.create(body.username, body.password, body.role)
    return UserResponse.of(user, accounts)


@router.patch("/users/{user_id}", response_model=UserResponse, responses=error_answers(404, 409))
def update_user(
    user_id: RowId, body: UserUpdateRequest, request: Request, principal: Admin
) -> UserResponse:
    """Change a user's role or disable/enable it (needs the current TOTP code in
    `X-Sapphire-TOTP`); disabling ends its sessions; the last enabled admin stays one."""
    second_factor(request, principal)
    accounts = _accounts(request)
    user = accounts.update(user_id, role=body.role, disabled=body.disabled)
    return UserResponse.of(user, accounts)


@router.post(
    "/users/{user_id}/revoke-sessions",
    response_model=SessionsRevokedResponse,
    responses=error_answers(404),
)
def revoke_sessions(user_id: RowId, request: Request, principal: Admin) -> SessionsRevokedResponse:
    """End every session of a user: its access and refresh tokens stop working at once
    (its API keys are revoked one by one with DELETE /api/v1/auth/api-keys/{id})."""
    count = _auth(request).revoke_sessions(user_id)
    return SessionsRevokedResponse(user_id=user_id, sessions_revoked=count)
