"""Users and credentials: creation rules, TOTP enrolment (enrol, confirm, disable, reset)
with single-use recovery codes, password resets, and the last enabled admin kept."""

from __future__ import annotations

import pytest
from auth_helpers import PASSWORD, Clock, totp_now
from fastapi import HTTPException

from sapphire.api.security.accounts import UserAccounts
from sapphire.api.security.passwords import Passwords
from sapphire.api.security.service import AuthService
from sapphire.store import Store


@pytest.fixture
def accounts(store: Store, passwords: Passwords, clock: Clock) -> UserAccounts:
    return UserAccounts(store, passwords=passwords, clock=clock)


def _status(call: object, *args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(HTTPException) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.status_code, str(caught.value.detail)


def test_creating_users(accounts: UserAccounts) -> None:
    user, enrolment = accounts.create("Alice", PASSWORD, "trader")
    assert (user.username, user.role, user.totp_enabled, enrolment) == (
        "alice", "trader", False, None,
    )  # fmt: skip
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in repr(user)
    assert _status(accounts.create, "alice", PASSWORD, "viewer") == (
        409, "user 'alice' already exists",
    )  # fmt: skip
    assert _status(accounts.create, "bob", "too short", "viewer")[0] == 422
    assert _status(accounts.create, "bob", PASSWORD, "god") == (
        422, "role must be one of viewer, trader, admin, got 'god'",
    )  # fmt: skip
    assert "username 'b!' must be" in _status(accounts.create, "b!", PASSWORD, "viewer")[1]
    assert accounts.by_name("ALICE") == user and accounts.by_name("nobody") is None
    assert accounts.by_name("not a name!") is None


def test_an_admin_created_with_totp_gets_its_enrolment_once(accounts: UserAccounts) -> None:
    user, enrolment = accounts.create("root", PASSWORD, "admin", enrol_totp=True)
    assert enrolment is not None and user.totp_enabled
    assert enrolment.uri.startswith("otpauth://totp/Sapphire:root?secret=")
    assert len(enrolment.recovery_codes) == 10
    assert user.totp_secret == enrolment.secret
    assert all(h.startswith("$argon2id$") for h in user.recovery_codes)
    assert not set(enrolment.recovery_codes) & set(user.recovery_codes)


def test_enrol_confirm_and_disable_totp(accounts: UserAccounts, clock: Clock) -> None:
    user, _ = accounts.create("alice", PASSWORD, "trader")
    assert _status(accounts.confirm_totp, user.id, "123456") == (
        409, "no TOTP enrolment is pending: POST /api/v1/auth/totp/enroll first",
    )  # fmt: skip
    first = accounts.enrol_totp(user.id)
    second = accounts.enrol_totp(user.id)  # enrolling again replaces the pending seed
    assert first.secret != second.secret and not accounts.get(user.id).totp_enabled
    code, detail = _status(accounts.confirm_totp, user.id, totp_now(first.secret, clock))
    assert code == 400 and "does not match the enrolled secret" in detail
    codes = accounts.confirm_totp(user.id, totp_now(second.secret, clock))
    assert len(codes) == 10 and accounts.get(user.id).totp_enabled
    assert _status(accounts.enrol_totp, user.id)[0] == 409
    assert _status(accounts.confirm_totp, user.id, "123456")[0] == 409
    # the code that confirmed cannot be used again
    assert _status(accounts.disable_totp, user.id, totp_now(second.secret, clock))[0] == 403
    disabled = accounts.disable_totp(user.id, codes[0])
    assert (disabled.totp_enabled, disabled.totp_secret, disabled.recovery_codes) == (
        False, None, (),
    )  # fmt: skip
    assert _status(accounts.disable_totp, user.id, codes[1]) == (409, "TOTP is not enabled")


def test_reset_totp_replaces_the_seed_and_codes(accounts: UserAccounts, clock: Clock) -> None:
    user, old = accounts.create("root", PASSWORD, "admin", enrol_totp=True)
    assert old is not None
    new = accounts.reset_totp(user.id)
    assert new.secret != old.secret and not set(new.recovery_codes) & set(old.recovery_codes)
    stored = accounts.get(user.id)
    assert not accounts.second_factor_ok(stored, old.recovery_codes[0])
    assert accounts.second_factor_ok(accounts.get(user.id), totp_now(new.secret, clock))


def test_set_password_ends_sessions_and_lifts_the_lock(auth: AuthService) -> None:
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    pair = auth.login("alice", PASSWORD)
    for _ in range(5):
        with pytest.raises(HTTPException):
            auth.login("alice", "wrong password!")
    auth.accounts.set_password(user.id, "a new long passphrase")
    with pytest.raises(HTTPException, match="session has ended"):
        auth.principal_from_bearer(pair.access_token)
    with pytest.raises(HTTPException):
        auth.login("alice", PASSWORD)
    assert auth.login("alice", "a new long passphrase")
    assert _status(auth.accounts.set_password, user.id, "short")[0] == 422
    assert _status(auth.accounts.set_password, 999, "a new long passphrase")[0] == 404


def test_the_last_enabled_admin_stays_one(accounts: UserAccounts) -> None:
    root, _ = accounts.create("root", PASSWORD, "admin")
    assert _status(accounts.update, root.id, role="trader") == (
        409, "user 'root' is the last enabled admin: make another admin first",
    )  # fmt: skip
    assert _status(accounts.update, root.id, disabled=True)[0] == 409
    other, _ = accounts.create("other", PASSWORD, "trader")
    accounts.update(other.id, role="admin")
    assert accounts.update(root.id, role="trader").role == "trader"
    assert _status(accounts.update, other.id, disabled=True)[0] == 409
    assert accounts.update(root.id).role == "trader"  # nothing to change
    assert _status(accounts.update, root.id, role="god")[0] == 422
    assert _status(accounts.update, 999, role="viewer")[0] == 404
