"""The auth and users routes over HTTP (a small app mounting the two routers under /api/v1,
as the service does): login, refresh with reuse detection, logout, /auth/me, TOTP,
API keys and the admin's user management with its second factor; every route but login
and refresh declares a scope."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent / "security"))
from auth_helpers import PASSWORD, SECRET, Clock, cheap_passwords, totp_now

from sapphire.api.routes import auth as auth_routes
from sapphire.api.routes import users as users_routes
from sapphire.api.security.deps import TOTP_HEADER
from sapphire.api.security.service import LOGIN_FAILED, AuthService
from sapphire.store import Store

API = "/api/v1"


class Harness:
    """The app, its client, the auth service and the principals the middleware saw."""

    def __init__(self, auth: AuthService, clock: Clock) -> None:
        self.auth, self.clock = auth, clock
        self.seen: list[Any] = []
        app = FastAPI()
        for module in (auth_routes, users_routes):
            app.include_router(module.router, prefix=API)
        app.state.service = SimpleNamespace(auth=auth)

        @app.middleware("http")
        async def record_principal(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            self.seen.append(getattr(request.state, "principal", None))
            return response

        self.app = app
        self.client = TestClient(app)

    def login(self, username: str, totp_secret: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": PASSWORD}
        if totp_secret:
            body["totp_code"] = totp_now(totp_secret, self.clock)
        answer = self.client.post(f"{API}/auth/login", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def admin(self, name: str = "root") -> tuple[dict[str, str], str]:
        """A logged-in admin with TOTP: its headers and its TOTP seed."""
        _, enrolment = self.auth.accounts.create(name, PASSWORD, "admin", enrol_totp=True)
        assert enrolment is not None
        tokens = self.login(name, enrolment.secret)
        self.clock.advance(30)  # the login used this step's code
        return {"Authorization": f"Bearer {tokens['access_token']}"}, enrolment.secret

    def user(self, name: str, role: str) -> dict[str, str]:
        self.auth.accounts.create(name, PASSWORD, role)
        return {"Authorization": f"Bearer {self.login(name)['access_token']}"}

    def totp(self, headers: dict[str, str], secret: str) -> dict[str, str]:
        """`headers` with a fresh TOTP code (the clock moves on a step each time)."""
        code = totp_now(secret, self.clock)
        self.clock.advance(30)
        return {**headers, TOTP_HEADER: code}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    clock = Clock()
    with Store(f"sqlite:///{tmp_path / 'api.db'}") as store:
        yield Harness(AuthService(store, SECRET, passwords=cheap_passwords(), clock=clock), clock)


def test_login_then_me(h: Harness) -> None:
    alice = h.user("alice", "trader")
    me = h.client.get(f"{API}/auth/me", headers=alice)
    assert me.status_code == 200
    body = me.json()
    assert {k: body[k] for k in ("username", "role", "scopes", "via", "totp_enabled")} == {
        "username": "alice", "role": "trader", "scopes": ["read", "trade"], "via": "token",
        "totp_enabled": False,
    }  # fmt: skip
    assert body["session_id"] and body["api_key_id"] is None
    # the login told the middleware (the audit trail) who logged in
    assert h.seen[0] is not None and h.seen[0].username == "alice"
    assert h.seen[-1].username == "alice"


def test_login_answers(h: Harness) -> None:
    h.auth.accounts.create("alice", PASSWORD, "trader")
    tokens = h.login("alice")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_expires_in"] == 14 * 86400
    wrong = h.client.post(f"{API}/auth/login", json={"username": "alice", "password": "nope"})
    unknown = h.client.post(f"{API}/auth/login", json={"username": "zed", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": LOGIN_FAILED}
    assert wrong.headers["www-authenticate"] == "Bearer"
    extra = {"username": "alice", "password": PASSWORD, "admin": True}
    assert h.client.post(f"{API}/auth/login", json=extra).status_code == 422


def test_no_or_bad_credentials_answer_401(h: Harness) -> None:
    assert h.client.get(f"{API}/auth/me").status_code == 401
    for header in ("Bearer nonsense", "Basic abc", "Bearer sk_short"):
        answer = h.client.get(f"{API}/auth/me", headers={"Authorization": header})
        assert answer.status_code == 401 and isinstance(answer.json()["detail"], str)


def test_refresh_rotation_reuse_and_logout(h: Harness) -> None:
    h.auth.accounts.create("alice", PASSWORD, "trader")
    first = h.login("alice")
    second = h.client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    fresh = second.json()
    assert fresh["session_id"] == first["session_id"]
    reused = h.client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and "used already" in reused.json()["detail"]
    headers = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert h.client.get(f"{API}/auth/me", headers=headers).status_code == 401  # family revoked
    again = h.login("alice")
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    out = h.client.post(f"{API}/auth/logout", headers=headers)
    assert out.status_code == 200 and out.json() == {"session_id": again["session_id"]}
    assert h.client.get(f"{API}/auth/me", headers=headers).status_code == 401
    dead = h.client.post(f"{API}/auth/refresh", json={"refresh_token": again["refresh_token"]})
    assert dead.status_code == 401
    access = h.client.post(f"{API}/auth/refresh", json={"refresh_token": again["access_token"]})
    assert access.status_code == 401 and "'access' token was sent" in access.json()["detail"]


def test_totp_enrol_confirm_and_disable(h: Harness) -> None:
    alice = h.user("alice", "trader")
    enrol = h.client.post(f"{API}/auth/totp/enroll", headers=alice)
    assert enrol.status_code == 200
    secret = enrol.json()["secret"]
    assert enrol.json()["otpauth_uri"].startswith("otpauth://totp/Sapphire:alice?secret=")
    bad = h.client.post(f"{API}/auth/totp/confirm", headers=alice, json={"code": "000000"})
    assert bad.status_code == 400 and "does not match" in bad.json()["detail"]
    ok = h.client.post(
        f"{API}/auth/totp/confirm", headers=alice, json={"code": totp_now(secret, h.clock)}
    )
    assert ok.status_code == 200 and len(ok.json()["recovery_codes"]) == 10
    assert h.client.get(f"{API}/auth/me", headers=alice).json()["totp_enabled"] is True
    assert h.client.post(f"{API}/auth/totp/enroll", headers=alice).status_code == 409
    # login now needs the code
    no_code = h.client.post(f"{API}/auth/login", json={"username": "alice", "password": PASSWORD})
    assert no_code.status_code == 401 and "second factor" in no_code.json()["detail"]
    recovery = ok.json()["recovery_codes"][0]
    off = h.client.post(f"{API}/auth/totp/disable", headers=alice, json={"code": recovery})
    assert off.status_code == 200 and off.json() == {"totp_enabled": False}
    assert (
        h.client.post(
            f"{API}/auth/totp/disable", headers=alice, json={"code": recovery}
        ).status_code
        == 409
    )


def test_api_keys_over_http(h: Harness) -> None:
    alice = h.user("alice", "trader")
    expires = datetime.fromtimestamp(h.clock.now // 10**9 + 30 * 86400, UTC).replace(microsecond=0)
    made = h.client.post(
        f"{API}/auth/api-keys",
        headers=alice,
        json={"name": "bot", "scopes": ["read", "trade"], "expires_at": expires.isoformat()},
    )
    assert made.status_code == 201, made.text
    created = made.json()
    key = created["key"]
    assert key.startswith("sk_") and created["prefix"] == key[:11]
    assert datetime.fromisoformat(created["expires_at"]) == expires
    listed = h.client.get(f"{API}/auth/api-keys", headers=alice).json()
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    by_key = {"Authorization": f"Bearer {key}"}
    me = h.client.get(f"{API}/auth/me", headers=by_key).json()
    assert (me["via"], me["api_key_id"], me["scopes"]) == (
        "api_key",
        created["id"],
        ["read", "trade"],
    )
    assert h.client.get(f"{API}/auth/me", headers={"X-API-Key": key}).status_code == 200
    # a key cannot manage TOTP or make keys, and cannot log out
    assert h.client.post(f"{API}/auth/totp/enroll", headers=by_key).status_code == 403
    assert (
        h.client.post(
            f"{API}/auth/api-keys", headers=by_key, json={"name": "x", "scopes": ["read"]}
        ).status_code
        == 403
    )
    assert h.client.post(f"{API}/auth/logout", headers=by_key).status_code == 400
    # scope beyond the role, unknown scope, naive expiry
    beyond = h.client.post(
        f"{API}/auth/api-keys", headers=alice, json={"name": "x", "scopes": ["admin"]}
    )
    assert beyond.status_code == 403 and "cannot give a key 'admin'" in beyond.json()["detail"]
    for body in (
        {"name": "x", "scopes": ["withdraw"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"},  # no zone
        {"name": "x", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00Z"},  # too far
        {"name": "x", "scopes": ["read"], "expires_at": "2000-01-01T00:00:00Z"},  # past
    ):
        assert h.client.post(f"{API}/auth/api-keys", headers=alice, json=body).status_code == 422
    gone = h.client.delete(f"{API}/auth/api-keys/{created['id']}", headers=alice)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert h.client.get(f"{API}/auth/me", headers=by_key).status_code == 401
    assert h.client.delete(f"{API}/auth/api-keys/{created['id']}", headers=alice).status_code == 409
    assert h.client.delete(f"{API}/auth/api-keys/999", headers=alice).status_code == 404


def test_an_admin_key_needs_the_second_factor(h: Harness) -> None:
    admin, secret = h.admin()
    body = {"name": "ops", "scopes": ["admin"]}
    refused = h.client.post(f"{API}/auth/api-keys", headers=admin, json=body)
    assert refused.status_code == 403 and TOTP_HEADER in refused.json()["detail"]
    made = h.client.post(f"{API}/auth/api-keys", headers=h.totp(admin, secret), json=body)
    assert made.status_code == 201 and made.json()["scopes"] == ["admin"]


def test_users_need_an_admin_with_totp(h: Harness) -> None:
    viewer = h.user("vera", "viewer")
    assert h.client.get(f"{API}/users", headers=viewer).status_code == 403
    no_totp = h.user("plain", "admin")
    answer = h.client.get(f"{API}/users", headers=no_totp)
    assert answer.status_code == 403 and "'admin' scope" in answer.json()["detail"]
    assert h.client.get(f"{API}/users").status_code == 401
    admin, _ = h.admin()
    users = h.client.get(f"{API}/users", headers=admin)
    assert users.status_code == 200
    assert [u["username"] for u in users.json()] == ["vera", "plain", "root"]
    assert set(users.json()[0]) == {
        "id", "username", "role", "disabled", "totp_enabled", "locked_until", "created_at",
        "updated_at",
    }  # fmt: skip


def test_admin_manages_users_with_a_second_factor(h: Harness) -> None:
    admin, secret = h.admin()
    body = {"username": "Bob", "password": PASSWORD, "role": "trader"}
    no_code = h.client.post(f"{API}/users", headers=admin, json=body)
    assert no_code.status_code == 403 and "second factor" in no_code.json()["detail"]
    wrong = h.client.post(f"{API}/users", headers={**admin, TOTP_HEADER: "000000"}, json=body)
    assert wrong.status_code == 403 and "wrong or was used" in wrong.json()["detail"]
    made = h.client.post(f"{API}/users", headers=h.totp(admin, secret), json=body)
    assert made.status_code == 201 and made.json()["username"] == "bob"
    bob_id = made.json()["id"]
    again = h.client.post(f"{API}/users", headers=h.totp(admin, secret), json=body)
    assert again.status_code == 409 and again.json() == {"detail": "user 'bob' already exists"}
    short = {**body, "username": "carol", "password": "short"}
    assert (
        h.client.post(f"{API}/users", headers=h.totp(admin, secret), json=short).status_code == 422
    )
    bob = {"Authorization": f"Bearer {h.login('bob')['access_token']}"}
    # change the role (second factor), and the change applies to bob's live token
    patched = h.client.patch(
        f"{API}/users/{bob_id}", headers=h.totp(admin, secret), json={"role": "viewer"}
    )
    assert patched.status_code == 200 and patched.json()["role"] == "viewer"
    assert h.client.get(f"{API}/auth/me", headers=bob).json()["scopes"] == ["read"]
    assert (
        h.client.patch(f"{API}/users/{bob_id}", headers=admin, json={"disabled": True}).status_code
        == 403
    )
    revoked = h.client.post(f"{API}/users/{bob_id}/revoke-sessions", headers=admin)
    assert revoked.status_code == 200 and revoked.json() == {
        "user_id": bob_id,
        "sessions_revoked": 1,
    }
    assert h.client.get(f"{API}/auth/me", headers=bob).status_code == 401
    assert h.client.post(f"{API}/users/999/revoke-sessions", headers=admin).status_code == 404
    assert (
        h.client.patch(
            f"{API}/users/999", headers=h.totp(admin, secret), json={"role": "viewer"}
        ).status_code
        == 404
    )
    root_id = h.client.get(f"{API}/auth/me", headers=admin).json()["id"]
    last = h.client.patch(
        f"{API}/users/{root_id}", headers=h.totp(admin, secret), json={"disabled": True}
    )
    assert last.status_code == 409 and "last enabled admin" in last.json()["detail"]
    disabled = h.client.patch(
        f"{API}/users/{bob_id}", headers=h.totp(admin, secret), json={"disabled": True}
    )
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True


def test_every_route_declares_a_scope_but_login_and_refresh() -> None:
    public, count = set(), 0
    for route in [*auth_routes.router.routes, *users_routes.router.routes]:
        assert isinstance(route, APIRoute)
        count += 1
        scopes = {getattr(d.call, "required_scope", None) for d in route.dependant.dependencies} - {
            None
        }
        if not scopes:
            public.add(route.path)
        if route.path.startswith("/users"):
            assert scopes == {"admin"}, route.path
        else:
            assert scopes <= {"read"}, route.path
    assert public == {"/auth/login", "/auth/refresh"}
    assert count == 14


def test_the_openapi_has_examples_for_every_request_body(h: Harness) -> None:
    schema = h.app.openapi()
    components = schema["components"]["schemas"]
    for name in ("LoginRequest", "RefreshRequest", "TotpCodeRequest", "ApiKeyRequest",
                 "UserCreateRequest", "UserUpdateRequest"):  # fmt: skip
        assert components[name].get("examples"), name
        assert components[name].get("additionalProperties") is False, name
    assert "404" in schema["paths"][f"{API}/users/{{user_id}}"]["patch"]["responses"]
