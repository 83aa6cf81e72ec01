"""API keys: `sk_` + 43 random URL-safe characters (256 bits). The first 11 characters
(`sk_` and 8 more) are the key's prefix, stored in clear to find it and show it in lists;
the whole key is stored as its SHA-256 (a slow hash adds nothing to a 256-bit secret and
would cost every request)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = ["KEY_MARK", "key_hash", "key_prefix", "keys_match", "looks_like_api_key", "new_api_key"]

KEY_MARK = "sk_"
PREFIX_LENGTH = len(KEY_MARK) + 8
_KEY = re.compile(r"sk_[A-Za-z0-9_-]{43}")


def new_api_key() -> str:
    """A new random API key."""
    return KEY_MARK + secrets.token_urlsafe(32)


def looks_like_api_key(credential: str) -> bool:
    """True if `credential` has an API key's shape (not a JWT)."""
    return bool(_KEY.fullmatch(credential))


def key_prefix(key: str) -> str:
    """The key's stored, displayable prefix."""
    return key[:PREFIX_LENGTH]


def key_hash(key: str) -> str:
    """The key's stored hash (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_match(stored_hash: str, key: str) -> bool:
    """True if `key` hashes to `stored_hash` (compared in constant time)."""
    return hmac.compare_digest(stored_hash, key_hash(key))
