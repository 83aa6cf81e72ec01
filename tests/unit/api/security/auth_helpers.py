"""What the auth tests share: a clock the test moves, cheap argon2 parameters (the
production ones cost ~0.1 s a hash), the signing secret, and a TOTP code at the clock."""

from __future__ import annotations

import time

import pyotp
from argon2 import PasswordHasher

from sapphire.api.security.passwords import Passwords

SECRET = b"k" * 16 + b"0123456789abcdef"  # 32 bytes
PASSWORD = "correct horse battery"


class Clock:
    """Nanoseconds since the epoch, moved by the test (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000_000)


def cheap_passwords(time_cost: int = 1) -> Passwords:
    """argon2id with the smallest cost (`time_cost` differs to test rehashing)."""
    return Passwords(PasswordHasher(time_cost=time_cost, memory_cost=8, parallelism=1))


def totp_now(secret: str, clock: Clock, offset_steps: int = 0) -> str:
    """The code an authenticator app shows at the clock's time (+ steps of 30 s)."""
    return pyotp.TOTP(secret).at(clock.now / 1e9 + 30 * offset_steps)
