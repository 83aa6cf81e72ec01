"""Passwords: the policy a new one must meet and argon2id hashing (argon2-cffi).

`PasswordHasher()`'s defaults are argon2id at RFC 9106's low-memory profile (t=3,
m=64 MiB, p=4); a stored hash made with other parameters is rehashed at the next
successful login (`needs_rehash`).
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "Passwords",
    "check_password",
    "check_username",
]

MIN_PASSWORD_LENGTH = 12
#: longer inputs are refused before hashing (they would only cost the server time)
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{2,63}")


def check_username(username: str) -> str:
    """`username` lower-cased, or ValueError naming it unless it is 3-64 letters, digits,
    `_`, `.` or `-` starting with a letter or digit."""
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise ValueError(
            f"username {username!r} must be 3-64 characters: letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """`password`, or ValueError (without echoing it) unless it has 12-1024 characters
    and is not blank."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"the password has {len(password)} characters; at least {MIN_PASSWORD_LENGTH} "
            "are needed"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"the password has {len(password)} characters; at most {MAX_PASSWORD_LENGTH} "
            "are accepted"
        )
    if not password.strip():
        raise ValueError("the password is only whitespace")
    return password


class Passwords:
    """argon2id hashing with one set of parameters (`hasher`, default argon2-cffi's)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        # verified against when the user is unknown, so that the answer takes as long
        self._dummy = self.hasher.hash("not a password: the unknown user's stand-in")

    def hash(self, secret: str) -> str:
        """The argon2id hash of `secret` (a password or a recovery code)."""
        return self.hasher.hash(secret)

    def verify(self, stored: str, secret: str) -> bool:
        """True if `secret` matches the `stored` hash (False for a malformed hash)."""
        try:
            return bool(self.hasher.verify(stored, secret))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, secret: str) -> None:
        """Spend a verification's time on nothing (the unknown-user path of a login)."""
        self.verify(self._dummy, secret)

    def needs_rehash(self, stored: str) -> bool:
        """True if `stored` was made with other parameters than this hasher's."""
        try:
            return bool(self.hasher.check_needs_rehash(stored))
        except InvalidHashError:
            return True
