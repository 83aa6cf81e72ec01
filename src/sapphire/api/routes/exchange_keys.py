"""The /api/v1 routes of exchange-keys: the exchange API keys in the vault.

Listing needs the admin scope; adding, replacing and removing a key also need a second
factor (a current TOTP code in `X-Sapphire-TOTP`, from a user session). No response ever
holds a secret: a key is shown by name, exchange, environment and the API key's last four
characters, and a validation error never echoes a secret sent (`_NoEchoRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.routes.audit import iso_utc
from sapphire.api.security.deps import Principal, require, second_factor
from sapphire.store.keyvault import (
    ExchangeKeyInfo,
    KeyExistsError,
    KeyNotFoundError,
    KeyVault,
    KeyVaultError,
)

__all__ = ["ExchangeKeyCreate", "ExchangeKeyOut", "ExchangeKeyReplace", "router"]


class _NoEchoRoute(APIRoute):
    """A route whose validation errors show the value sent only for the fields that never
    hold a secret (name, exchange, env): not for `api_key`, `api_secret`, an unknown
    field, or a missing field (whose error carries the whole body)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError([_no_echo(e) for e in exc.errors()]) from None

        return route


_SHOWN_FIELDS = frozenset({"name", "exchange", "env"})


def _no_echo(error: Any) -> Any:
    loc = tuple(error.get("loc", ()))
    shown = error.get("type") != "missing" and bool(loc) and loc[-1] in _SHOWN_FIELDS
    return error if shown else {k: v for k, v in error.items() if k != "input"}


router = APIRouter(tags=["exchange-keys"], route_class=_NoEchoRoute)

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_EXCHANGE_PATTERN = r"^[a-z][a-z0-9]{0,29}$"
Name = Annotated[
    str,
    Path(
        pattern=_NAME_PATTERN,
        description="The key's name: 1..100 letters, digits, '.', '_' or '-'.",
    ),
]
Environment = Literal["testnet", "demo", "mainnet", "local"]


class ExchangeKeyOut(BaseModel):
    """A stored exchange key as it may be shown: never the secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "bybit-testnet", "exchange": "bybit", "env": "testnet",
                    "key_hint": "****7Qx2", "created": "2026-12-07T10:15:02.123456Z",
                    "updated": "2026-12-07T10:15:02.123456Z",
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The key's name.")
    exchange: str = Field(description="The ccxt exchange id.")
    env: str = Field(description="The environment it is for: testnet, demo, mainnet or local.")
    key_hint: str = Field(description="The API key's last four characters, masked.")
    created: str = Field(description="When it was added, ISO-8601 UTC.")
    updated: str = Field(description="When it was last replaced, ISO-8601 UTC.")

    @classmethod
    def of(cls, info: ExchangeKeyInfo) -> ExchangeKeyOut:
        """The response form of a stored key."""
        return cls(
            name=info.name, exchange=info.exchange, env=info.env,
            key_hint=info.key_hint, created=iso_utc(info.ts_created),
            updated=iso_utc(info.ts_updated),
        )  # fmt: skip


class ExchangeKeyCreate(BaseModel):
    """A new exchange key: the API key and its secret (read+trade, never withdraw)."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "bybit-testnet", "exchange": "bybit", "env": "testnet",
                    "api_key": "XXXXXXXXXXXXXX7Qx2", "api_secret": "<the API secret>",
                }
            ]
        },
    )  # fmt: skip

    name: str = Field(
        pattern=_NAME_PATTERN,
        description="A name for the key (1..100 letters, digits, '.', '_' or '-').",
    )
    exchange: str = Field(
        pattern=_EXCHANGE_PATTERN, description="The ccxt exchange id, e.g. 'bybit'."
    )
    env: Environment = Field(description="testnet, demo, mainnet or local.")
    api_key: str = Field(min_length=1, max_length=500, description="The exchange API key.")
    api_secret: str = Field(
        min_length=1, max_length=500, description="Its secret: stored encrypted, never shown."
    )


class ExchangeKeyReplace(BaseModel):
    """New credentials for a stored key (and, optionally, a new exchange or env)."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [{"api_key": "XXXXXXXXXXXXXX9Kd1", "api_secret": "<the new secret>"}]
        },
    )

    api_key: str = Field(min_length=1, max_length=500, description="The new API key.")
    api_secret: str = Field(min_length=1, max_length=500, description="Its secret.")
    exchange: str | None = Field(
        default=None, pattern=_EXCHANGE_PATTERN, description="A new exchange id, if any."
    )
    env: Environment | None = Field(default=None, description="A new environment, if any.")


def _vault(request: Request) -> KeyVault:
    vault: KeyVault = request.app.state.service.vault
    return vault


def _http_error(exc: KeyVaultError) -> HTTPException:
    if isinstance(exc, KeyNotFoundError):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc))
    if isinstance(exc, KeyExistsError):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc))


@router.get("/exchange-keys", response_model=list[ExchangeKeyOut], summary="List the exchange keys")
def list_keys(
    request: Request, _principal: Annotated[Principal, Depends(require("admin"))]
) -> list[ExchangeKeyOut]:
    """Every stored exchange key, masked."""
    return [ExchangeKeyOut.of(info) for info in _vault(request).list()]


@router.post(
    "/exchange-keys",
    response_model=ExchangeKeyOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add an exchange key (second factor)",
    responses={409: {"description": "A key of that name exists."}},
)
def add_key(
    request: Request,
    body: ExchangeKeyCreate,
    principal: Annotated[Principal, Depends(require("admin"))],
) -> ExchangeKeyOut:
    """Store a new key, encrypted; needs the current TOTP code in X-Sapphire-TOTP."""
    second_factor(request, principal)
    try:
        info = _vault(request).add(
            body.name, body.exchange, body.env, body.api_key, body.api_secret
        )
    except KeyVaultError as exc:
        raise _http_error(exc) from None
    return ExchangeKeyOut.of(info)


@router.put(
    "/exchange-keys/{name}",
    response_model=ExchangeKeyOut,
    summary="Replace an exchange key (second factor)",
    responses={404: {"description": "No key of that name."}},
)
def replace_key(
    request: Request,
    name: Name,
    body: ExchangeKeyReplace,
    principal: Annotated[Principal, Depends(require("admin"))],
) -> ExchangeKeyOut:
    """Replace a key's credentials; needs the current TOTP code in X-Sapphire-TOTP."""
    second_factor(request, principal)
    try:
        info = _vault(request).replace(
            name, body.api_key, body.api_secret, exchange=body.exchange, env=body.env
        )
    except KeyVaultError as exc:
        raise _http_error(exc) from None
    return ExchangeKeyOut.of(info)


@router.delete(
    "/exchange-keys/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove an exchange key (second factor)",
    responses={404: {"description": "No key of that name."}},
)
def remove_key(
    request: Request, name: Name, principal: Annotated[Principal, Depends(require("admin"))]
) -> Response:
    """Delete a key; needs the current TOTP code in X-Sapphire-TOTP."""
    second_factor(request, principal)
    try:
        _vault(request).remove(name)
    except KeyVaultError as exc:
        raise _http_error(exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
