"""`AuthService`: logins, sessions (JWT access + rotating refresh tokens), API keys and
the checks behind `deps.authenticated` / `deps.second_factor`.

- Login: username + password (+ a TOTP or recovery code once TOTP is on). Every refusal
  says the same thing whether or not the user exists, is disabled or is locked, and an
  unknown user costs the same argon2 verification as a known one. Five failures in a row
  lock the account for 30 s, doubling with each further lock up to an hour.
- Sessions: a login starts a refresh-token family (`sid`). Refreshing marks the token
  used and returns a new pair; a used token presented again revokes the whole family
  (someone replayed it). An access token works only while its family is live and its
  user enabled, so logout, an admin's revocation and disabling a user take effect at once.
- API keys: scopes a subset of the owner's role's, re-checked at every use against the
  owner's current role; expiry, revocation and the last-used time (to the minute).
- Admins: the `admin` scope needs TOTP enabled (`accounts.role_scopes`), and a login of
  a user with TOTP on needs the code, so every admin action has had a second factor.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import HTTPException, status

from sapphire.api.security.accounts import UserAccounts, iso, role_scopes
from sapphire.api.security.api_keys import (
    key_hash,
    key_prefix,
    keys_match,
    looks_like_api_key,
    new_api_key,
)
from sapphire.api.security.deps import Principal
from sapphire.api.security.passwords import Passwords, check_username
from sapphire.api.security.tokens import TokenCodec, TokenError
from sapphire.store.auth_repo import ApiKeyRecord, UserRecord
from sapphire.store.base import StoreBase, StoreIntegrityError

__all__ = ["API_SCOPES", "AuthService", "TokenPair"]

_NS = 1_000_000_000
#: the last-used time of an API key is written at most this often (not every request)
LAST_USED_RESOLUTION_NS = 60 * _NS
#: the furthest ahead an API key's expiry may be (keys may also never expire)
MAX_KEY_LIFETIME_NS = 3650 * 86400 * _NS
LOGIN_FAILED = (
    "login failed: wrong username or password, or the account is disabled or locked "
    "after repeated failures (try again later)"
)
API_SCOPES = ("read", "trade", "admin")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A new access token and the refresh token that buys the next pair."""

    access_token: str
    refresh_token: str
    access_expires_in: int
    refresh_expires_in: int
    session_id: str
    user: UserRecord


