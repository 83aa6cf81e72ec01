"""Logins and sessions: the same refusal for every wrong login, the lockout and its
backoff, refresh rotation with reuse detection, logout, an admin's revocation, disabled
users, password rehashing, TOTP at login and as the second factor of sensitive actions."""

from __future__ import annotations

import pytest
from auth_helpers import PASSWORD, SECRET, Clock, cheap_passwords, totp_now
from fastapi import HTTPException

from sapphire.api.security.accounts import LOCK_CAP_S, lock_duration_ns
from sapphire.api.security.deps import Principal
from sapphire.api.security.passwords import Passwords
from sapphire.api.security.service import LOGIN_FAILED, AuthService, TokenPair
from sapphire.store import Store


def _refused(call: object, *args: object, status: int = 401) -> str:
    with pytest.raises(HTTPException) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.status_code == status, caught.value.detail
    return str(caught.value.detail)


def _admin_with_totp(auth: AuthService, name: str = "root") -> tuple[int, str, tuple[str, ...]]:
    user, enrolment = auth.accounts.create(name, PASSWORD, "admin", enrol_totp=True)
    assert enrolment is not None
    return user.id, enrolment.secret, enrolment.recovery_codes


def test_a_login_gives_a_session_whose_access_token_authenticates(auth: AuthService) -> None:
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    pair = auth.login("Alice", PASSWORD)  # names are case-insensitive
    assert (pair.access_expires_in, pair.refresh_expires_in) == (900, 14 * 86400)
    principal = auth.principal_from_bearer(pair.access_token)
    assert principal == Principal(
        user.id, "alice", "trader", frozenset({"read", "trade"}), "token",
        session_id=pair.session_id,
    )  # fmt: skip


def test_every_failed_login_reads_the_same(auth: AuthService, passwords: Passwords) -> None:
    auth.accounts.create("alice", PASSWORD, "viewer")
    disabled, _ = auth.accounts.create("bob", PASSWORD, "viewer")
    auth.accounts.update(disabled.id, disabled=True)
    answers = {
        "wrong password": _refused(auth.login, "alice", "wrong password!"),
        "unknown user": _refused(auth.login, "mallory", PASSWORD),
        "malformed name": _refused(auth.login, "no such user!", PASSWORD),
        "disabled user": _refused(auth.login, "bob", PASSWORD),
    }
    assert set(answers.values()) == {LOGIN_FAILED}


