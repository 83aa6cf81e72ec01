"""`AuthRepo`: users, refresh tokens and API keys round-trip; the guarded updates (a TOTP
step, a refresh token, a recovery code, a revocation) succeed once; the lockout counter;
and migration 0004 creates exactly the models' tables and drops them again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pre_0003 import schema_diff

from sapphire.store import Store, downgrade, migrate
from sapphire.store.auth_repo import AuthRepo, UserRecord
from sapphire.store.base import StoreIntegrityError

T0 = 1_800_000_000_000_000_000
AUTH_TABLES = {"users", "refresh_tokens", "api_keys"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'auth.db'}") as s:
        yield s


@pytest.fixture
def repo(store: Store) -> AuthRepo:
    return AuthRepo(store)


def _user(repo: AuthRepo, name: str = "alice", role: str = "trader") -> UserRecord:
    return repo.create_user(name, "$argon2id$hash", role, T0)


def test_users_round_trip(repo: AuthRepo) -> None:
    alice = repo.create_user(
        "alice", "$argon2id$h", "admin", T0, totp_secret="SEED", totp_enabled=True,
        recovery_codes=["c1", "c2"],
    )  # fmt: skip
    assert alice == repo.user(alice.id) == repo.user_by_name("alice")
    assert (alice.role, alice.totp_secret, alice.recovery_codes) == ("admin", "SEED", ("c1", "c2"))
    assert (alice.failed_logins, alice.lockouts, alice.ts_locked_until) == (0, 0, None)
    assert (alice.disabled, alice.ts_created, alice.ts_updated) == (False, T0, T0)
    assert "SEED" not in repr(alice) and "$argon2id$h" not in repr(alice)
    bob = _user(repo, "bob")
    assert [u.username for u in repo.users()] == ["alice", "bob"]
    assert repo.user(bob.id + 1) is None and repo.user_by_name("carol") is None


def test_bad_users_are_refused(repo: AuthRepo, store: Store) -> None:
    _user(repo)
    with pytest.raises(ValueError, match="user 'alice' already exists"):
        _user(repo)
    with pytest.raises(ValueError, match="role must be one of viewer, trader, admin, got 'god'"):
        _user(repo, "bob", "god")
    with pytest.raises(sa.exc.IntegrityError, match="ck_users_role"), store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (username, password_hash, role, totp_enabled, recovery_codes,"
                " failed_logins, lockouts, disabled, ts_created, ts_updated) VALUES "
                "('eve', 'h', 'root', 0, '[]', 0, 0, 0, 0, 0)"
            )
        )


def test_update_user(repo: AuthRepo) -> None:
    alice = _user(repo)
    updated = repo.update_user(alice.id, T0 + 5, {"role": "viewer", "disabled": True})
    assert (updated.role, updated.disabled, updated.ts_updated) == ("viewer", True, T0 + 5)
    with pytest.raises(ValueError, match="cannot update the users column\\(s\\) id, username"):
        repo.update_user(alice.id, T0, {"username": "x", "id": 9})
    with pytest.raises(ValueError, match="got 'god'"):
        repo.update_user(alice.id, T0, {"role": "god"})
    with pytest.raises(ValueError, match="no user with id 999"):
        repo.update_user(999, T0, {"disabled": False})


def test_failures_count_up_to_a_lock(repo: AuthRepo) -> None:
    alice = _user(repo)
    seen: list[int] = []

    def lock_for(lockouts: int) -> int:
        seen.append(lockouts)
        return 30 * (lockouts + 1)

    for n in range(1, 3):
        assert repo.record_login_failure(alice.id, T0, threshold=3, lock_for=lock_for) == (
            repo.user(alice.id)
        )
        assert repo.user(alice.id).failed_logins == n  # type: ignore[union-attr]
    locked = repo.record_login_failure(alice.id, T0 + 1, threshold=3, lock_for=lock_for)
    assert (locked.failed_logins, locked.lockouts, locked.ts_locked_until) == (0, 1, T0 + 31)
    for _ in range(3):
        locked = repo.record_login_failure(alice.id, T0 + 100, threshold=3, lock_for=lock_for)
    assert (locked.lockouts, locked.ts_locked_until, seen) == (2, T0 + 160, [0, 1])
    repo.clear_login_failures(alice.id, T0 + 200)
    cleared = repo.user(alice.id)
    assert cleared is not None
    assert (cleared.failed_logins, cleared.lockouts, cleared.ts_locked_until) == (0, 0, None)


def test_a_totp_step_is_accepted_once_and_only_forwards(repo: AuthRepo) -> None:
    alice = _user(repo)
    assert repo.accept_totp_step(alice.id, 100, T0)
    assert not repo.accept_totp_step(alice.id, 100, T0)  # replay
    assert not repo.accept_totp_step(alice.id, 99, T0)  # older
    assert repo.accept_totp_step(alice.id, 101, T0)
    assert repo.user(alice.id).totp_last_step == 101  # type: ignore[union-attr]


def test_enable_totp_only_for_the_pending_secret(repo: AuthRepo) -> None:
    alice = _user(repo)
    repo.update_user(alice.id, T0, {"totp_secret": "NEW"})
    assert not repo.enable_totp(alice.id, "OLD", 7, ["h1"], T0)
    assert repo.enable_totp(alice.id, "NEW", 7, ["h1", "h2"], T0)
    enabled = repo.user(alice.id)
    assert enabled is not None and enabled.totp_enabled
    assert (enabled.totp_last_step, enabled.recovery_codes) == (7, ("h1", "h2"))
    assert not repo.enable_totp(alice.id, "NEW", 8, ["h3"], T0)  # enabled already


def test_a_recovery_code_is_consumed_once(repo: AuthRepo) -> None:
    alice = repo.create_user("alice", "h", "trader", T0, recovery_codes=["a", "b", "c"])
    assert repo.consume_recovery_code(alice.id, "b", T0 + 1)
    assert not repo.consume_recovery_code(alice.id, "b", T0 + 2)
    assert repo.user(alice.id).recovery_codes == ("a", "c")  # type: ignore[union-attr]
    assert not repo.consume_recovery_code(999, "a", T0)


def test_refresh_tokens_rotate_once_and_families_are_revoked(repo: AuthRepo) -> None:
    alice, bob = _user(repo), _user(repo, "bob")
    repo.add_refresh_token("j1", "f1", alice.id, T0, T0 + 100)
    repo.add_refresh_token("j2", "f1", alice.id, T0 + 1, T0 + 101, parent_jti="j1")
    repo.add_refresh_token("j3", "f2", alice.id, T0, T0 + 100)
    repo.add_refresh_token("j4", "f3", bob.id, T0, T0 + 100)
    token = repo.refresh_token("j2")
    assert token is not None and (token.family_id, token.parent_jti, token.used) == (
        "f1", "j1", False,
    )  # fmt: skip
    assert repo.mark_refresh_token_used("j1")
    assert not repo.mark_refresh_token_used("j1")  # a second use loses
    assert repo.family_is_live("f1", alice.id)
    assert not repo.family_is_live("f1", bob.id)  # another user's family
    assert not repo.family_is_live("nope", alice.id)
    assert repo.revoke_family("f1") == 2
    assert repo.revoke_family("f1") == 0
    assert not repo.family_is_live("f1", alice.id)
    assert not repo.mark_refresh_token_used("j2")  # revoked
    assert repo.revoke_user_families(alice.id) == 1  # f2 (f1 was revoked already)
    assert not repo.family_is_live("f2", alice.id) and repo.family_is_live("f3", bob.id)
    assert repo.prune_refresh_tokens(T0 + 101) == 3
    assert repo.refresh_token("j1") is None and repo.refresh_token("j2") is not None
    with pytest.raises(StoreIntegrityError):
        repo.add_refresh_token("j2", "f9", alice.id, T0, T0 + 1)
    with pytest.raises(StoreIntegrityError):
        repo.add_refresh_token("j9", "f9", 999, T0, T0 + 1)  # no such user


def test_api_keys(repo: AuthRepo) -> None:
    alice, bob = _user(repo), _user(repo, "bob")
    key = repo.add_api_key(
        alice.id, "bot", "sk_abcdefgh", "0" * 64, ["trade", "read", "read"], T0,
        ts_expires=T0 + 10,
    )  # fmt: skip
    assert (key.scopes, key.ts_expires, key.ts_last_used, key.ts_revoked) == (
        ("read", "trade"), T0 + 10, None, None,
    )  # fmt: skip
    assert repo.api_key(key.id) == repo.api_key_by_prefix("sk_abcdefgh") == key
    assert "0" * 64 not in repr(key)
    with pytest.raises(StoreIntegrityError):  # prefixes are unique
        repo.add_api_key(bob.id, "x", "sk_abcdefgh", "1" * 64, ["read"], T0)
    other = repo.add_api_key(bob.id, "x", "sk_zzzzzzzz", "1" * 64, ["read"], T0)
    assert [k.id for k in repo.api_keys(alice.id)] == [key.id]
    assert [k.id for k in repo.api_keys(bob.id)] == [other.id]
    repo.touch_api_key(key.id, T0 + 3)
    assert repo.api_key(key.id).ts_last_used == T0 + 3  # type: ignore[union-attr]
    assert repo.revoke_api_key(key.id, T0 + 4)
    assert not repo.revoke_api_key(key.id, T0 + 5)
    assert repo.api_key(key.id).ts_revoked == T0 + 4  # type: ignore[union-attr]
    assert repo.api_key(999) is None and repo.api_key_by_prefix("sk_nothing") is None


def test_writes_join_an_enclosing_transaction(repo: AuthRepo, store: Store) -> None:
    alice = _user(repo)
    with pytest.raises(RuntimeError), store.atomic():
        repo.add_refresh_token("j1", "f1", alice.id, T0, T0 + 100)
        repo.update_user(alice.id, T0, {"disabled": True})
        raise RuntimeError("rolled back")
    assert repo.refresh_token("j1") is None
    assert not repo.user(alice.id).disabled  # type: ignore[union-attr]


def test_migration_0004_matches_the_models_and_drops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    assert set(sa.inspect(sa.create_engine(url)).get_table_names()) >= AUTH_TABLES
    assert schema_diff(url) == []
    inspector = sa.inspect(sa.create_engine(url))
    assert [ix["column_names"] for ix in inspector.get_indexes("api_keys")] == [["user_id"]]
    assert sorted(ix["column_names"][0] for ix in inspector.get_indexes("refresh_tokens")) == [
        "family_id", "user_id",
    ]  # fmt: skip
    downgrade(url, "0003")
    assert not AUTH_TABLES & set(sa.inspect(sa.create_engine(url)).get_table_names())
    migrate(url)
    assert schema_diff(url) == []
