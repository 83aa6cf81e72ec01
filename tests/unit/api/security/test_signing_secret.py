"""The signing secret: SAPPHIRE_API_SECRET, else SAPPHIRE_API_SECRET_FILE, else
$SAPPHIRE_HOME/secrets/api.secret; no default; refused when short, repetitive or readable
by others; `ensure_signing_secret` makes the file 0600 in a 0700 folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sapphire.api.security.secrets import (
    SigningSecretError,
    default_secret_path,
    ensure_signing_secret,
    load_signing_secret,
)

GOOD = "3f1a9c0e7b2d4f6a8c1e3b5d7f9a2c4e"  # 32 characters


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable: the code must not rely on it."""
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def test_without_any_secret_the_service_refuses(tmp_path: Path) -> None:
    with pytest.raises(SigningSecretError) as caught:
        load_signing_secret(tmp_path, {})
    message = str(caught.value)
    assert "no API signing secret" in message
    assert "SAPPHIRE_API_SECRET" in message and "SAPPHIRE_API_SECRET_FILE" in message
    assert "sapphire users create-admin" in message
    assert str(tmp_path / "secrets" / "api.secret") in message


def test_the_environment_variable_comes_first(tmp_path: Path) -> None:
    path = tmp_path / "other.secret"
    path.write_text("f" * 8 + GOOD)
    env = {"SAPPHIRE_API_SECRET": f"  {GOOD}\n", "SAPPHIRE_API_SECRET_FILE": str(path)}
    assert load_signing_secret(tmp_path, env) == GOOD.encode()
    assert (
        load_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET_FILE": str(path)})
        == ("f" * 8 + GOOD).encode()
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (GOOD[:31], "has 31 bytes; at least 32 are needed"),
        ("", "no API signing secret"),  # empty counts as unset
        ("ab" * 20, "repeats a few characters"),
        ("changeme", "has 8 bytes"),
    ],
)
def test_weak_secrets_are_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(SigningSecretError, match=message):
        load_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET": value})


def test_a_secret_file_that_is_missing_or_short_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.secret"
    with pytest.raises(SigningSecretError, match=f"SAPPHIRE_API_SECRET_FILE: {missing} does not"):
        load_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET_FILE": str(missing)})
    short = tmp_path / "short.secret"
    short.write_text("0123456789")
    with pytest.raises(SigningSecretError, match=f"in SAPPHIRE_API_SECRET_FILE \\({short}\\)"):
        load_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET_FILE": str(short)})


def test_ensure_creates_an_owner_only_secret_once(tmp_path: Path, loose_umask: None) -> None:
    home = tmp_path / "home"
    created = ensure_signing_secret(home, {})
    path = default_secret_path(home)
    assert created == path
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    text = path.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0  # 32 random bytes as hex
    assert load_signing_secret(home, {}) == text.strip().encode()
    assert ensure_signing_secret(home, {}) is None  # there already: kept
    assert path.read_text() == text
    other = tmp_path / "home2"
    ensure_signing_secret(other, {})
    assert default_secret_path(other).read_text() != text  # random


def test_ensure_leaves_a_configured_secret_alone(tmp_path: Path) -> None:
    assert ensure_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET": GOOD}) is None
    assert not default_secret_path(tmp_path).exists()
    with pytest.raises(SigningSecretError, match="has 4 bytes"):
        ensure_signing_secret(tmp_path, {"SAPPHIRE_API_SECRET": "weak"})
    assert not default_secret_path(tmp_path).exists()


def test_a_secrets_folder_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    ensure_signing_secret(tmp_path, {})
    assert _mode(folder) == 0o700


def test_a_default_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    ensure_signing_secret(tmp_path, {})
    path = default_secret_path(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(SigningSecretError, match=r"readable or writable by other users \(mode "
                       r"0644\): run `chmod 600"):  # fmt: skip
        load_signing_secret(tmp_path, {})
