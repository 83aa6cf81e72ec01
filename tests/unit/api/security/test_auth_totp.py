"""TOTP codes are accepted for the current step and one either side, once (a step no
later than the last one used is refused); recovery codes are random, readable and
normalised before hashing."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from sapphire.api.security.totp import (
    looks_like_totp,
    match_totp,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    otpauth_uri,
)

NOW = 1_800_000_015.0  # 15 s into a step
STEP = int(NOW) // 30


@pytest.fixture
def secret() -> str:
    return new_totp_secret()


def _code(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(NOW + 30 * steps)


def test_the_current_and_adjacent_codes_match_their_step(secret: str) -> None:
    assert match_totp(secret, _code(secret), NOW, None) == STEP
    assert match_totp(secret, _code(secret, -1), NOW, None) == STEP - 1
    assert match_totp(secret, _code(secret, 1), NOW, None) == STEP + 1
    assert match_totp(secret, _code(secret)[:3] + " " + _code(secret)[3:], NOW, None) == STEP


def test_codes_outside_the_window_or_malformed_do_not_match(secret: str) -> None:
    for steps in (-3, -2, 2, 3):
        code = _code(secret, steps)
        if code not in {_code(secret, s) for s in (-1, 0, 1)}:  # (a 1-in-10^6 collision)
            assert match_totp(secret, code, NOW, None) is None
    for bad in ("", "12345", "1234567", "abcdef", "12 34 5x"):
        assert match_totp(secret, bad, NOW, None) is None
    other = new_totp_secret()
    if _code(secret) not in {_code(other, s) for s in (-1, 0, 1)}:
        assert match_totp(other, _code(secret), NOW, None) is None  # another user's seed


def test_a_used_step_is_never_accepted_again(secret: str) -> None:
    step = match_totp(secret, _code(secret), NOW, None)
    assert step == STEP
    assert match_totp(secret, _code(secret), NOW, step) is None  # replay
    assert match_totp(secret, _code(secret, -1), NOW, step) is None  # an older code
    assert match_totp(secret, _code(secret), NOW + 10, step) is None  # later, same step
    assert match_totp(secret, _code(secret, 1), NOW + 30, step) == STEP + 1  # the next one


def test_secrets_and_the_otpauth_uri(secret: str) -> None:
    assert re.fullmatch(r"[A-Z2-7]{32}", secret) and secret != new_totp_secret()
    uri = urlparse(otpauth_uri(secret, "alice"))
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Sapphire:alice")
    assert parse_qs(uri.query) == {"secret": [secret], "issuer": ["Sapphire"]}


def test_recovery_codes_are_ten_distinct_readable_codes() -> None:
    codes = new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", code)
        assert not looks_like_totp(code)
    assert new_recovery_codes() != codes


def test_recovery_codes_are_normalised() -> None:
    assert normalise_recovery_code("k7qm2xhp9dwa") == "K7QM-2XHP-9DWA"
    assert normalise_recovery_code(" K7QM 2XHP-9dwa ") == "K7QM-2XHP-9DWA"
    assert looks_like_totp("123 456") and not looks_like_totp("K7QM-2XHP")
