"""`AuthRepo`: the service's users, refresh-token families and API keys in a `Store`'s
database (the tables of models_auth.py).

It stores and reads; it decides nothing (hashing, tokens, lockout policy and TOTP live in
`sapphire.api.security`). The updates that guard a credential are conditional so that two
requests racing with the same refresh token, TOTP step or recovery code cannot both win.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from sapphire.store.base import StoreBase
from sapphire.store.models_auth import ROLES, ApiKeyRow, RefreshTokenRow, UserRow

__all__ = ["ApiKeyRecord", "AuthRepo", "RefreshTokenRecord", "UserRecord"]

#: the user columns `update_user` may change
_UPDATABLE = frozenset(
    {
        "password_hash",
        "role",
        "totp_secret",
        "totp_enabled",
        "totp_last_step",
        "recovery_codes",
        "failed_logins",
        "lockouts",
        "ts_locked_until",
        "disabled",
    }
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user (the hashes and the TOTP seed are left out of its repr)."""

    id: int
    username: str
    password_hash: str = field(repr=False)
    role: str
    totp_secret: str | None = field(repr=False)
    totp_enabled: bool
    totp_last_step: int | None
    recovery_codes: tuple[str, ...] = field(repr=False)
    failed_logins: int
    lockouts: int
    ts_locked_until: int | None
    disabled: bool
    ts_created: int
    ts_updated: int


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """A stored refresh token (its `jti`; the token itself is never stored)."""

    jti: str
    family_id: str
    user_id: int
    parent_jti: str | None
    ts_issued: int
    ts_expires: int
    used: bool
    revoked: bool


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key (its prefix and the hash of its secret)."""

    id: int
    user_id: int
    name: str
    prefix: str
    secret_hash: str = field(repr=False)
    scopes: tuple[str, ...]
    ts_created: int
    ts_expires: int | None
    ts_last_used: int | None
    ts_revoked: int | None


def _user(row: Row[Any]) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        totp_secret=row.totp_secret,
        totp_enabled=bool(row.totp_enabled),
        totp_last_step=row.totp_last_step,
        recovery_codes=tuple(row.recovery_codes),
        failed_logins=row.failed_logins,
        lockouts=row.lockouts,
        ts_locked_until=row.ts_locked_until,
        disabled=bool(row.disabled),
        ts_created=row.ts_created,
        ts_updated=row.ts_updated,
    )


def _token(row: Row[Any]) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        jti=row.jti,
        family_id=row.family_id,
        user_id=row.user_id,
        parent_jti=row.parent_jti,
        ts_issued=row.ts_issued,
        ts_expires=row.ts_expires,
        used=bool(row.used),
        revoked=bool(row.revoked),
    )


def _key(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        scopes=tuple(row.scopes),
        ts_created=row.ts_created,
        ts_expires=row.ts_expires,
        ts_last_used=row.ts_last_used,
        ts_revoked=row.ts_revoked,
    )


class AuthRepo:
    """The users, refresh_tokens and api_keys tables of `store`'s database."""

    def __init__(self, store: StoreBase) -> None:
        self.store = store

    # -- users ----------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        password_hash: str,
        role: str,
        ts_ns: int,
        *,
        totp_secret: str | None = None,
        totp_enabled: bool = False,
        recovery_codes: Iterable[str] = (),
    ) -> UserRecord:
        """Add a user; ValueError naming the username if it is taken, or a bad role."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        values = {
            "username": username,
            "password_hash": password_hash,
            "role": role,
            "totp_secret": totp_secret,
            "totp_enabled": totp_enabled,
            "totp_last_step": None,
            "recovery_codes": list(recovery_codes),
            "failed_logins": 0,
            "lockouts": 0,
            "ts_locked_until": None,
            "disabled": False,
            "ts_created": ts_ns,
            "ts_updated": ts_ns,
        }
        with self.store._tx() as conn:
            taken = conn.execute(sa.select(UserRow.id).where(UserRow.username == username)).first()
            if taken is not None:
                raise ValueError(f"user {username!r} already exists")
            user_id = conn.execute(
                sa.insert(UserRow).values(**values).returning(UserRow.id)
            ).scalar_one()
            return self._user_in(conn, user_id)

    def user(self, user_id: int) -> UserRecord | None:
        """The user with this id, or None."""
        with self.store._read() as conn:
            row = conn.execute(sa.select(UserRow).where(UserRow.id == user_id)).first()
        return None if row is None else _user(row)

    def user_by_name(self, username: str) -> UserRecord | None:
        """The user with this username, or None."""
        with self.store._read() as conn:
            row = conn.execute(sa.select(UserRow).where(UserRow.username == username)).first()
        return None if row is None else _user(row)

    def users(self) -> list[UserRecord]:
        """Every user, by id."""
        with self.store._read() as conn:
            rows = conn.execute(sa.select(UserRow).order_by(UserRow.id)).all()
        return [_user(row) for row in rows]

    def update_user(self, user_id: int, ts_ns: int, values: Mapping[str, Any]) -> UserRecord:
        """Change some of a user's columns; ValueError for an unknown user or column."""
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update the users column(s) {', '.join(sorted(unknown))}")
        if "role" in values and values["role"] not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {values['role']!r}")
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(UserRow)
                .where(UserRow.id == user_id)
                .values(**dict(values), ts_updated=ts_ns)
            )
            if done.rowcount != 1:
                raise ValueError(f"no user with id {user_id}")
            return self._user_in(conn, user_id)

    def record_login_failure(
        self, user_id: int, ts_ns: int, *, threshold: int, lock_for: Callable[[int], int]
    ) -> UserRecord:
        """Count a failed login; the `threshold`-th in a row locks the account until
        `ts_ns + lock_for(lockouts so far)` and starts the count again."""
        with self.store._tx() as conn:
            conn.execute(
                sa.update(UserRow)
                .where(UserRow.id == user_id)
                .values(failed_logins=UserRow.failed_logins + 1)
            )
            user = self._user_in(conn, user_id)
            if user.failed_logins >= threshold:
                conn.execute(
                    sa.update(UserRow)
                    .where(UserRow.id == user_id)
                    .values(
                        failed_logins=0,
                        lockouts=UserRow.lockouts + 1,
                        ts_locked_until=ts_ns + lock_for(user.lockouts),
                        ts_updated=ts_ns,
                    )
                )
                user = self._user_in(conn, user_id)
            return user

    def clear_login_failures(self, user_id: int, ts_ns: int) -> None:
        """Forget the failed logins and lockouts (after a successful login)."""
        with self.store._tx() as conn:
            conn.execute(
                sa.update(UserRow)
                .where(
                    UserRow.id == user_id,
                    sa.or_(UserRow.failed_logins != 0, UserRow.lockouts != 0),
                )
                .values(failed_logins=0, lockouts=0, ts_locked_until=None, ts_updated=ts_ns)
            )

    def accept_totp_step(self, user_id: int, step: int, ts_ns: int) -> bool:
        """Record that a TOTP code of `step` was used; False if that step (or a later one)
        was used already, so that a code is accepted once."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(UserRow)
                .where(
                    UserRow.id == user_id,
                    sa.or_(UserRow.totp_last_step.is_(None), UserRow.totp_last_step < step),
                )
                .values(totp_last_step=step, ts_updated=ts_ns)
            )
            return done.rowcount == 1

    def enable_totp(
        self, user_id: int, secret: str, step: int, recovery_codes: Iterable[str], ts_ns: int
    ) -> bool:
        """Turn on the pending TOTP `secret` (confirmed with a code of `step`) with these
        recovery code hashes; False if that secret is no longer the pending one."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(UserRow)
                .where(
                    UserRow.id == user_id,
                    UserRow.totp_secret == secret,
                    UserRow.totp_enabled.is_(False),
                )
                .values(
                    totp_enabled=True,
                    totp_last_step=step,
                    recovery_codes=list(recovery_codes),
                    ts_updated=ts_ns,
                )
            )
            return done.rowcount == 1

    def consume_recovery_code(self, user_id: int, code_hash: str, ts_ns: int) -> bool:
        """Remove one recovery code hash; False if it was not (or no longer) there."""
        with self.store._tx() as conn:
            # write first: it takes the row's lock (PostgreSQL) or the database's write
            # lock (SQLite), so a racing use of the same code waits and then finds it gone
            conn.execute(sa.update(UserRow).where(UserRow.id == user_id).values(ts_updated=ts_ns))
            codes = conn.execute(
                sa.select(UserRow.recovery_codes).where(UserRow.id == user_id)
            ).scalar_one_or_none()
            if codes is None or code_hash not in codes:
                return False
            left = [c for c in codes if c != code_hash]
            conn.execute(
                sa.update(UserRow).where(UserRow.id == user_id).values(recovery_codes=left)
            )
            return True

    @staticmethod
    def _user_in(conn: Connection, user_id: int) -> UserRecord:
        return _user(conn.execute(sa.select(UserRow).where(UserRow.id == user_id)).one())

    # -- refresh tokens -------------------------------------------------------------------

    def add_refresh_token(
        self,
        jti: str,
        family_id: str,
        user_id: int,
        ts_issued: int,
        ts_expires: int,
        *,
        parent_jti: str | None = None,
    ) -> None:
        """Store a newly issued refresh token."""
        with self.store._tx() as conn:
            conn.execute(
                sa.insert(RefreshTokenRow).values(
                    jti=jti,
                    family_id=family_id,
                    user_id=user_id,
                    parent_jti=parent_jti,
                    ts_issued=ts_issued,
                    ts_expires=ts_expires,
                    used=False,
                    revoked=False,
                )
            )

    def refresh_token(self, jti: str) -> RefreshTokenRecord | None:
        """The refresh token with this id, or None."""
        with self.store._read() as conn:
            row = conn.execute(sa.select(RefreshTokenRow).where(RefreshTokenRow.jti == jti)).first()
        return None if row is None else _token(row)

    def mark_refresh_token_used(self, jti: str) -> bool:
        """Mark a live refresh token used; False if it was used or revoked already."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(RefreshTokenRow)
                .where(
                    RefreshTokenRow.jti == jti,
                    RefreshTokenRow.used.is_(False),
                    RefreshTokenRow.revoked.is_(False),
                )
                .values(used=True)
            )
            return done.rowcount == 1

    def revoke_family(self, family_id: str) -> int:
        """Revoke every token of a session; how many were live."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(RefreshTokenRow)
                .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked.is_(False))
                .values(revoked=True)
            )
            return int(done.rowcount)

    def revoke_user_families(self, user_id: int) -> int:
        """Revoke every session of a user; how many sessions had live tokens."""
        with self.store._tx() as conn:
            families = conn.execute(
                sa.select(sa.func.count(sa.distinct(RefreshTokenRow.family_id))).where(
                    RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked.is_(False)
                )
            ).scalar_one()
            conn.execute(
                sa.update(RefreshTokenRow)
                .where(RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked.is_(False))
                .values(revoked=True)
            )
            return int(families)

    def family_is_live(self, family_id: str, user_id: int) -> bool:
        """True if the session has tokens of this user and none of them was revoked."""
        with self.store._read() as conn:
            total, revoked = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(RefreshTokenRow.revoked.is_(True)),
                ).where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.user_id == user_id)
            ).one()
        return bool(total) and not revoked

    def prune_refresh_tokens(self, before_ns: int) -> int:
        """Delete the refresh tokens that expired before `before_ns`; how many."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.delete(RefreshTokenRow).where(RefreshTokenRow.ts_expires < before_ns)
            )
            return int(done.rowcount)

    # -- API keys -------------------------------------------------------------------------

    def add_api_key(
        self,
        user_id: int,
        name: str,
        prefix: str,
        secret_hash: str,
        scopes: Iterable[str],
        ts_ns: int,
        *,
        ts_expires: int | None = None,
    ) -> ApiKeyRecord:
        """Store a new API key (its hash, never the key)."""
        with self.store._tx() as conn:
            key_id = conn.execute(
                sa.insert(ApiKeyRow)
                .values(
                    user_id=user_id,
                    name=name,
                    prefix=prefix,
                    secret_hash=secret_hash,
                    scopes=sorted(set(scopes)),
                    ts_created=ts_ns,
                    ts_expires=ts_expires,
                    ts_last_used=None,
                    ts_revoked=None,
                )
                .returning(ApiKeyRow.id)
            ).scalar_one()
            return _key(conn.execute(sa.select(ApiKeyRow).where(ApiKeyRow.id == key_id)).one())

    def api_key(self, key_id: int) -> ApiKeyRecord | None:
        """The API key with this id, or None."""
        with self.store._read() as conn:
            row = conn.execute(sa.select(ApiKeyRow).where(ApiKeyRow.id == key_id)).first()
        return None if row is None else _key(row)

    def api_key_by_prefix(self, prefix: str) -> ApiKeyRecord | None:
        """The API key with this prefix, or None."""
        with self.store._read() as conn:
            row = conn.execute(sa.select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
        return None if row is None else _key(row)

    def api_keys(self, user_id: int) -> list[ApiKeyRecord]:
        """A user's API keys (revoked ones included), by id."""
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(ApiKeyRow).where(ApiKeyRow.user_id == user_id).order_by(ApiKeyRow.id)
            ).all()
        return [_key(row) for row in rows]

    def touch_api_key(self, key_id: int, ts_ns: int) -> None:
        """Record that the key was used at `ts_ns`."""
        with self.store._tx() as conn:
            conn.execute(
                sa.update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(ts_last_used=ts_ns)
            )

    def revoke_api_key(self, key_id: int, ts_ns: int) -> bool:
        """Revoke a key; False if it was revoked already."""
        with self.store._tx() as conn:
            done = conn.execute(
                sa.update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id, ApiKeyRow.ts_revoked.is_(None))
                .values(ts_revoked=ts_ns)
            )
            return done.rowcount == 1
