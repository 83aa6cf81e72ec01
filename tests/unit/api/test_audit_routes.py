"""The audit trail of the service: `audit_requests` appends one record per state-changing
request (who, route template, path parameters, status, a redacted summary, the client's
address) and never a secret; GET /audit reads the log (admin, paged, filtered) and GET
/audit/verify walks the chain.

The app here is a small one with the audit router, the middleware and a fake
authentication (tokens "admin", "viewer", API key "admin-key").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from sapphire.api.audit_trail import audit_requests, redact
from sapphire.api.routes import audit
from sapphire.api.security.deps import ROLE_SCOPES, Principal, require
from sapphire.compliance.audit import AuditLog
from sapphire.store import Store

PASSWORD = "correct horse battery staple"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
PRINCIPALS = {
    "admin": Principal(1, "alice", "admin", ROLE_SCOPES["admin"], "token"),
    "viewer": Principal(2, "victor", "viewer", ROLE_SCOPES["viewer"], "token"),
    "admin-key": Principal(1, "alice", "admin", ROLE_SCOPES["admin"], "api_key", key_id=9),
}


class FakeAuth:
    """Bearer "admin" / "viewer" / "admin-key"; TOTP code 123456."""

    def principal_from_bearer(self, credential: str) -> Principal:
        if credential not in PRINCIPALS:
            raise HTTPException(401, detail="invalid credentials")
        return PRINCIPALS[credential]

    def check_second_factor(self, user_id: int, code: str) -> None:
        if code != "123456":
            raise HTTPException(403, detail="the second factor is wrong")


def _test_routes() -> APIRouter:
    router = APIRouter()

    @router.post("/auth/login")
    async def login(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").startswith("application/json"):
            form: Any = await request.json()
        else:  # a form, read as the route would (python-multipart is not a dependency)
            form = dict(parse_qsl((await request.body()).decode()))
        if form.get("password") != PASSWORD:
            raise HTTPException(401, detail="wrong username or password")
        return {"access_token": TOKEN}

    @router.post("/things/{thing_id}")
    async def make_thing(
        thing_id: int,
        body: dict[str, Any],
        _p: Annotated[Principal, Depends(require("trade"))],
    ) -> dict[str, Any]:
        return {"thread": threading.get_ident(), "thing_id": thing_id}

    @router.get("/things/{thing_id}")
    def read_thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    @router.delete("/things/{thing_id}")
    def boom(thing_id: int) -> None:
        raise RuntimeError("the route failed")

    return router


def make_app(store: Store, vault: object = None) -> FastAPI:
    """The audit and exchange-key routers and a few test routes under /api/v1, behind
    `audit_requests`."""
    from sapphire.api.routes import exchange_keys

    app = FastAPI()
    app.state.service = SimpleNamespace(
        store=store, audit=AuditLog(store), vault=vault, auth=FakeAuth()
    )
    for router in (audit.router, exchange_keys.router, _test_routes()):
        app.include_router(router, prefix="/api/v1")
    app.middleware("http")(audit_requests)
    return app


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'api.db'}") as s:
        yield s


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(make_app(store), raise_server_exceptions=False) as c:
        yield c


def _all_audit_text(store: Store) -> str:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM audit_log")).all()
    return "\n".join(str(tuple(row)) for row in rows)


ADMIN = {"Authorization": "Bearer admin"}


# -- the middleware ------------------------------------------------------------------------


def test_a_state_changing_request_is_audited_with_a_redacted_summary(
    client: TestClient, store: Store
) -> None:
    body = {
        "name": "n1", "password": PASSWORD, "api_key": "AKIA123", "nested": {"token": TOKEN},
        "note": TOKEN, "qty": "0.5", "items": list(range(30)),
    }  # fmt: skip
    answer = client.post("/api/v1/things/42?dry_run=1&secret=s", json=body, headers=ADMIN)
    assert answer.status_code == 200
    (record,) = AuditLog(store).records()
    assert record.actor == "alice" and record.ip == "testclient"
    assert record.action == "POST /api/v1/things/{thing_id}" and record.target == "thing_id=42"
    assert record.detail["status"] == 200
    assert record.detail["query"] == {"dry_run": "1", "secret": "[redacted]"}
    summary = record.detail["body"]
    assert summary["name"] == "n1" and summary["qty"] == "0.5"
    assert summary["password"] == summary["api_key"] == summary["note"] == "[redacted]"
    assert summary["nested"] == {"token": "[redacted]"}
    assert summary["items"][:2] == [0, 1] and summary["items"][-1] == "… 10 more"
    text = _all_audit_text(store)
    assert PASSWORD not in text and TOKEN not in text and "AKIA123" not in text


def test_reads_are_not_audited_and_refusals_are(client: TestClient, store: Store) -> None:
    assert client.get("/api/v1/things/1").status_code == 200
    assert AuditLog(store).records() == []
    assert client.post("/api/v1/things/1", json={}).status_code == 401
    viewer = {"Authorization": "Bearer viewer"}
    assert client.post("/api/v1/things/2", json={}, headers=viewer).status_code == 403
    assert client.post("/api/v1/things/x", json={}, headers=ADMIN).status_code == 422
    assert client.post("/api/v1/nowhere", json={}).status_code == 404
    records = AuditLog(store).records()
    assert [(r.actor, r.action, r.detail["status"]) for r in records] == [
        ("anonymous", "POST /api/v1/things/{thing_id}", 401),
        ("victor", "POST /api/v1/things/{thing_id}", 403),
        ("alice", "POST /api/v1/things/{thing_id}", 422),
        ("anonymous", "POST /api/v1/nowhere", 404),
    ]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_a_login_is_audited_as_the_username_tried_never_the_password(
    client: TestClient, store: Store, as_json: bool
) -> None:
    for password in ("wrong password", PASSWORD):
        form = {"username": "mallory", "password": password}
        answer = (
            client.post("/api/v1/auth/login", json=form)
            if as_json
            else client.post("/api/v1/auth/login", data=form)
        )
        assert answer.status_code == (200 if password == PASSWORD else 401)
    failed, ok = AuditLog(store).records()
    assert (failed.actor, failed.detail["status"]) == ("mallory", 401)
    assert (ok.actor, ok.detail["status"]) == ("mallory", 200)
    assert ok.detail["body"] == {"username": "mallory", "password": "[redacted]"}
    text = _all_audit_text(store)
    assert PASSWORD not in text and "wrong password" not in text and TOKEN not in text


def test_a_failing_route_is_audited_as_500(client: TestClient, store: Store) -> None:
    assert client.delete("/api/v1/things/7").status_code == 500
    (record,) = AuditLog(store).records()
    assert (record.action, record.target, record.detail) == (
        "DELETE /api/v1/things/{thing_id}", "thing_id=7", {"status": 500},
    )  # fmt: skip


def test_a_large_body_is_summarised_by_its_size(client: TestClient, store: Store) -> None:
    body = {"blob": "x" * 70_000}
    assert client.post("/api/v1/things/1", json=body, headers=ADMIN).status_code == 200
    (record,) = AuditLog(store).records()
    assert record.detail["body_bytes"] > 70_000 and "body" not in record.detail


def test_the_append_runs_in_a_worker_thread(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    append = AuditLog.append

    def spy(self: AuditLog, *args: Any, **kwargs: Any) -> int:
        threads.append(threading.get_ident())
        return append(self, *args, **kwargs)

    monkeypatch.setattr(AuditLog, "append", spy)
    answer = client.post("/api/v1/things/1", json={}, headers=ADMIN)
    assert threads and threads[0] != answer.json()["thread"]  # not the event loop's thread


def test_a_failed_append_is_logged_and_the_answer_stands(
    client: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_log"))
    with caplog.at_level(logging.ERROR, logger="sapphire.api.audit_trail"):
        answer = client.post("/api/v1/things/1", json={}, headers=ADMIN)
    assert answer.status_code == 200
    assert "the audit record of POST /api/v1/things/{thing_id} could not be appended" in caplog.text


def test_redact_keeps_plain_values_and_hides_credentials() -> None:
    assert redact({"symbol": "BTCUSDT", "qty": 1.5, "ok": True, "none": None}) == {
        "symbol": "BTCUSDT", "qty": 1.5, "ok": True, "none": None,
    }  # fmt: skip
    hidden = {"totp_code": "123456", "refresh_token": "r", "passphrase": "p", "apiKey": "k"}
    assert set(redact(hidden).values()) == {"[redacted]"}
    assert redact("sk_live_abc") == redact("Bearer abc") == "[redacted]"
    assert redact("a\x00b" + "c" * 300)[:3] == "a?b" and len(redact("c" * 300)) == 200
    assert redact({"x": float("nan")}) == {"x": "nan"}


# -- GET /audit and /audit/verify ------------------------------------------------------------


def _fill(store: Store, n: int) -> None:
    log = AuditLog(store)
    for i in range(1, n + 1):
        log.append(
            "alice" if i % 2 else "bob", "order.submitted" if i % 3 else "keys.add",
            f"id={i}", {"i": i}, "10.0.0.1", ts_ns=1_800_000_000_000_000_000 + i * 1_000_000_000,
        )  # fmt: skip


def test_reading_the_log_needs_the_admin_scope(client: TestClient) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/verify"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer viewer"}).status_code == 403
        assert client.get(path, headers=ADMIN).status_code == 200


def test_the_log_pages_newest_first_and_oldest_first(client: TestClient, store: Store) -> None:
    _fill(store, 7)
    page = client.get("/api/v1/audit", params={"limit": 3}, headers=ADMIN).json()
    assert [r["seq"] for r in page["records"]] == [7, 6, 5]
    assert page["next_before_seq"] == 5 and page["next_after_seq"] is None
    page = client.get("/api/v1/audit", params={"limit": 3, "before_seq": 2}, headers=ADMIN).json()
    assert [r["seq"] for r in page["records"]] == [1] and page["next_before_seq"] is None
    page = client.get(
        "/api/v1/audit", params={"limit": 4, "order": "asc", "after_seq": 2}, headers=ADMIN
    ).json()
    assert [r["seq"] for r in page["records"]] == [3, 4, 5, 6] and page["next_after_seq"] == 6
    first = page["records"][0]
    assert first["ts"] == "2027-01-15T08:00:03.000000Z" and first["detail"] == {"i": 3}
    assert first["actor"] == "alice" and first["ip"] == "10.0.0.1" and len(first["hash"]) == 64


def test_the_log_filters_by_actor_action_and_time(client: TestClient, store: Store) -> None:
    _fill(store, 9)

    def seqs(**params: Any) -> list[int]:
        answer = client.get("/api/v1/audit", params={"order": "asc", **params}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        return [r["seq"] for r in answer.json()["records"]]

    assert seqs(actor="bob") == [2, 4, 6, 8]
    assert seqs(action="keys.add") == [3, 6, 9]
    assert seqs(actor="bob", action="keys.add") == [6]
    assert seqs(start="2027-01-15T08:00:04Z", end="2027-01-15T09:00:06+01:00") == [4, 5]
    naive = client.get("/api/v1/audit", params={"start": "2027-01-15T08:00:04"}, headers=ADMIN)
    assert naive.status_code == 422 and "has no timezone" in naive.json()["detail"]
    assert seqs(start="0001-01-01T00:00:00Z", end="9999-12-31T23:59:59Z") == list(range(1, 10))
    for bad in (
        {"limit": 0}, {"limit": 1001}, {"order": "up"}, {"before_seq": 0},
        {"after_seq": 2**63}, {"actor": "a\x00b"}, {"action": ""},
    ):  # fmt: skip
        assert client.get("/api/v1/audit", params=bad, headers=ADMIN).status_code == 422, bad


def test_verify_reports_the_head_and_the_first_damaged_record(
    client: TestClient, store: Store
) -> None:
    _fill(store, 5)
    ok = client.get("/api/v1/audit/verify", headers=ADMIN).json()
    assert ok["ok"] is True and ok["checked"] == 5 and ok["problem"] is None
    assert ok["summary"] == f"5 records, chain intact, head {ok['head_hash']}"
    anchored = client.get("/api/v1/audit/verify", params={"anchor": ok["head_hash"]}, headers=ADMIN)
    assert anchored.json()["ok"] is True
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET detail = :d WHERE seq = 2"), {"d": '{"i":99}'})
    bad = client.get("/api/v1/audit/verify", headers=ADMIN).json()
    assert bad["ok"] is False and bad["checked"] == 1 and bad["head_seq"] == 1
    assert bad["problem"]["kind"] == "edited" and bad["problem"]["seq"] == 2
    malformed = client.get("/api/v1/audit/verify", params={"anchor": "xyz"}, headers=ADMIN)
    assert malformed.status_code == 422
