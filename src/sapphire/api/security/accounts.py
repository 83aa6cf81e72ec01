"""`UserAccounts`: users and their credentials — creation, passwords, roles, TOTP
enrolment, second-factor checks and the login lockout's bookkeeping. It needs no signing
secret, so the CLI (`sapphire users ...`) uses it directly; `AuthService` adds tokens and
API keys on top.

Admins and TOTP: an admin's `admin` scope is granted only while the admin has TOTP
enabled (`role_scopes`); until then the admin acts as a trader. `sapphire users
create-admin` therefore enrols (and enables) TOTP for the first admin at creation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, status

from sapphire.api.security.deps import ROLE_SCOPES
from sapphire.api.security.passwords import Passwords, check_password, check_username
from sapphire.api.security.totp import (
    looks_like_totp,
    match_totp,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    otpauth_uri,
)
from sapphire.store.auth_repo import AuthRepo, UserRecord
from sapphire.store.base import StoreBase

__all__ = [
    "LOCK_BASE_S",
    "LOCK_CAP_S",
    "MAX_FAILURES",
    "TotpEnrolment",
    "UserAccounts",
    "iso",
    "lock_duration_ns",
    "role_scopes",
    "to_ns",
    "utc",
]

#: failed attempts in a row (passwords or second-factor codes) that lock an account
MAX_FAILURES = 5
#: the first lock lasts this long; each further one twice as long as the one before...
LOCK_BASE_S = 30
#: ...up to this
LOCK_CAP_S = 3600
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lock_duration_ns(lockouts: int) -> int:
    """How long the account is locked after `lockouts` earlier locks (30 s doubling, at
    most an hour)."""
    return min(LOCK_BASE_S * 2 ** min(lockouts, 32), LOCK_CAP_S) * _NS


def role_scopes(user: UserRecord) -> frozenset[str]:
    """The scopes `user` holds now: its role's, less `admin` until it has TOTP enabled."""
    scopes = ROLE_SCOPES[user.role]
    return scopes if user.totp_enabled else scopes - {"admin"}


