"""Fixtures for the API tests: the whole service (`create_app`) on a temporary
SAPPHIRE_HOME with its SQLite store and a signing secret, and a user of each role with an
access token, a refresh token and an API key holding the role's scopes.

```python
def test_something(api: Api) -> None:
    answer = api.client.get("/api/v1/auth/me", headers=api.users["trader"].headers)
    api.client.post("/api/v1/users", json=..., headers=api.totp("admin"))  # + a fresh code
    key = api.key("trader", ["trade"])  # an extra API key with only these scopes
```

`api.clock` is the auth service's clock (the tests move it; TOTP codes follow it); argon2
runs with the cheapest parameters. `make_api(**settings)` builds one with other
`ServiceSettings` (rate limits are generous by default, so route tests never meet them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sapphire.api.app import create_app
from sapphire.api.security import passwords as passwords_module
from sapphire.api.security.deps import ROLE_SCOPES, TOTP_HEADER
from sapphire.api.security.passwords import Passwords
from sapphire.api.security.service import AuthService
from sapphire.api.service import Service
from sapphire.api.settings import ServiceSettings

API = "/api/v1"
#: the test signing secret (64 bytes of hex, as `sapphire users create-admin` makes)
SECRET_TEXT = "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2
SECRET = SECRET_TEXT.encode()
PASSWORD = "correct horse battery staple"
#: limits no route test reaches (the rate-limit tests pass their own)
GENEROUS = "100000/minute"
ROLES = ("viewer", "trader", "admin")


class Clock:
    """Nanoseconds since the epoch, moved by the test (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


def cheap_hasher(**_: Any) -> PasswordHasher:
    """argon2id at the smallest cost (the production one costs ~0.1 s a hash)."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@dataclass
class Caller:
    """A user of the service and its credentials."""

    user_id: int
    username: str
    role: str
    access_token: str
    refresh_token: str
    api_key: str  # holds every scope of the role
    totp_secret: str | None = None  # the admin's (TOTP is on for admins)
    recovery_codes: tuple[str, ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization: Bearer <access token>`."""
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def key_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <API key>`."""
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Api:
    """The app, a client of it, its components and its users."""

    app: FastAPI
    client: TestClient
    clock: Clock
    users: dict[str, Caller] = field(default_factory=dict)

    @property
    def service(self) -> Service:
        service: Service = self.app.state.service
        return service

    def add_user(self, username: str, role: str) -> Caller:
        """A new user of `role` (an admin with TOTP on), logged in, with an API key."""
        auth = self.service.auth
        _, enrolment = auth.accounts.create(username, PASSWORD, role, enrol_totp=role == "admin")
        code = self.code(enrolment.secret) if enrolment else None
        pair = auth.login(username, PASSWORD, code)
        principal = auth.principal_from_bearer(pair.access_token)
        key, _ = auth.create_api_key(principal, f"{username}-key", sorted(ROLE_SCOPES[role]))
        return Caller(
            user_id=pair.user.id,
            username=username,
            role=role,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            api_key=key,
            totp_secret=enrolment.secret if enrolment else None,
            recovery_codes=enrolment.recovery_codes if enrolment else (),
        )

    def code(self, totp_secret: str) -> str:
        """The authenticator's current code; the clock then moves a step on, so the next
        call gives a code that was not used yet."""
        value = pyotp.TOTP(totp_secret).at(self.clock.now / 1e9)
        self.clock.advance(30)
        return value

    def totp(self, role: str = "admin") -> dict[str, str]:
        """The user's headers with a fresh TOTP code (for the sensitive actions)."""
        caller = self.users[role]
        assert caller.totp_secret is not None, f"the {role} has no TOTP"
        return {**caller.headers, TOTP_HEADER: self.code(caller.totp_secret)}

    def key(self, role: str, scopes: list[str]) -> dict[str, str]:
        """Headers with a new API key of the role's user holding only `scopes`."""
        auth = self.service.auth
        principal = auth.principal_from_bearer(self.users[role].access_token)
        key, _ = auth.create_api_key(principal, f"key-{'-'.join(scopes)}", scopes)
        return {"Authorization": f"Bearer {key}"}


def build_api(home: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Api:
    """The service in `home` with its users (see the module docstring)."""
    monkeypatch.setattr(passwords_module, "PasswordHasher", cheap_hasher)
    values: dict[str, Any] = {
        "home": home,
        "rate_limit_user": GENEROUS,
        "rate_limit_ip": GENEROUS,
        "rate_limit_login": GENEROUS,
        "rate_limit_orders": GENEROUS,
        **settings,
    }
    app = create_app(ServiceSettings(**values), environ={"SAPPHIRE_API_SECRET": SECRET_TEXT})
    clock = Clock()
    service: Service = app.state.service
    service.auth = AuthService(
        service.store,
        SECRET,
        access_ttl_s=service.settings.access_ttl_s,
        refresh_ttl_s=service.settings.refresh_ttl_s,
        passwords=Passwords(cheap_hasher()),
        clock=clock,
    )
    api = Api(app=app, client=TestClient(app), clock=clock)
    for role in ROLES:
        api.users[role] = api.add_user(f"{role}1", role)
    return api


@pytest.fixture
def make_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Api]]:
    """Build the service with other settings: `make_api(rate_limit_ip="3/minute")`."""
    made: list[Api] = []

    def make(**settings: Any) -> Api:
        api = build_api(tmp_path / f"home{len(made)}", monkeypatch, **settings)
        api.client.__enter__()  # the app's lifespan, and one event loop for its requests
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """The service with a viewer, a trader and an admin (see the module docstring)."""
    return make_api()