def test_an_unknown_user_costs_a_password_verification(
    auth: AuthService, passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(passwords, "verify_dummy", lambda secret: calls.append(secret))
    _refused(auth.login, "mallory", PASSWORD)
    assert calls == [PASSWORD]


def test_five_failures_lock_the_account_with_a_doubling_backoff(
    auth: AuthService, clock: Clock
) -> None:
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    for _ in range(4):
        _refused(auth.login, "alice", "wrong password!")
    assert auth.login("alice", PASSWORD)  # 4 failures: not locked, and the count resets
    for lockouts, seconds in enumerate([30, 60, 120, 240], start=1):
        for _ in range(5):
            _refused(auth.login, "alice", "wrong password!")
        stored = auth.repo.user(user.id)
        assert stored is not None and stored.lockouts == lockouts
        # locked: the right password is refused with the same words as a wrong one
        assert _refused(auth.login, "alice", PASSWORD) == LOGIN_FAILED
        clock.advance(seconds - 1)
        _refused(auth.login, "alice", PASSWORD)
        clock.advance(1)  # the lock is over; five more failures lock it twice as long
    assert auth.login("alice", PASSWORD)
    stored = auth.repo.user(user.id)
    assert stored is not None and (stored.lockouts, stored.failed_logins) == (0, 0)
    assert stored.ts_locked_until is None


def test_the_lock_doubles_up_to_an_hour() -> None:
    assert [lock_duration_ns(n) // 10**9 for n in range(9)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert lock_duration_ns(10**6) == LOCK_CAP_S * 10**9


def test_refresh_rotates_and_a_reused_token_revokes_the_family(auth: AuthService) -> None:
    auth.accounts.create("alice", PASSWORD, "trader")
    first = auth.login("alice", PASSWORD)
    second = auth.refresh(first.refresh_token)
    assert second.session_id == first.session_id
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    stored = auth.repo.refresh_token(auth.codec.verify(second.refresh_token, "refresh").jti)
    assert (
        stored is not None
        and stored.parent_jti == auth.codec.verify(first.refresh_token, "refresh").jti
    )
    third = auth.refresh(second.refresh_token)
    assert auth.principal_from_bearer(third.access_token).session_id == first.session_id
    other = auth.login("alice", PASSWORD)  # a second session of the same user
    # an attacker replays the first refresh token: the whole family ends
    detail = _refused(auth.refresh, first.refresh_token)
    assert "used already" in detail and "session is revoked" in detail
    for token in (second.refresh_token, third.refresh_token):
        assert "session has ended" in _refused(auth.refresh, token)
    assert "session has ended" in _refused(auth.principal_from_bearer, third.access_token)
    # the other session is untouched
    assert auth.principal_from_bearer(other.access_token).session_id == other.session_id
    assert auth.refresh(other.refresh_token)


def test_a_refresh_token_unknown_to_the_store_is_refused(auth: AuthService) -> None:
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    token, _ = auth.codec.issue(user.id, "refresh", "made-up-family", 3600)
    assert "unknown to this service" in _refused(auth.refresh, token)


def test_an_expired_refresh_token_is_refused(auth: AuthService, clock: Clock) -> None:
    auth.accounts.create("alice", PASSWORD, "trader")
    pair = auth.login("alice", PASSWORD)
    clock.advance(14 * 86400)
    assert "expired" in _refused(auth.refresh, pair.refresh_token)


def test_logout_ends_the_session_at_once(auth: AuthService) -> None:
    auth.accounts.create("alice", PASSWORD, "trader")
    pair, other = auth.login("alice", PASSWORD), auth.login("alice", PASSWORD)
    principal = auth.principal_from_bearer(pair.access_token)
    assert auth.logout(principal) == 1
    assert "session has ended" in _refused(auth.principal_from_bearer, pair.access_token)
    assert "session has ended" in _refused(auth.refresh, pair.refresh_token)
    assert auth.principal_from_bearer(other.access_token)  # only that session
    key_principal = Principal(1, "alice", "trader", frozenset({"read"}), "api_key", key_id=1)
    assert "an API key is revoked with" in _refused(auth.logout, key_principal, status=400)


def test_an_admin_revokes_every_session_of_a_user(auth: AuthService) -> None:
    alice, _ = auth.accounts.create("alice", PASSWORD, "trader")
    auth.accounts.create("bob", PASSWORD, "trader")
    pairs = [auth.login("alice", PASSWORD) for _ in range(3)]
    auth.refresh(pairs[0].refresh_token)
    bob = auth.login("bob", PASSWORD)
    assert auth.revoke_sessions(alice.id) == 3
    for pair in pairs:
        _refused(auth.principal_from_bearer, pair.access_token)
        _refused(auth.refresh, pair.refresh_token)
    assert auth.principal_from_bearer(bob.access_token).username == "bob"
    assert auth.revoke_sessions(alice.id) == 0
    assert "no user with id 999" in _refused(auth.revoke_sessions, 999, status=404)


def test_a_disabled_users_tokens_stop_working(auth: AuthService) -> None:
    alice, _ = auth.accounts.create("alice", PASSWORD, "trader")
    auth.accounts.create("admin", PASSWORD, "admin")  # so alice is not the last admin
    pair = auth.login("alice", PASSWORD)
    auth.accounts.update(alice.id, disabled=True)
    assert "disabled" in _refused(auth.principal_from_bearer, pair.access_token)
    _refused(auth.refresh, pair.refresh_token)
    auth.accounts.update(alice.id, disabled=False)
    _refused(auth.refresh, pair.refresh_token)  # disabling ended the sessions for good
    assert auth.login("alice", PASSWORD)


def test_a_role_change_applies_to_live_tokens(auth: AuthService) -> None:
    alice, _ = auth.accounts.create("alice", PASSWORD, "trader")
    pair = auth.login("alice", PASSWORD)
    auth.accounts.update(alice.id, role="viewer")
    assert auth.principal_from_bearer(pair.access_token).scopes == frozenset({"read"})


def test_a_hash_with_old_parameters_is_upgraded_at_login(store: Store, clock: Clock) -> None:
    old = AuthService(store, SECRET, passwords=cheap_passwords(1), clock=clock)
    user, _ = old.accounts.create("alice", PASSWORD, "trader")
    new = AuthService(store, SECRET, passwords=cheap_passwords(2), clock=clock)
    before = new.repo.user(user.id)
    assert before is not None and new.accounts.passwords.needs_rehash(before.password_hash)
    _refused(new.login, "alice", "wrong password!")  # a wrong password changes nothing
    assert new.repo.user(user.id).password_hash == before.password_hash  # type: ignore[union-attr]
    assert new.login("alice", PASSWORD)
    after = new.repo.user(user.id)
    assert after is not None and "t=2" in after.password_hash
    assert not new.accounts.passwords.needs_rehash(after.password_hash)
    assert new.login("alice", PASSWORD)


def test_login_needs_the_totp_code_once_enabled(auth: AuthService, clock: Clock) -> None:
    _, secret, codes = _admin_with_totp(auth)
    assert "needs a second factor" in _refused(auth.login, "root", PASSWORD)
    assert "wrong or was used" in _refused(auth.login, "root", PASSWORD, "000000")
    code = totp_now(secret, clock)
    pair = auth.login("root", PASSWORD, code)
    assert auth.principal_from_bearer(pair.access_token).scopes == {"read", "trade", "admin"}
    assert "wrong or was used" in _refused(auth.login, "root", PASSWORD, code)  # replay
    clock.advance(30)
    assert auth.login("root", PASSWORD, totp_now(secret, clock))
    assert auth.login("root", PASSWORD, codes[0].lower().replace("-", ""))  # a recovery code
    assert "wrong or was used" in _refused(auth.login, "root", PASSWORD, codes[0])  # once


def test_wrong_totp_codes_count_towards_the_lockout(auth: AuthService, clock: Clock) -> None:
    _, secret, _ = _admin_with_totp(auth)
    for _ in range(5):
        _refused(auth.login, "root", PASSWORD, "000000")
    assert _refused(auth.login, "root", PASSWORD, totp_now(secret, clock)) == LOGIN_FAILED


def test_an_admin_without_totp_holds_no_admin_scope(auth: AuthService, clock: Clock) -> None:
    admin, _ = auth.accounts.create("root", PASSWORD, "admin")
    pair = auth.login("root", PASSWORD)
    assert auth.principal_from_bearer(pair.access_token).scopes == {"read", "trade"}
    enrolment = auth.accounts.enrol_totp(admin.id)
    auth.accounts.confirm_totp(admin.id, totp_now(enrolment.secret, clock))
    assert auth.principal_from_bearer(pair.access_token).scopes == {"read", "trade", "admin"}


def test_check_second_factor(auth: AuthService, clock: Clock) -> None:
    admin_id, secret, codes = _admin_with_totp(auth)
    code = totp_now(secret, clock)
    auth.check_second_factor(admin_id, code)
    assert "wrong or was used already" in _refused(
        auth.check_second_factor, admin_id, code, status=403
    )  # a code works once
    auth.check_second_factor(admin_id, totp_now(secret, clock, 1))  # the next step's (drift)
    auth.check_second_factor(admin_id, codes[3])
    _refused(auth.check_second_factor, admin_id, codes[3], status=403)
    stored = auth.repo.user(admin_id)
    assert stored is not None and len(stored.recovery_codes) == 9
    trader, _ = auth.accounts.create("alice", PASSWORD, "trader")
    assert "needs TOTP: enrol" in _refused(
        auth.check_second_factor, trader.id, "123456", status=403
    )
    _refused(auth.check_second_factor, 999, "123456", status=403)


def test_guessing_second_factor_codes_locks_the_account(auth: AuthService, clock: Clock) -> None:
    admin_id, secret, _ = _admin_with_totp(auth)
    for _ in range(5):
        _refused(auth.check_second_factor, admin_id, "000000", status=403)
    assert "locked until" in _refused(
        auth.check_second_factor, admin_id, totp_now(secret, clock), status=403
    )
    clock.advance(30)
    auth.check_second_factor(admin_id, totp_now(secret, clock))


def test_lifetimes_are_checked(store: Store) -> None:
    with pytest.raises(ValueError, match=r"0 < access \(900 s\) < refresh \(60 s\)"):
        AuthService(store, SECRET, refresh_ttl_s=60)
    auth = AuthService(store, SECRET, access_ttl_s=60, refresh_ttl_s=120)
    assert (auth.access_ttl_s, auth.refresh_ttl_s) == (60, 120)


def test_expired_refresh_tokens_are_pruned_at_login(auth: AuthService, clock: Clock) -> None:
    auth.accounts.create("alice", PASSWORD, "trader")
    old: TokenPair = auth.login("alice", PASSWORD)
    old_jti = auth.codec.verify(old.refresh_token, "refresh").jti
    clock.advance(14 * 86400 + 1)
    auth.login("alice", PASSWORD)
    assert auth.repo.refresh_token(old_jti) is None