def iso(ts_ns: int) -> str:
    """`ts_ns` as an ISO-8601 UTC time to the second (for messages)."""
    return datetime.fromtimestamp(ts_ns // _NS, UTC).isoformat().replace("+00:00", "Z")


def to_ns(moment: datetime) -> int:
    """An aware datetime as int nanoseconds since the epoch (exact to the microsecond)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def utc(ts_ns: int | None) -> datetime | None:
    """`ts_ns` as an aware UTC datetime (to the microsecond), None for None."""
    if ts_ns is None:
        return None
    return datetime.fromtimestamp(ts_ns // _NS, UTC).replace(microsecond=ts_ns % _NS // 1000)


def _error(code: int, detail: str) -> HTTPException:
    return HTTPException(code, detail=detail)


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """A TOTP seed shown once: the secret, the URI to scan, and (once enabled) the
    recovery codes."""

    secret: str
    uri: str
    recovery_codes: tuple[str, ...] = ()


class UserAccounts:
    """The users of a store's database and their credentials."""

    def __init__(
        self,
        store: StoreBase,
        *,
        passwords: Passwords | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.repo = AuthRepo(store)
        self.passwords = passwords or Passwords()
        self.clock = clock

    # -- users ----------------------------------------------------------------------------

    def get(self, user_id: int) -> UserRecord:
        """The user, or 404 naming the id."""
        user = self.repo.user(user_id)
        if user is None:
            raise _error(status.HTTP_404_NOT_FOUND, f"no user with id {user_id}")
        return user

    def by_name(self, username: str) -> UserRecord | None:
        """The user called `username` (any case), or None."""
        try:
            return self.repo.user_by_name(check_username(username))
        except ValueError:
            return None

    def create(
        self, username: str, password: str, role: str, *, enrol_totp: bool = False
    ) -> tuple[UserRecord, TotpEnrolment | None]:
        """A new user (422 for a bad name, password or role; 409 if the name is taken);
        with `enrol_totp`, TOTP enabled at once and the enrolment to show the user."""
        try:
            name = check_username(username)
            check_password(password)
        except ValueError as exc:
            raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        if role not in ROLE_SCOPES:
            roles = ", ".join(ROLE_SCOPES)
            raise _error(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"role must be one of {roles}, got {role!r}"
            )
        if self.repo.user_by_name(name) is not None:
            raise _error(status.HTTP_409_CONFLICT, f"user {name!r} already exists")
        secret = new_totp_secret() if enrol_totp else None
        codes = new_recovery_codes() if enrol_totp else []
        try:
            user = self.repo.create_user(
                name,
                self.passwords.hash(password),
                role,
                self.clock(),
                totp_secret=secret,
                totp_enabled=enrol_totp,
                recovery_codes=[self.passwords.hash(c) for c in codes],
            )
        except ValueError as exc:  # taken meanwhile
            raise _error(status.HTTP_409_CONFLICT, str(exc)) from None
        if secret is None:
            return user, None
        return user, TotpEnrolment(secret, otpauth_uri(secret, name), tuple(codes))

    def set_password(self, user_id: int, password: str) -> UserRecord:
        """Give the user a new password (422 if it breaks the policy); the lockout is
        lifted and every session of the user ends."""
        try:
            check_password(password)
        except ValueError as exc:
            raise _error(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        self.get(user_id)
        with self.store.atomic():
            user = self.repo.update_user(
                user_id,
                self.clock(),
                {
                    "password_hash": self.passwords.hash(password),
                    "failed_logins": 0,
                    "lockouts": 0,
                    "ts_locked_until": None,
                },
            )
            self.repo.revoke_user_families(user_id)
        return user

    def update(
        self, user_id: int, *, role: str | None = None, disabled: bool | None = None
    ) -> UserRecord:
        """Change a user's role and/or disabled flag; disabling ends its sessions. 409 if
        it would leave no enabled admin."""
        user = self.get(user_id)
        values: dict[str, object] = {}
        if role is not None:
            if role not in ROLE_SCOPES:
                roles = ", ".join(ROLE_SCOPES)
                raise _error(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"role must be one of {roles}, got {role!r}",
                )
            values["role"] = role
        if disabled is not None:
            values["disabled"] = disabled
        loses_admin = (role is not None and role != "admin") or disabled is True
        if user.role == "admin" and not user.disabled and loses_admin:
            others = [
                u
                for u in self.repo.users()
                if u.role == "admin" and not u.disabled and u.id != user.id
            ]
            if not others:
                raise _error(
                    status.HTTP_409_CONFLICT,
                    f"user {user.username!r} is the last enabled admin: make another admin first",
                )
        if not values:
            return user
        with self.store.atomic():
            updated = self.repo.update_user(user_id, self.clock(), values)
            if disabled:
                self.repo.revoke_user_families(user_id)
        return updated

    # -- TOTP -----------------------------------------------------------------------------

    def enrol_totp(self, user_id: int) -> TotpEnrolment:
        """A new pending TOTP seed for the user (409 if TOTP is on already); it takes
        effect when confirmed with a code (`confirm_totp`)."""
        user = self.get(user_id)
        if user.totp_enabled:
            raise _error(
                status.HTTP_409_CONFLICT,
                "TOTP is enabled already: disable it first (POST /api/v1/auth/totp/disable)",
            )
        secret = new_totp_secret()
        self.repo.update_user(
            user_id, self.clock(), {"totp_secret": secret, "totp_last_step": None}
        )
        return TotpEnrolment(secret, otpauth_uri(secret, user.username))

    def confirm_totp(self, user_id: int, code: str) -> tuple[str, ...]:
        """Turn TOTP on with a code from the pending seed; the 10 recovery codes, shown
        once. 409 without a pending enrolment, 400 for a wrong code."""
        user = self.get(user_id)
        if user.totp_enabled:
            raise _error(status.HTTP_409_CONFLICT, "TOTP is enabled already")
        if user.totp_secret is None:
            raise _error(
                status.HTTP_409_CONFLICT,
                "no TOTP enrolment is pending: POST /api/v1/auth/totp/enroll first",
            )
        step = match_totp(user.totp_secret, code, self.clock() / _NS, None)
        if step is None:
            raise _error(
                status.HTTP_400_BAD_REQUEST,
                f"the code {code!r} does not match the enrolled secret (check the "
                "authenticator app's clock)",
            )
        codes = new_recovery_codes()
        hashes = [self.passwords.hash(c) for c in codes]
        if not self.repo.enable_totp(user_id, user.totp_secret, step, hashes, self.clock()):
            raise _error(status.HTTP_409_CONFLICT, "the TOTP enrolment changed meanwhile: retry")
        return tuple(codes)

    def disable_totp(self, user_id: int, code: str) -> UserRecord:
        """Turn TOTP off, proven with a current code or a recovery code (403 otherwise)."""
        user = self.get(user_id)
        if not user.totp_enabled:
            raise _error(status.HTTP_409_CONFLICT, "TOTP is not enabled")
        self.require_second_factor(user, code)
        return self.repo.update_user(
            user_id,
            self.clock(),
            {
                "totp_secret": None,
                "totp_enabled": False,
                "totp_last_step": None,
                "recovery_codes": [],
            },
        )

    def reset_totp(self, user_id: int) -> TotpEnrolment:
        """Replace the user's TOTP seed and recovery codes with new ones, enabled at once
        (the operator's way back in for a user who lost the authenticator)."""
        user = self.get(user_id)
        secret, codes = new_totp_secret(), new_recovery_codes()
        self.repo.update_user(
            user_id,
            self.clock(),
            {
                "totp_secret": secret,
                "totp_enabled": True,
                "totp_last_step": None,
                "recovery_codes": [self.passwords.hash(c) for c in codes],
            },
        )
        return TotpEnrolment(secret, otpauth_uri(secret, user.username), tuple(codes))

    # -- second factor and lockout --------------------------------------------------------

    def locked_until(self, user: UserRecord) -> int | None:
        """When the user's lock ends (ns), or None if it is not locked now."""
        until = user.ts_locked_until
        return until if until is not None and until > self.clock() else None

    def record_failure(self, user: UserRecord) -> UserRecord:
        """Count a failed password or code; the fifth in a row locks the account."""
        return self.repo.record_login_failure(
            user.id, self.clock(), threshold=MAX_FAILURES, lock_for=lock_duration_ns
        )

    def second_factor_ok(self, user: UserRecord, code: str) -> bool:
        """True if `code` is a current, unused TOTP code of the user's or one of its
        unused recovery codes (which is then spent); a wrong code counts as a failure."""
        if user.totp_enabled and user.totp_secret is not None:
            if looks_like_totp(code):
                step = match_totp(user.totp_secret, code, self.clock() / _NS, user.totp_last_step)
                if step is not None and self.repo.accept_totp_step(user.id, step, self.clock()):
                    return True
            else:
                wanted = normalise_recovery_code(code)
                for stored in user.recovery_codes:
                    if self.passwords.verify(stored, wanted):
                        if self.repo.consume_recovery_code(user.id, stored, self.clock()):
                            return True
                        break
        self.record_failure(user)
        return False

    def require_second_factor(self, user: UserRecord, code: str) -> None:
        """403 unless `code` is a valid second factor for `user` (see `second_factor_ok`),
        TOTP is enabled, and the account is not locked."""
        if not user.totp_enabled:
            raise _error(
                status.HTTP_403_FORBIDDEN,
                "this action needs TOTP: enrol with POST /api/v1/auth/totp/enroll and "
                "confirm with POST /api/v1/auth/totp/confirm",
            )
        until = self.locked_until(user)
        if until is not None:
            raise _error(
                status.HTTP_403_FORBIDDEN,
                f"too many wrong passwords or codes: the account is locked until {iso(until)}",
            )
        if not self.second_factor_ok(user, code):
            raise _error(
                status.HTTP_403_FORBIDDEN,
                "the TOTP code is wrong or was used already (a recovery code works once)",
            )
