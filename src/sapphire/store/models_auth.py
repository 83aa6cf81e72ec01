"""The service's users, refresh-token families and API keys (migration 0004).

Secrets are never stored: passwords and recovery codes as argon2id hashes, API keys as
the SHA-256 of their (256-bit random) secret. A user's TOTP seed is stored as it is (the
server must compute codes from it) and never returned by the API after enrolment.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sapphire.store.models import Base
from sapphire.store.types import id_column_type

#: the roles a user may have (the API's `ROLE_SCOPES` keys)
ROLES = ("viewer", "trader", "admin")


class UserRow(Base):
    """A user of the service: credentials, role, second factor and login lockout."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(10))
    # the base32 TOTP seed: pending while `totp_enabled` is false, active once confirmed
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_enabled: Mapped[bool]
    # the last 30-second step a TOTP code was accepted for: a code is never taken twice
    totp_last_step: Mapped[int | None]
    # argon2id hashes of the unused recovery codes
    recovery_codes: Mapped[list[str]]
    failed_logins: Mapped[int] = mapped_column(sa.Integer)
    # how many times the account was locked since its last successful login (the backoff)
    lockouts: Mapped[int] = mapped_column(sa.Integer)
    ts_locked_until: Mapped[int | None]
    disabled: Mapped[bool]
    ts_created: Mapped[int]
    ts_updated: Mapped[int]

    __table_args__ = (sa.CheckConstraint("role IN ('viewer', 'trader', 'admin')", name="role"),)


class RefreshTokenRow(Base):
    """One refresh token: rotated tokens of one login share `family_id` (the session);
    `used` once exchanged for a new pair, `revoked` when its family was ended."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(sa.String(64))
    user_id: Mapped[int] = mapped_column(id_column_type(), sa.ForeignKey("users.id"))
    parent_jti: Mapped[str | None] = mapped_column(sa.String(64))
    ts_issued: Mapped[int]
    ts_expires: Mapped[int]
    used: Mapped[bool]
    revoked: Mapped[bool]

    __table_args__ = (sa.Index(None, "family_id"), sa.Index(None, "user_id"))


class ApiKeyRow(Base):
    """A user's API key for scripts: `prefix` (the key's first characters, shown in lists)
    finds it, `secret_hash` (SHA-256 of the whole key) proves it."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(id_column_type(), sa.ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(sa.String(100))
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]]
    ts_created: Mapped[int]
    ts_expires: Mapped[int | None]
    ts_last_used: Mapped[int | None]
    ts_revoked: Mapped[int | None]

    __table_args__ = (sa.Index(None, "user_id"),)