class AuthService:
    """Authentication for the service over `store`'s users, sessions and API keys."""

    def __init__(
        self,
        store: StoreBase,
        secret: bytes,
        *,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 14 * 86400,
        passwords: Passwords | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if access_ttl_s <= 0 or refresh_ttl_s <= access_ttl_s:
            raise ValueError(
                f"token lifetimes must satisfy 0 < access ({access_ttl_s} s) < refresh "
                f"({refresh_ttl_s} s)"
            )
        self.store = store
        self.clock = clock
        self.accounts = UserAccounts(store, passwords=passwords, clock=clock)
        self.repo = self.accounts.repo
        self.codec = TokenCodec(secret, clock)
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    # -- login and sessions ---------------------------------------------------------------

    def login(self, username: str, password: str, totp_code: str | None = None) -> TokenPair:
        """A new session for a user who proves who they are; 401 otherwise."""
        passwords = self.accounts.passwords
        try:
            user = self.repo.user_by_name(check_username(username))
        except ValueError:
            user = None
        if user is None or user.disabled or self.accounts.locked_until(user) is not None:
            passwords.verify_dummy(password)
            raise _unauthorized(LOGIN_FAILED)
        if not passwords.verify(user.password_hash, password):
            self.accounts.record_failure(user)
            raise _unauthorized(LOGIN_FAILED)
        if user.totp_enabled:
            if not totp_code:
                raise _unauthorized(
                    "this account needs a second factor: send totp_code (the authenticator "
                    "app's current code, or a recovery code)"
                )
            if not self.accounts.second_factor_ok(user, totp_code):
                raise _unauthorized("the TOTP code is wrong or was used already")
        now = self.clock()
        with self.store.atomic():
            self.repo.clear_login_failures(user.id, now)
            if passwords.needs_rehash(user.password_hash):
                self.repo.update_user(user.id, now, {"password_hash": passwords.hash(password)})
            self.repo.prune_refresh_tokens(now)
            return self._issue(user, secrets.token_urlsafe(16), parent=None)

    def refresh(self, refresh_token: str) -> TokenPair:
        """The next pair for a live refresh token, which is spent; a spent one presented
        again revokes its session. 401 for anything but a live token."""
        try:
            claims = self.codec.verify(refresh_token, "refresh")
        except TokenError as exc:
            raise _unauthorized(f"invalid refresh token: {exc}") from None
        record = self.repo.refresh_token(claims.jti)
        if record is None or record.family_id != claims.sid or record.user_id != claims.user_id:
            raise _unauthorized("invalid refresh token: unknown to this service")
        if record.revoked:
            raise _unauthorized("this session has ended (logged out or revoked): log in again")
        user = self.repo.user(record.user_id)
        if user is None or user.disabled:
            raise _unauthorized("the user of this session no longer exists or is disabled")
        with self.store.atomic():
            spent = self.repo.mark_refresh_token_used(claims.jti)
            pair = self._issue(user, record.family_id, parent=claims.jti) if spent else None
        if pair is None:
            self.repo.revoke_family(record.family_id)
            raise _unauthorized(
                "this refresh token was used already, so it may have been stolen: the session "
                "is revoked, log in again"
            )
        return pair

    def logout(self, principal: Principal) -> int:
        """End the caller's session (its refresh family); how many live tokens it had."""
        if principal.via != "token" or principal.session_id is None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail="logout ends a user session; an API key is revoked with "
                "DELETE /api/v1/auth/api-keys/{id}",
            )
        return self.repo.revoke_family(principal.session_id)

    def revoke_sessions(self, user_id: int) -> int:
        """End every session of a user (404 for an unknown one); how many there were."""
        self.accounts.get(user_id)
        return self.repo.revoke_user_families(user_id)

    def _issue(self, user: UserRecord, family: str, *, parent: str | None) -> TokenPair:
        access, _ = self.codec.issue(user.id, "access", family, self.access_ttl_s)
        refresh, claims = self.codec.issue(user.id, "refresh", family, self.refresh_ttl_s)
        self.repo.add_refresh_token(
            claims.jti, family, user.id, claims.iat * _NS, claims.exp * _NS, parent_jti=parent
        )
        return TokenPair(access, refresh, self.access_ttl_s, self.refresh_ttl_s, family, user)

    # -- who is calling -------------------------------------------------------------------

    def principal_from_bearer(self, credential: str) -> Principal:
        """The caller behind an access token or an API key; 401 for anything else."""
        if credential.startswith("sk_"):
            return self._key_principal(credential)
        try:
            claims = self.codec.verify(credential, "access")
        except TokenError as exc:
            raise _unauthorized(f"invalid access token: {exc}") from None
        user = self.repo.user(claims.user_id)
        if user is None or user.disabled:
            raise _unauthorized("the user of this token no longer exists or is disabled")
        if not self.repo.family_is_live(claims.sid, user.id):
            raise _unauthorized("this session has ended (logged out or revoked): log in again")
        return Principal(
            user.id, user.username, user.role, role_scopes(user), "token", session_id=claims.sid
        )

    def _key_principal(self, key: str) -> Principal:
        if not looks_like_api_key(key):
            raise _unauthorized("invalid API key: not of the form sk_ followed by 43 characters")
        record = self.repo.api_key_by_prefix(key_prefix(key))
        if record is None or not keys_match(record.secret_hash, key):
            raise _unauthorized("invalid API key: unknown to this service")
        now = self.clock()
        if record.ts_revoked is not None:
            raise _unauthorized(f"API key {record.prefix}… was revoked")
        if record.ts_expires is not None and now >= record.ts_expires:
            raise _unauthorized(f"API key {record.prefix}… expired at {iso(record.ts_expires)}")
        user = self.repo.user(record.user_id)
        if user is None or user.disabled:
            raise _unauthorized("the owner of this API key no longer exists or is disabled")
        if record.ts_last_used is None or now - record.ts_last_used >= LAST_USED_RESOLUTION_NS:
            self.repo.touch_api_key(record.id, now)
        scopes = frozenset(record.scopes) & role_scopes(user)
        return Principal(user.id, user.username, user.role, scopes, "api_key", key_id=record.id)

    def check_second_factor(self, user_id: int, code: str) -> None:
        """403 unless `code` is a current unused TOTP code (or an unused recovery code) of
        the user, who must have TOTP enabled and not be locked."""
        user = self.repo.user(user_id)
        if user is None or user.disabled:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="unknown or disabled user")
        self.accounts.require_second_factor(user, code)

    # -- API keys -------------------------------------------------------------------------

    def create_api_key(
        self,
        principal: Principal,
        name: str,
        scopes: Iterable[str],
        *,
        expires_ns: int | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """A new key for the caller (a user session) and its record: the key is returned
        this once and stored only as a hash. 422 for a bad name, scope or expiry; 403 for
        a scope beyond the caller's role or a call made with an API key."""
        if principal.via != "token":
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="API keys are made from a user session, not with another API key",
            )
        label = name.strip()
        if not 1 <= len(label) <= 100:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"the key's name must be 1-100 characters, got {name!r}",
            )
        wanted = sorted(set(scopes))
        unknown = [s for s in wanted if s not in API_SCOPES]
        if not wanted or unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"scopes must be a non-empty subset of {', '.join(API_SCOPES)}, got "
                f"{', '.join(repr(s) for s in wanted) or 'none'}",
            )
        user = self.accounts.get(principal.user_id)
        beyond = [s for s in wanted if s not in role_scopes(user)]
        if beyond:
            held = ", ".join(sorted(role_scopes(user))) or "none"
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"a {user.role} holds {held}; it cannot give a key "
                f"{', '.join(repr(s) for s in beyond)}",
            )
        now = self.clock()
        if expires_ns is not None and expires_ns <= now:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"the key's expiry {iso(expires_ns)} is not in the future",
            )
        if expires_ns is not None and expires_ns > now + MAX_KEY_LIFETIME_NS:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"the key's expiry {iso(expires_ns)} is more than "
                f"{MAX_KEY_LIFETIME_NS // (86400 * _NS)} days ahead",
            )
        for _ in range(5):  # a prefix (48 random bits) taken already: draw again
            key = new_api_key()
            try:
                record = self.repo.add_api_key(
                    user.id,
                    label,
                    key_prefix(key),
                    key_hash(key),
                    wanted,
                    now,
                    ts_expires=expires_ns,
                )
            except StoreIntegrityError:
                continue
            return key, record
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="could not draw a key")

    def api_keys(self, user_id: int) -> list[ApiKeyRecord]:
        """The user's keys, revoked and expired ones included."""
        return self.repo.api_keys(user_id)

    def revoke_api_key(self, principal: Principal, key_id: int) -> ApiKeyRecord:
        """Revoke one of the caller's keys (an admin may revoke anyone's); 404 for a key
        the caller cannot see, 409 if it was revoked already."""
        record = self.repo.api_key(key_id)
        if record is None or (
            record.user_id != principal.user_id and "admin" not in principal.scopes
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no API key with id {key_id}")
        if not self.repo.revoke_api_key(key_id, self.clock()):
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"API key {key_id} was revoked already"
            )
        revoked = self.repo.api_key(key_id)
        assert revoked is not None
        return revoked
