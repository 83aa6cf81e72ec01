"""API keys: shown once and stored as a hash, scopes within the owner's role (and re-checked
against its role at each use), expiry, revocation, the last-used time, and the key as a
bearer credential."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from auth_helpers import PASSWORD, Clock, totp_now
from fastapi import HTTPException

from sapphire.api.security.deps import Principal
from sapphire.api.security.service import AuthService
from sapphire.store import Store


def _session(auth: AuthService, name: str, role: str, *, totp: bool = False) -> Principal:
    _, enrolment = auth.accounts.create(name, PASSWORD, role, enrol_totp=totp)
    clock: Clock = auth.clock  # type: ignore[assignment]  # the fixture's
    code = totp_now(enrolment.secret, clock) if enrolment else None
    return auth.principal_from_bearer(auth.login(name, PASSWORD, code).access_token)


def _status(call: object, *args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(HTTPException) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.status_code, str(caught.value.detail)


def test_a_key_is_shown_once_and_stored_only_as_a_hash(auth: AuthService, store: Store) -> None:
    alice = _session(auth, "alice", "trader")
    key, record = auth.create_api_key(alice, "  grafana  ", ["read"])
    assert key.startswith("sk_") and len(key) == 46
    assert (record.name, record.prefix, record.scopes) == ("grafana", key[:11], ("read",))
    assert record.secret_hash != key and key not in repr(record)
    with store.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.execute(sa.text("SELECT * FROM api_keys")))
    assert key not in dump and key[11:] not in dump
    listed = auth.api_keys(alice.user_id)
    assert [k.id for k in listed] == [record.id]


def test_a_key_authenticates_with_its_scopes(auth: AuthService, clock: Clock) -> None:
    alice = _session(auth, "alice", "trader")
    key, record = auth.create_api_key(alice, "bot", ["read", "trade"])
    principal = auth.principal_from_bearer(key)
    assert principal == Principal(
        alice.user_id, "alice", "trader", frozenset({"read", "trade"}), "api_key",
        key_id=record.id,
    )  # fmt: skip
    reader, _ = auth.create_api_key(alice, "dashboard", ["read"])
    assert auth.principal_from_bearer(reader).scopes == {"read"}


def test_scopes_are_limited_by_the_role(auth: AuthService) -> None:
    viewer = _session(auth, "vera", "viewer")
    trader = _session(auth, "tom", "trader")
    assert _status(auth.create_api_key, viewer, "k", ["read", "trade"]) == (
        403, "a viewer holds read; it cannot give a key 'trade'",
    )  # fmt: skip
    code, detail = _status(auth.create_api_key, trader, "k", ["admin"])
    assert code == 403 and "cannot give a key 'admin'" in detail
    code, detail = _status(auth.create_api_key, trader, "k", ["read", "withdraw"])
    assert code == 422 and "got 'read', 'withdraw'" in detail
    assert _status(auth.create_api_key, trader, "k", [])[0] == 422
    assert "1-100 characters" in _status(auth.create_api_key, trader, "  ", ["read"])[1]
    # an admin without TOTP holds no admin scope, so cannot give it either
    untotp = _session(auth, "root", "admin")
    assert _status(auth.create_api_key, untotp, "k", ["admin"])[0] == 403
    admin = _session(auth, "boss", "admin", totp=True)
    key, _ = auth.create_api_key(admin, "ops", ["admin", "read"])
    assert auth.principal_from_bearer(key).scopes == {"admin", "read"}


def test_a_key_loses_what_its_owner_loses(auth: AuthService) -> None:
    trader = _session(auth, "tom", "trader")
    auth.accounts.create("root", PASSWORD, "admin")
    key, _ = auth.create_api_key(trader, "bot", ["read", "trade"])
    auth.accounts.update(trader.user_id, role="viewer")
    assert auth.principal_from_bearer(key).scopes == {"read"}
    auth.accounts.update(trader.user_id, disabled=True)
    assert "disabled" in _status(auth.principal_from_bearer, key)[1]


def test_keys_are_made_from_a_session_not_with_a_key(auth: AuthService) -> None:
    trader = _session(auth, "tom", "trader")
    key, _ = auth.create_api_key(trader, "bot", ["read", "trade"])
    by_key = auth.principal_from_bearer(key)
    assert _status(auth.create_api_key, by_key, "another", ["read"]) == (
        403, "API keys are made from a user session, not with another API key",
    )  # fmt: skip


def test_an_expired_key_is_refused(auth: AuthService, clock: Clock) -> None:
    trader = _session(auth, "tom", "trader")
    code, detail = _status(auth.create_api_key, trader, "k", ["read"], expires_ns=clock.now)
    assert code == 422 and "is not in the future" in detail
    key, record = auth.create_api_key(trader, "k", ["read"], expires_ns=clock.now + 3600 * 10**9)
    assert auth.principal_from_bearer(key).key_id == record.id
    clock.advance(3600)
    code, detail = _status(auth.principal_from_bearer, key)
    assert code == 401 and f"API key {key[:11]}… expired at " in detail


def test_a_revoked_key_is_refused_and_only_its_owner_or_an_admin_revokes(
    auth: AuthService,
) -> None:
    tom, eve = _session(auth, "tom", "trader"), _session(auth, "eve", "trader")
    key, record = auth.create_api_key(tom, "k", ["read"])
    assert _status(auth.revoke_api_key, eve, record.id) == (404, f"no API key with id {record.id}")
    assert auth.principal_from_bearer(key)  # still works
    revoked = auth.revoke_api_key(tom, record.id)
    assert revoked.ts_revoked is not None
    assert _status(auth.principal_from_bearer, key) == (401, f"API key {key[:11]}… was revoked")
    assert _status(auth.revoke_api_key, tom, record.id)[0] == 409
    assert _status(auth.revoke_api_key, tom, 999)[0] == 404
    other, other_record = auth.create_api_key(tom, "k2", ["read"])
    admin = _session(auth, "boss", "admin", totp=True)
    auth.revoke_api_key(admin, other_record.id)
    assert _status(auth.principal_from_bearer, other)[0] == 401


def test_the_last_used_time_is_kept_to_the_minute(auth: AuthService, clock: Clock) -> None:
    trader = _session(auth, "tom", "trader")
    key, record = auth.create_api_key(trader, "k", ["read"])
    assert record.ts_last_used is None
    first = clock.now
    auth.principal_from_bearer(key)
    assert auth.repo.api_key(record.id).ts_last_used == first  # type: ignore[union-attr]
    clock.advance(59)
    auth.principal_from_bearer(key)
    assert auth.repo.api_key(record.id).ts_last_used == first  # type: ignore[union-attr]
    clock.advance(1)
    auth.principal_from_bearer(key)
    assert auth.repo.api_key(record.id).ts_last_used == clock.now  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ("sk_short", "not of the form sk_ followed by 43 characters"),
        ("sk_" + "A" * 43, "unknown to this service"),
    ],
)
def test_unknown_or_malformed_keys_are_refused(
    auth: AuthService, credential: str, message: str
) -> None:
    code, detail = _status(auth.principal_from_bearer, credential)
    assert code == 401 and message in detail


def test_a_key_with_a_known_prefix_but_another_secret_is_refused(auth: AuthService) -> None:
    trader = _session(auth, "tom", "trader")
    key, _ = auth.create_api_key(trader, "k", ["read"])
    forged = key[:11] + ("B" if key[11] != "B" else "C") + key[12:]
    assert _status(auth.principal_from_bearer, forged) == (
        401, "invalid API key: unknown to this service",
    )  # fmt: skip
