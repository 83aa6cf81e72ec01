"""/api/v1/exchange-keys: listing needs the admin scope, adding, replacing and removing
also a second factor from a user session; no response (success or error) and no log line
or audit record ever holds the secret, or the whole API key.

The app here is a small one with the exchange-key router, `audit_requests` and a fake
authentication: bearer "admin" / "viewer" / API key "admin-key"; TOTP code 123456.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from sapphire.api.audit_trail import audit_requests
from sapphire.api.routes import exchange_keys
from sapphire.api.security.deps import ROLE_SCOPES, TOTP_HEADER, Principal
from sapphire.compliance.audit import AuditLog
from sapphire.store import Store
from sapphire.store.keyvault import KdfParams, KeyVault

KEY, SECRET = "BybitKey00000007Qx2", "Zq9vWw8Rr7Tt6Yy5Uu4-the-secret"
NEW_KEY, NEW_SECRET = "BybitKey00000009Kd1", "Aa1Bb2Cc3Dd4Ee5-new-secret"
PRINCIPALS = {
    "admin": Principal(1, "alice", "admin", ROLE_SCOPES["admin"], "token"),
    "viewer": Principal(2, "victor", "viewer", ROLE_SCOPES["viewer"], "token"),
    "trader": Principal(3, "tina", "trader", ROLE_SCOPES["trader"], "token"),
    "admin-key": Principal(1, "alice", "admin", ROLE_SCOPES["admin"], "api_key", key_id=9),
}
ADMIN = {"Authorization": "Bearer admin"}
ADMIN_2FA = {**ADMIN, TOTP_HEADER: "123456"}
URL = "/api/v1/exchange-keys"


class FakeAuth:
    def principal_from_bearer(self, credential: str) -> Principal:
        if credential not in PRINCIPALS:
            raise HTTPException(401, detail="invalid credentials")
        return PRINCIPALS[credential]

    def check_second_factor(self, user_id: int, code: str) -> None:
        if code != "123456":
            raise HTTPException(403, detail="the second factor is wrong")


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[KeyVault]:
    with Store(f"sqlite:///{tmp_path / 'keys.db'}") as store:
        yield KeyVault(store, b"k" * 32, kdf=KdfParams(time_cost=1, memory_kib=8192, parallelism=1))


@pytest.fixture
def client(vault: KeyVault) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.service = SimpleNamespace(
        store=vault.store, audit=AuditLog(vault.store), vault=vault, auth=FakeAuth()
    )
    app.include_router(exchange_keys.router, prefix="/api/v1")
    app.middleware("http")(audit_requests)
    with TestClient(app) as c:
        yield c


def _new(name: str = "bybit-test", **fields: Any) -> dict[str, Any]:
    return {
        "name": name, "exchange": "bybit", "env": "testnet", "api_key": KEY,
        "api_secret": SECRET, **fields,
    }  # fmt: skip


def _no_secret(text: str) -> None:
    for secret in (SECRET, NEW_SECRET, KEY, NEW_KEY):
        assert secret not in text


def test_listing_needs_admin_and_shows_keys_masked(client: TestClient, vault: KeyVault) -> None:
    vault.add("bybit-test", "bybit", "testnet", KEY, SECRET)
    assert client.get(URL).status_code == 401
    for who in ("viewer", "trader"):
        assert client.get(URL, headers={"Authorization": f"Bearer {who}"}).status_code == 403
    answer = client.get(URL, headers=ADMIN)
    assert answer.status_code == 200
    (shown,) = answer.json()
    assert shown["name"] == "bybit-test" and shown["key_hint"] == "****7Qx2"
    assert set(shown) == {"name", "exchange", "env", "key_hint", "created", "updated"}
    assert shown["created"].endswith("Z")
    _no_secret(answer.text)


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "not authenticated"),
        ({"Authorization": "Bearer trader", TOTP_HEADER: "123456"}, 403, "'admin' scope"),
        (ADMIN, 403, "needs a second factor"),
        ({**ADMIN, TOTP_HEADER: "000000"}, 403, "the second factor is wrong"),
        ({"Authorization": "Bearer admin-key", TOTP_HEADER: "123456"}, 403, "not an API key"),
    ],
)
def test_changing_keys_needs_admin_and_a_second_factor(
    client: TestClient, vault: KeyVault, headers: dict[str, str], status: int, detail: str
) -> None:
    vault.add("existing", "bybit", "testnet", KEY, SECRET)
    for method, url, body in (
        ("POST", URL, _new()),
        ("PUT", f"{URL}/existing", {"api_key": NEW_KEY, "api_secret": NEW_SECRET}),
        ("DELETE", f"{URL}/existing", None),
    ):
        answer = client.request(method, url, json=body, headers=headers)
        assert answer.status_code == status, (method, answer.text)
        assert detail in answer.json()["detail"]
    assert [k.name for k in vault.list()] == ["existing"]
    assert vault.decrypt("existing") == (KEY, SECRET)  # unchanged


def test_add_replace_remove_with_a_second_factor(client: TestClient, vault: KeyVault) -> None:
    added = client.post(URL, json=_new(), headers=ADMIN_2FA)
    assert added.status_code == 201, added.text
    assert added.json()["key_hint"] == "****7Qx2" and added.json()["env"] == "testnet"
    assert vault.decrypt("bybit-test") == (KEY, SECRET)
    again = client.post(URL, json=_new(), headers=ADMIN_2FA)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]

    body = {"api_key": NEW_KEY, "api_secret": NEW_SECRET, "env": "demo"}
    replaced = client.put(f"{URL}/bybit-test", json=body, headers=ADMIN_2FA)
    assert replaced.status_code == 200 and replaced.json()["key_hint"] == "****9Kd1"
    assert replaced.json()["env"] == "demo" and vault.decrypt("bybit-test") == (NEW_KEY, NEW_SECRET)
    missing = client.put(f"{URL}/nope", json=body, headers=ADMIN_2FA)
    assert missing.status_code == 404 and "no exchange key named 'nope'" in missing.json()["detail"]

    removed = client.delete(f"{URL}/bybit-test", headers=ADMIN_2FA)
    assert removed.status_code == 204 and removed.content == b""
    assert vault.list() == []
    assert client.delete(f"{URL}/bybit-test", headers=ADMIN_2FA).status_code == 404
    for answer in (added, again, replaced, missing, removed):
        _no_secret(answer.text)


@pytest.mark.parametrize(
    "body",
    [
        _new(env="prod"),  # a bad field beside the secret
        _new(name="bad name!"),
        {k: v for k, v in _new().items() if k != "env"},  # missing: its error holds the body
        _new(api_secret=SECRET * 20),  # the secret itself too long
        _new(extra_field=SECRET),
        _new(api_secret=SECRET + " "),  # refused by the vault, not by the schema
    ],
    ids=["env", "name", "missing", "long-secret", "extra", "padded"],
)
def test_a_refused_body_is_never_echoed(
    client: TestClient, vault: KeyVault, body: dict[str, Any]
) -> None:
    answer = client.post(URL, json=body, headers=ADMIN_2FA)
    assert answer.status_code == 422, answer.text
    _no_secret(answer.text)
    assert vault.list() == []


def test_no_log_line_or_audit_record_holds_a_secret(
    client: TestClient, vault: KeyVault, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post(URL, json=_new(), headers=ADMIN_2FA)
        client.post(URL, json=_new(env="prod"), headers=ADMIN_2FA)
        client.put(
            f"{URL}/bybit-test", json={"api_key": NEW_KEY, "api_secret": NEW_SECRET},
            headers=ADMIN_2FA,
        )  # fmt: skip
        client.delete(f"{URL}/bybit-test", headers=ADMIN_2FA)
    _no_secret(caplog.text)
    records = AuditLog(vault.store).records()
    assert [(r.actor, r.action, r.target, r.detail["status"]) for r in records] == [
        ("alice", "POST /api/v1/exchange-keys", "", 201),
        ("alice", "POST /api/v1/exchange-keys", "", 422),
        ("alice", "PUT /api/v1/exchange-keys/{name}", "name=bybit-test", 200),
        ("alice", "DELETE /api/v1/exchange-keys/{name}", "name=bybit-test", 204),
    ]
    body = records[0].detail["body"]
    assert body["name"] == "bybit-test" and body["env"] == "testnet"
    assert body["api_key"] == body["api_secret"] == "[redacted]"
    with vault.store.engine.connect() as conn:
        _no_secret(str(conn.execute(sa.text("SELECT * FROM audit_log")).all()))


# -- the whole service (`create_app`, the `api` fixture of conftest.py) ----------------------


def test_the_service_audits_logins_and_key_changes_without_secrets(api: Any) -> None:
    """Through the real auth (tokens, TOTP), the middleware stack and the vault that
    `create_app` builds: a failed and a good login, a key added and removed, then the
    log read and verified by the admin."""
    client, admin = api.client, api.users["admin"]
    wrong = {"username": "admin1", "password": "not the password", "totp_code": "000000"}
    assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    added = client.post(URL, json=_new(), headers=api.totp())
    assert added.status_code == 201, added.text
    assert api.service.vault.decrypt("bybit-test") == (KEY, SECRET)
    assert client.post(URL, json=_new(), headers=admin.headers).status_code == 403  # no TOTP
    assert client.delete(f"{URL}/bybit-test", headers=api.totp()).status_code == 204

    page = client.get("/api/v1/audit", params={"order": "asc"}, headers=admin.headers)
    assert page.status_code == 200
    records = page.json()["records"]
    assert [(r["actor"], r["action"], r["detail"]["status"]) for r in records] == [
        ("admin1", "POST /api/v1/auth/login", 401),
        ("admin1", "POST /api/v1/exchange-keys", 201),
        ("admin1", "POST /api/v1/exchange-keys", 403),
        ("admin1", "DELETE /api/v1/exchange-keys/{name}", 204),
    ]
    assert records[0]["detail"]["body"]["password"] == "[redacted]"
    assert records[1]["detail"]["body"]["api_secret"] == "[redacted]"
    _no_secret(page.text)
    assert "not the password" not in page.text and admin.access_token not in page.text
    verified = client.get("/api/v1/audit/verify", headers=admin.headers).json()
    assert verified["ok"] is True and verified["checked"] == 4
