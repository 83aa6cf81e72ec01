"""Passwords: the policy (12+ characters, a cap, not blank), argon2id hashes that verify
only the right password, and `needs_rehash` when the parameters change."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from auth_helpers import cheap_passwords

from sapphire.api.security.passwords import Passwords, check_password, check_username


def test_the_password_policy() -> None:
    assert check_password("a" * 11 + "b") == "a" * 11 + "b"
    with pytest.raises(ValueError, match="has 11 characters; at least 12 are needed"):
        check_password("short passw")
    with pytest.raises(ValueError, match="has 1025 characters; at most 1024"):
        check_password("x" * 1025)
    with pytest.raises(ValueError, match="only whitespace"):
        check_password(" " * 12)


def test_a_refused_password_is_not_echoed() -> None:
    with pytest.raises(ValueError) as caught:
        check_password("hunter2hunt")
    assert "hunter2hunt" not in str(caught.value)


@pytest.mark.parametrize("name", ["alice", "Bob_1", "ops.team-2", "a" * 64, "  carol "])
def test_usernames_are_lower_cased(name: str) -> None:
    assert check_username(name) == name.strip().lower()


@pytest.mark.parametrize("name", ["ab", "a" * 65, "-alice", "al ice", "alice!", "", "ålice"])
def test_bad_usernames_are_named(name: str) -> None:
    with pytest.raises(ValueError, match=f"username {name!r} must be 3-64 characters"):
        check_username(name)


def test_hashes_are_argon2id_salted_and_verify_only_the_password() -> None:
    passwords = cheap_passwords()
    first, second = passwords.hash("correct horse battery"), passwords.hash("correct horse battery")
    assert first.startswith("$argon2id$") and first != second  # salted
    assert "correct horse" not in first
    assert passwords.verify(first, "correct horse battery")
    assert not passwords.verify(first, "correct horse batterY")
    assert not passwords.verify("not a hash", "correct horse battery")
    passwords.verify_dummy("anything")  # spends the time, answers nothing


def test_the_default_hasher_is_argon2id_with_rfc9106_low_memory_costs() -> None:
    hasher = Passwords().hasher
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 65536, 4)
    assert hasher.type.name == "ID"


def test_a_hash_made_with_other_parameters_needs_rehashing() -> None:
    old, new = cheap_passwords(time_cost=1), cheap_passwords(time_cost=2)
    stored = old.hash("correct horse battery")
    assert not old.needs_rehash(stored)
    assert new.needs_rehash(stored)
    assert new.verify(stored, "correct horse battery")  # still verifies meanwhile
    assert Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)).needs_rehash(
        "garbage"
    )
