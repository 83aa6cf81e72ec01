"""Fixtures of the auth tests: a store in a temporary SQLite file, a clock the test moves,
cheap argon2 parameters and an `AuthService` over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_helpers import SECRET, Clock, cheap_passwords

from sapphire.api.security.passwords import Passwords
from sapphire.api.security.service import AuthService
from sapphire.store import Store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def passwords() -> Passwords:
    return cheap_passwords()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'auth.db'}") as s:
        yield s


@pytest.fixture
def auth(store: Store, clock: Clock, passwords: Passwords) -> AuthService:
    return AuthService(store, SECRET, passwords=passwords, clock=clock)
