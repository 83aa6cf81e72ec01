"""JWTs: only genuine HS256 tokens of the right type, audience, issuer and age pass —
forged ones (wrong key, `alg: none`, HS512, RS256, edited claims), expired ones and a
refresh token used as an access token (or the reverse) are refused, by the codec and by
`AuthService.principal_from_bearer` (401)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from auth_helpers import PASSWORD, SECRET, Clock
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import HTTPException

from sapphire.api.security.service import AuthService
from sapphire.api.security.tokens import TokenCodec, TokenError


def _claims(clock: Clock, **changes: Any) -> dict[str, Any]:
    now = clock.now // 1_000_000_000
    claims: dict[str, Any] = {
        "sub": "1",
        "typ": "access",
        "aud": "sapphire-api",
        "iss": "sapphire",
        "iat": now,
        "exp": now + 900,
        "jti": "j1",
        "sid": "s1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def codec(clock: Clock) -> TokenCodec:
    return TokenCodec(SECRET, clock)


def test_a_token_round_trips_with_its_claims(codec: TokenCodec) -> None:
    token, claims = codec.issue(7, "access", "family-1", 900)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    got = codec.verify(token, "access")
    assert got == claims
    assert (got.user_id, got.typ, got.sid, got.exp - got.iat) == (7, "access", "family-1", 900)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"sub", "typ", "aud", "iss", "exp", "iat", "jti", "sid"}
    assert (payload["aud"], payload["iss"]) == ("sapphire-api", "sapphire")
    other, _ = codec.issue(7, "access", "family-1", 900)
    assert codec.verify(other, "access").jti != got.jti  # every token its own id


def test_a_token_signed_with_another_key_is_refused(codec: TokenCodec, clock: Clock) -> None:
    forged = jwt.encode(_claims(clock), b"x" * 32 + b"another key!", algorithm="HS256")
    with pytest.raises(TokenError, match="signature does not verify"):
        codec.verify(forged, "access")
    genuine, _ = codec.issue(1, "access", "s", 900)
    head, _, signature = genuine.split(".")
    edited = _b64({**jwt.decode(genuine, options={"verify_signature": False}), "sub": "2"})
    with pytest.raises(TokenError, match="signature"):
        codec.verify(f"{head}.{edited}.{signature}", "access")


def test_alg_none_is_refused(codec: TokenCodec, clock: Clock) -> None:
    unsigned = jwt.encode(_claims(clock), None, algorithm="none")
    with pytest.raises(TokenError, match="algorithm 'none' is not HS256"):
        codec.verify(unsigned, "access")
    # the same by hand, with an empty signature and an upper-case variant
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims(clock))}."
        with pytest.raises(TokenError, match="is not HS256"):
            codec.verify(token, "access")


@pytest.mark.filterwarnings("ignore:The HMAC key is 32 bytes long")
def test_other_algorithms_are_refused_even_with_the_right_key(
    codec: TokenCodec, clock: Clock
) -> None:
    hs512 = jwt.encode(_claims(clock), SECRET, algorithm="HS512")
    with pytest.raises(TokenError, match="'HS512' is not HS256"):
        codec.verify(hs512, "access")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(_claims(clock), private, algorithm="RS256")
    with pytest.raises(TokenError, match="'RS256' is not HS256"):
        codec.verify(rs256, "access")
    # an HS256 header whose body is signed with HS512 does not verify either
    head = _b64({"alg": "HS256", "typ": "JWT"})
    _, body, sig = hs512.split(".")
    with pytest.raises(TokenError, match="signature"):
        codec.verify(f"{head}.{body}.{sig}", "access")


def test_expiry_is_checked_against_the_clock(codec: TokenCodec, clock: Clock) -> None:
    token, _ = codec.issue(1, "access", "s", 900)
    clock.advance(899)
    assert codec.verify(token, "access").user_id == 1
    clock.advance(1)
    with pytest.raises(TokenError, match="expired"):
        codec.verify(token, "access")
    future = jwt.encode(_claims(clock, iat=clock.now // 10**9 + 3600), SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="issued in the future"):
        codec.verify(future, "access")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aud": "another-api"}, "audience is not sapphire-api"),
        ({"iss": "someone-else"}, "issuer is not sapphire"),
        ({"sid": None}, "lacks the 'sid' claim"),
        ({"exp": None}, "lacks the 'exp' claim"),
        ({"typ": None}, "lacks the 'typ' claim"),
        ({"sub": "alice"}, "subject is not a user id"),
        ({"exp": "tomorrow"}, "exp and iat must be integers"),
    ],
)
def test_claims_are_all_required_and_checked(
    codec: TokenCodec, clock: Clock, change: dict[str, Any], message: str
) -> None:
    token = jwt.encode(_claims(clock, **change), SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match=message):
        codec.verify(token, "access")


def test_token_types_are_not_interchangeable(codec: TokenCodec) -> None:
    access, _ = codec.issue(1, "access", "s", 900)
    refresh, _ = codec.issue(1, "refresh", "s", 3600)
    with pytest.raises(TokenError, match="'refresh' token was sent where 'access' is needed"):
        codec.verify(refresh, "access")
    with pytest.raises(TokenError, match="'access' token was sent where 'refresh' is needed"):
        codec.verify(access, "refresh")


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("", "malformed"),
        ("abc", "malformed"),
        ("a.b.c", "malformed"),
        ("😀.😀.😀", "malformed"),
        ("eyJhbGciOiJIUzI1NiJ9..", "signature does not verify"),
    ],
)
def test_garbage_is_refused(codec: TokenCodec, garbage: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        codec.verify(garbage, "access")


def test_a_short_secret_is_refused(clock: Clock) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes, got 31"):
        TokenCodec(b"s" * 31, clock)
    with pytest.raises(ValueError, match="at least 32 bytes, got 31"):
        AuthService(None, b"s" * 31)  # type: ignore[arg-type]  # refused before use


@pytest.mark.filterwarnings("ignore:The HMAC key is 32 bytes long")
def test_the_service_answers_401_to_every_forgery(auth: AuthService, clock: Clock) -> None:
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    pair = auth.login("alice", PASSWORD)
    assert auth.principal_from_bearer(pair.access_token).user_id == user.id
    sid = pair.session_id
    forgeries = {
        "wrong key": jwt.encode(
            _claims(clock, sub=str(user.id), sid=sid), b"w" * 40, algorithm="HS256"
        ),
        "alg none": jwt.encode(_claims(clock, sub=str(user.id), sid=sid), None, algorithm="none"),
        "HS512": jwt.encode(_claims(clock, sub=str(user.id), sid=sid), SECRET, algorithm="HS512"),
        "refresh as access": pair.refresh_token,
    }
    for name, token in forgeries.items():
        with pytest.raises(HTTPException) as caught:
            auth.principal_from_bearer(token)
        assert caught.value.status_code == 401, name
        assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(HTTPException) as caught:
        auth.refresh(pair.access_token)  # access as refresh
    assert caught.value.status_code == 401
    assert "'access' token was sent where 'refresh' is needed" in caught.value.detail
    clock.advance(900)
    with pytest.raises(HTTPException, match="expired"):
        auth.principal_from_bearer(pair.access_token)


def test_a_genuine_token_of_an_unknown_session_is_refused(auth: AuthService, clock: Clock) -> None:
    """Signed with the right key (e.g. a leaked secret rotated away is not modelled) but
    naming a session the service never started: refused."""
    user, _ = auth.accounts.create("alice", PASSWORD, "trader")
    token, _ = auth.codec.issue(user.id, "access", "never-started", 900)
    with pytest.raises(HTTPException, match="session has ended"):
        auth.principal_from_bearer(token)
