"""JWTs (PyJWT): HS256 only, with the claims every token must carry and its type checked.

Access tokens (`typ` "access", 15 minutes) authenticate requests; refresh tokens (`typ`
"refresh", 14 days) buy a new pair once. Both name the session (`sid`, the refresh-token
family) so that ending the session ends its access tokens too.

Expiry is checked against the service's clock (`clock`, ns) rather than PyJWT's own, so
that one clock decides tokens, lockouts and TOTP alike (and tests can move it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import jwt

__all__ = ["ALGORITHM", "AUDIENCE", "ISSUER", "Claims", "TokenCodec", "TokenError"]

ALGORITHM = "HS256"
AUDIENCE = "sapphire-api"
ISSUER = "sapphire"
MIN_SECRET_BYTES = 32
#: a token issued up to this far in the future (clock skew between replicas) is accepted
IAT_LEEWAY_S = 30
_REQUIRED = ["sub", "typ", "aud", "iss", "exp", "iat", "jti", "sid"]

TokenType = Literal["access", "refresh"]


class TokenError(ValueError):
    """A token that is malformed, forged, expired or of the wrong type (the message says
    which, for the 401's detail)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token's claims."""

    user_id: int
    typ: TokenType
    jti: str
    sid: str
    iat: int
    exp: int


class TokenCodec:
    """Issues and verifies the service's JWTs with one HS256 key."""

    def __init__(self, secret: bytes, clock: Callable[[], int]) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            size = len(secret) if isinstance(secret, bytes) else type(secret).__name__
            raise ValueError(
                f"the JWT signing secret must be at least {MIN_SECRET_BYTES} bytes, got {size}"
            )
        self._secret = secret
        self._clock = clock

    def issue(self, user_id: int, typ: TokenType, sid: str, ttl_s: int) -> tuple[str, Claims]:
        """A new signed token and its claims (a fresh random `jti`)."""
        now = self._clock() // 1_000_000_000
        claims = Claims(user_id, typ, secrets.token_urlsafe(24), sid, now, now + ttl_s)
        payload = {
            "sub": str(user_id),
            "typ": typ,
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
            "sid": sid,
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), claims

    def verify(self, token: str, typ: TokenType) -> Claims:
        """The claims of a genuine, unexpired token of type `typ`; TokenError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:
                raise TokenError(f"token algorithm {header.get('alg')!r} is not {ALGORITHM}")
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                # exp and iat are checked below against the service's clock
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise TokenError("token audience is not sapphire-api") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token issuer is not sapphire") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature does not verify") from None
        except jwt.PyJWTError:
            raise TokenError("token is malformed") from None
        if payload["typ"] != typ:
            raise TokenError(f"a {payload['typ']!r} token was sent where {typ!r} is needed")
        exp, iat = payload["exp"], payload["iat"]
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise TokenError("token exp and iat must be integers")
        now_s = self._clock() / 1_000_000_000
        if now_s >= exp:
            raise TokenError("token has expired")
        if iat > now_s + IAT_LEEWAY_S:
            raise TokenError("token was issued in the future")
        sub, jti, sid = payload["sub"], payload["jti"], payload["sid"]
        if not (isinstance(sub, str) and sub.isdigit()):
            raise TokenError("token subject is not a user id")
        if not (isinstance(jti, str) and isinstance(sid, str) and jti and sid):
            raise TokenError("token jti and sid must be non-empty strings")
        return Claims(int(sub), typ, jti, sid, iat, exp)
