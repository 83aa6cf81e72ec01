"""TOTP (RFC 6238, 30-second steps, 6 digits, via pyotp) and recovery codes.

A code is accepted for the current step or one step either side (clock drift), and only
for a step later than the last one accepted: the caller stores the step `match_totp`
returns, so that a code, once used, is refused (replay).
"""

from __future__ import annotations

import hmac
import re
import secrets

import pyotp

__all__ = [
    "ISSUER",
    "RECOVERY_CODE_COUNT",
    "looks_like_totp",
    "match_totp",
    "new_recovery_codes",
    "new_totp_secret",
    "normalise_recovery_code",
    "otpauth_uri",
]

ISSUER = "Sapphire"
STEP_S = 30
#: accepted steps either side of the current one
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# no 0/O/1/I/L: a code is read from paper and typed back
_RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_RECOVERY_GROUPS = 3
_GROUP_LENGTH = 4
_TOTP = re.compile(r"\d{6}")


def new_totp_secret() -> str:
    """A new random base32 TOTP seed (160 bits)."""
    return pyotp.random_base32()


def otpauth_uri(secret: str, username: str) -> str:
    """The `otpauth://` URI an authenticator app scans (as a QR code) or imports."""
    return pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=username, issuer_name=ISSUER)


def looks_like_totp(code: str) -> bool:
    """True for six digits (spaces allowed), the shape of a TOTP code."""
    return bool(_TOTP.fullmatch(code.replace(" ", "")))


def match_totp(secret: str, code: str, now_s: float, last_step: int | None) -> int | None:
    """The step `code` is valid for (now, or one step either side) if it is later than
    `last_step`, else None."""
    code = code.replace(" ", "")
    if not _TOTP.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    current = int(now_s) // STEP_S
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # every candidate is compared (no early exit): the time taken says nothing
        if hmac.compare_digest(totp.at(step * STEP_S), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """`count` random single-use codes like `K7QM-2XHP-9DWA` (about 59 bits each)."""
    return [
        "-".join(
            "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_GROUP_LENGTH))
            for _ in range(_RECOVERY_GROUPS)
        )
        for _ in range(count)
    ]


def normalise_recovery_code(code: str) -> str:
    """A recovery code as it was hashed: upper case, in dash-separated groups of four
    (so that `k7qm2xhp9dwa` and `K7QM-2XHP-9DWA` are the same code)."""
    raw = re.sub(r"[\s-]", "", code).upper()
    return "-".join(raw[i : i + _GROUP_LENGTH] for i in range(0, len(raw), _GROUP_LENGTH))
