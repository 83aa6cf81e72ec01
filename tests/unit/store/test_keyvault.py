"""The exchange-key vault: keys sealed with AES-256-GCM under argon2id, never stored or
shown in the clear; a tampered ciphertext, a record's name/exchange/env changed (the
associated data), a ciphertext moved to another record and a wrong master key each give
a clear error, never garbage; the master key's sources and its file's permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sapphire.store import Store
from sapphire.store.keyvault import (
    DEFAULT_KDF,
    KdfParams,
    KeyExistsError,
    KeyNotFoundError,
    KeyVault,
    KeyVaultError,
    credentials_environ,
    load_master_key,
    remove_key,
    stored_keys,
)

MASTER = b"m" * 32
CHEAP = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)  # fast tests
KEY, SECRET = "AbCdEfGhIjKlMn7Qx2", "s3cr3t-Zq9vWw8Rr7Tt6Yy5Uu4"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'vault.db'}") as s:
        yield s


@pytest.fixture
def vault(store: Store) -> KeyVault:
    return KeyVault(store, MASTER, kdf=CHEAP)


def _sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_a_key_round_trips_and_is_listed_masked(vault: KeyVault) -> None:
    info = vault.add("bybit-test", "bybit", "testnet", KEY, SECRET)
    assert (info.name, info.exchange, info.env, info.key_hint) == (
        "bybit-test", "bybit", "testnet", "****7Qx2",
    )  # fmt: skip
    assert vault.decrypt("bybit-test") == (KEY, SECRET)
    assert vault.list() == [info] == stored_keys(vault.store)
    assert SECRET not in repr(vault.list()) and KEY not in repr(vault.list())
    assert vault.get("bybit-test") == info


def test_neither_key_nor_secret_is_stored_in_the_clear(tmp_path: Path, vault: KeyVault) -> None:
    vault.add("k1", "bybit", "mainnet", KEY, SECRET)
    vault.store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"k1" in stored  # the files do hold the record...
    for clear in (KEY, SECRET, KEY[:10], SECRET[:10]):  # ...but not the credentials
        assert clear.encode() not in stored


def test_each_record_has_its_own_salt_and_nonce(vault: KeyVault) -> None:
    vault.add("a", "bybit", "testnet", KEY, SECRET)
    vault.add("b", "bybit", "testnet", KEY, SECRET)
    with vault.store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT salt, nonce, ciphertext, kdf FROM exchange_keys"))
        a, b = rows.all()
    assert len(a.salt) == 16 and len(a.nonce) == 12  # a 96-bit nonce
    assert a.salt != b.salt and a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert a.kdf == "argon2id$v=19$m=8192,t=1,p=1"


def test_add_replace_remove(vault: KeyVault) -> None:
    first = vault.add("main", "bybit", "testnet", KEY, SECRET)
    with pytest.raises(KeyExistsError, match="'main' exists already"):
        vault.add("main", "bybit", "testnet", KEY, SECRET)
    replaced = vault.replace("main", "NewKey000000009Kd1", "new-secret", env="demo")
    assert replaced.key_hint == "****9Kd1" and replaced.env == "demo"
    assert replaced.ts_created == first.ts_created and replaced.ts_updated > first.ts_updated
    assert vault.decrypt("main") == ("NewKey000000009Kd1", "new-secret")
    assert vault.remove("main") == replaced
    assert vault.list() == []
    for call in (
        lambda: vault.replace("main", KEY, SECRET),
        lambda: vault.remove("main"),
        lambda: vault.decrypt("main"),
        lambda: remove_key(vault.store, "main"),
    ):
        with pytest.raises(KeyNotFoundError, match="no exchange key named 'main'"):
            call()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bad name", "bybit", "testnet", KEY, SECRET), "key name 'bad name' is invalid"),
        (("k", "By Bit", "testnet", KEY, SECRET), "exchange 'By Bit' is invalid"),
        (("k", "bybit", "prod", KEY, SECRET), "env 'prod' is invalid: one of testnet, demo"),
        (("k", "bybit", "testnet", "", SECRET), "the API key is invalid: it is empty"),
        (("k", "bybit", "testnet", KEY, f" {SECRET}\n"), "API secret is invalid: it has spaces"),
        (("k", "bybit", "testnet", KEY, "x" * 501), "API secret is invalid: it is 501 char"),
        (("k", "bybit", "testnet", "a\x00b", SECRET), "API key is invalid: it holds control"),
    ],
)
def test_bad_values_are_named_and_a_secret_never_is(
    vault: KeyVault, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(KeyVaultError, match=message) as caught:
        vault.add(*args)
    assert SECRET not in str(caught.value)


def test_a_wrong_master_key_is_a_clear_error(vault: KeyVault) -> None:
    vault.add("main", "bybit", "testnet", KEY, SECRET)
    other = KeyVault(vault.store, b"n" * 32, kdf=CHEAP)
    with pytest.raises(KeyVaultError, match="the master key does not open exchange key 'main'"):
        other.decrypt("main")
    assert other.list()[0].name == "main"  # listing needs no master key
    with pytest.raises(KeyVaultError, match="the master key from the caller is 31 bytes"):
        KeyVault(vault.store, b"x" * 31)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE exchange_keys SET ciphertext = :other",  # a flipped byte
        "UPDATE exchange_keys SET nonce = :nonce",
        "UPDATE exchange_keys SET env = 'mainnet'",  # the associated data
        "UPDATE exchange_keys SET exchange = 'binance'",
        "UPDATE exchange_keys SET name = 'other'",
    ],
)
def test_a_tampered_record_fails_its_integrity_check(vault: KeyVault, tamper: str) -> None:
    vault.add("main", "bybit", "testnet", KEY, SECRET)
    with vault.store.engine.connect() as conn:
        ciphertext = conn.execute(sa.text("SELECT ciphertext FROM exchange_keys")).scalar_one()
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    _sql(vault.store, tamper, other=flipped, nonce=b"\x00" * 12)
    name = "other" if "name =" in tamper else "main"
    with pytest.raises(KeyVaultError, match=f"exchange key '{name}' failed its integrity check"):
        vault.decrypt(name)


def test_a_ciphertext_moved_onto_another_record_does_not_open(vault: KeyVault) -> None:
    vault.add("test", "bybit", "testnet", "TestKey00000000001", "test-secret")
    vault.add("live", "bybit", "mainnet", KEY, SECRET)
    # everything sealed for "live" copied onto "test": only the associated data differs
    _sql(
        vault.store,
        "UPDATE exchange_keys SET (ciphertext, nonce, salt, key_check) = "
        "(SELECT ciphertext, nonce, salt, key_check FROM exchange_keys WHERE name = 'live') "
        "WHERE name = 'test'",
    )
    with pytest.raises(KeyVaultError, match="'test' failed its integrity check"):
        vault.decrypt("test")
    assert vault.decrypt("live") == (KEY, SECRET)


def test_each_record_keeps_its_own_kdf_cost(store: Store) -> None:
    KeyVault(store, MASTER, kdf=CHEAP).add("cheap", "bybit", "demo", KEY, SECRET)
    default = KeyVault(store, MASTER)
    assert default.kdf == DEFAULT_KDF and DEFAULT_KDF.encode() == "argon2id$v=19$m=65536,t=3,p=4"
    assert default.decrypt("cheap") == (KEY, SECRET)
    with pytest.raises(KeyVaultError, match="are invalid: t >= 1, p >= 1, m >= 8 \\* p"):
        KdfParams(time_cost=1, memory_kib=4, parallelism=1)
    with pytest.raises(KeyVaultError, match="'scrypt' are not argon2id's"):
        KdfParams.decode("scrypt")


def test_credentials_environ_is_what_the_bybit_venue_reads(vault: KeyVault) -> None:
    from sapphire.venues.bybit import BybitEnvironment, credentials_from_env

    vault.add("t", "bybit", "testnet", KEY, SECRET)
    vault.add("d", "bybit", "demo", "DemoKey0000000000D", "demo-secret")
    environ = credentials_environ(vault, "t")
    assert environ == {"BYBIT_TESTNET_API_KEY": KEY, "BYBIT_TESTNET_API_SECRET": SECRET}
    assert credentials_from_env(BybitEnvironment.TESTNET, environ) == (KEY, SECRET)
    demo = credentials_environ(vault, "d")
    assert credentials_from_env(BybitEnvironment.DEMO, demo) == (
        "DemoKey0000000000D",
        "demo-secret",
    )


# -- the master key ------------------------------------------------------------------------


def test_the_master_key_comes_from_the_variable_first(tmp_path: Path) -> None:
    file = tmp_path / "mk"
    file.write_bytes(b"f" * 40)
    both = {"SAPPHIRE_MASTER_KEY": "e" * 32, "SAPPHIRE_MASTER_KEY_FILE": str(file)}
    assert load_master_key(tmp_path, both) == b"e" * 32
    assert load_master_key(tmp_path, {"SAPPHIRE_MASTER_KEY_FILE": str(file)}) == b"f" * 40
    with pytest.raises(KeyVaultError, match=r"from \$SAPPHIRE_MASTER_KEY is 5 bytes; at least 32"):
        load_master_key(tmp_path, {"SAPPHIRE_MASTER_KEY": "short"})
    missing = {"SAPPHIRE_MASTER_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(KeyVaultError, match=f"={tmp_path / 'nope'} cannot be read"):
        load_master_key(tmp_path, missing)
    assert not (tmp_path / "secrets").exists()  # nothing made when a variable is set


def test_the_master_key_file_is_made_once_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(KeyVaultError, match=r"no master key: set \$SAPPHIRE_MASTER_KEY.*keys add"):
        load_master_key(home, {}, create=False)
    key = load_master_key(home, {}, create=True)
    path = home / "secrets" / "master.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_master_key(home, {}, create=True) == key  # not made again
    assert load_master_key(home, {}) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyVaultError, match=f"{path} is readable by others \\(mode 0644\\)"):
        load_master_key(home, {})
