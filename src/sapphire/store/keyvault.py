"""`KeyVault`: exchange API keys encrypted at rest (the `exchange_keys` table).

Each record's key and secret are encrypted together with AES-256-GCM under a key derived
from the master secret with argon2id (a random 16-byte salt per record, its parameters
stored with it), a random 96-bit nonce, and the record's name, exchange and environment
as associated data: a ciphertext copied onto another record does not decrypt. A wrong
master secret is told apart from a damaged record by `key_check` (an HMAC of a constant
under the derived key), and either is a `KeyVaultError`, never garbage.

Only the node that trades with a key decrypts it (`decrypt`, `credentials_environ`);
`list` shows the API key's last four characters and never the secret.

The master secret (`load_master_key`): `SAPPHIRE_MASTER_KEY`, else the file named by
`SAPPHIRE_MASTER_KEY_FILE`, else `$SAPPHIRE_HOME/secrets/master.key` (32 random bytes,
mode 0600 in a 0700 folder, created on first use by `sapphire keys add`). It is used byte
for byte, and must be at least 32 bytes.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sapphire.store.base import StoreBase
from sapphire.store.models_audit import ExchangeKeyRow

__all__ = [
    "DEFAULT_KDF",
    "ENVIRONMENTS",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE_ENV",
    "ExchangeKeyInfo",
    "KdfParams",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyVault",
    "KeyVaultError",
    "credentials_environ",
    "load_master_key",
    "master_key_path",
    "remove_key",
    "stored_keys",
]

MASTER_KEY_ENV = "SAPPHIRE_MASTER_KEY"
MASTER_KEY_FILE_ENV = "SAPPHIRE_MASTER_KEY_FILE"
#: the shortest master secret accepted, in bytes
MIN_MASTER_BYTES = 32
#: the environments a key can be for (those of `sapphire.venues.bybit`)
ENVIRONMENTS = ("testnet", "demo", "mainnet", "local")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EXCHANGE = re.compile(r"[a-z][a-z0-9]{0,29}")
_KDF = re.compile(r"argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)")
_CHECK = b"sapphire exchange-key check v1"
_AAD = b"sapphire exchange-key v1\x00"


class KeyVaultError(ValueError):
    """A key cannot be stored or opened (a bad value, a wrong master key, a damaged record)."""


class KeyNotFoundError(KeyVaultError):
    """No stored exchange key has that name."""


class KeyExistsError(KeyVaultError):
    """An exchange key of that name is stored already."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """argon2id's cost: passes, memory in KiB, lanes (default: RFC 9106's second
    recommended option, 3 passes over 64 MiB in 4 lanes)."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def __post_init__(self) -> None:
        if min(self.time_cost, self.parallelism) < 1 or self.memory_kib < 8 * self.parallelism:
            raise KeyVaultError(
                f"argon2id parameters t={self.time_cost}, m={self.memory_kib} KiB, "
                f"p={self.parallelism} are invalid: t >= 1, p >= 1, m >= 8 * p"
            )

    def encode(self) -> str:
        """The stored form, e.g. `argon2id$v=19$m=65536,t=3,p=4`."""
        return f"argon2id$v=19$m={self.memory_kib},t={self.time_cost},p={self.parallelism}"

    @classmethod
    def decode(cls, text: str) -> KdfParams:
        """The parameters stored as `text` (KeyVaultError if it is not `encode`'s form)."""
        found = _KDF.fullmatch(text)
        if found is None:
            raise KeyVaultError(f"stored key-derivation parameters {text!r} are not argon2id's")
        memory, passes, lanes = (int(g) for g in found.groups())
        return cls(time_cost=passes, memory_kib=memory, parallelism=lanes)

    def derive(self, master: bytes, salt: bytes) -> bytes:
        """The 32-byte AES key for `salt`."""
        return hash_secret_raw(
            secret=master, salt=salt, time_cost=self.time_cost, memory_cost=self.memory_kib,
            parallelism=self.parallelism, hash_len=32, type=Type.ID,
        )  # fmt: skip


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True, slots=True)
class ExchangeKeyInfo:
    """What may be shown of a stored key: never the secret, the API key only masked."""

    name: str
    exchange: str
    env: str
    key_hint: str
    ts_created: int
    ts_updated: int


def master_key_path(home: Path) -> Path:
    """Where the generated master key lives: `<home>/secrets/master.key`."""
    return home / "secrets" / "master.key"


def load_master_key(
    home: Path, environ: Mapping[str, str] | None = None, create: bool = False
) -> bytes:
    """The master secret: `$SAPPHIRE_MASTER_KEY`, else the file `$SAPPHIRE_MASTER_KEY_FILE`,
    else `<home>/secrets/master.key`, which `create=True` makes when missing (32 random
    bytes, mode 0600, folder 0700). KeyVaultError naming the source when there is none, it
    is shorter than 32 bytes, or the generated file is readable by others."""
    env = os.environ if environ is None else environ
    value = env.get(MASTER_KEY_ENV, "")
    if value:
        return _long_enough(value.encode("utf-8"), f"${MASTER_KEY_ENV}")
    named = env.get(MASTER_KEY_FILE_ENV, "")
    if named:
        path = Path(named).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyVaultError(
                f"${MASTER_KEY_FILE_ENV}={named} cannot be read: {exc.strerror}"
            ) from None
        return _long_enough(raw, f"${MASTER_KEY_FILE_ENV} ({path})")
    path = master_key_path(home)
    if not path.exists():
        if not create:
            raise KeyVaultError(
                f"no master key: set ${MASTER_KEY_ENV} or ${MASTER_KEY_FILE_ENV}, or add a key "
                f"with `sapphire keys add`, which creates {path}"
            )
        _create_master(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyVaultError(
            f"{path} is readable by others (mode {mode:04o}): run `chmod 600 {path}`"
        )
    return _long_enough(path.read_bytes(), str(path))


def _long_enough(raw: bytes, source: str) -> bytes:
    if len(raw) < MIN_MASTER_BYTES:
        raise KeyVaultError(
            f"the master key from {source} is {len(raw)} bytes; at least {MIN_MASTER_BYTES} "
            "are needed (e.g. the output of `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`)"
        )
    return raw


def _create_master(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by another process meanwhile: use that one
        return
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_hint(api_key: str) -> str:
    return "****" + (api_key[-4:] if len(api_key) >= 8 else "")


def _checked(name: str, exchange: str, env: str) -> tuple[str, str, str]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeyVaultError(
            f"key name {name!r} is invalid: 1..100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if not isinstance(exchange, str) or not _EXCHANGE.fullmatch(exchange):
        raise KeyVaultError(f"exchange {exchange!r} is invalid: a ccxt exchange id such as 'bybit'")
    if env not in ENVIRONMENTS:
        raise KeyVaultError(f"env {env!r} is invalid: one of {', '.join(ENVIRONMENTS)}")
    return name, exchange, env


def _credential(value: object, what: str) -> str:
    """`value` checked (the message never holds it: it is a secret)."""
    if not isinstance(value, str) or not value:
        problem = "it is empty"
    elif value != value.strip():
        problem = "it has spaces or line breaks around it"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        problem = "it holds control characters"
    elif len(value) > 500:
        problem = f"it is {len(value)} characters"
    else:
        return value
    raise KeyVaultError(f"the {what} is invalid: {problem} (1..500 characters expected)")


def _row(conn: sa.Connection, name: str) -> Any:
    return conn.execute(sa.select(ExchangeKeyRow).where(ExchangeKeyRow.name == name)).first()


def _info(row: Any) -> ExchangeKeyInfo:
    return ExchangeKeyInfo(
        name=row.name, exchange=row.exchange, env=row.env, key_hint=row.key_hint,
        ts_created=int(row.ts_created), ts_updated=int(row.ts_updated),
    )  # fmt: skip


class KeyVault:
    """The exchange keys in `store`, sealed and opened with `master` (see the module
    docstring); `kdf` is the cost of new records (each record keeps its own)."""

    def __init__(self, store: StoreBase, master: bytes, *, kdf: KdfParams = DEFAULT_KDF) -> None:
        if not isinstance(master, bytes):
            raise KeyVaultError(f"the master key must be bytes, got {type(master).__name__}")
        self.store = store
        self._master = _long_enough(master, "the caller")
        self.kdf = kdf

    def __repr__(self) -> str:
        return f"KeyVault({self.store!r})"

    # -- writing -----------------------------------------------------------------------

    def add(
        self, name: str, exchange: str, env: str, api_key: str, api_secret: str
    ) -> ExchangeKeyInfo:
        """Store a new key (KeyExistsError if `name` is taken)."""
        name, exchange, env = _checked(name, exchange, env)
        now = time.time_ns()
        values = self._seal(name, exchange, env, api_key, api_secret)
        with self.store._tx() as conn:
            if _row(conn, name) is not None:
                raise KeyExistsError(
                    f"an exchange key named {name!r} exists already: replace or remove it"
                )
            conn.execute(sa.insert(ExchangeKeyRow).values(**values, ts_created=now, ts_updated=now))
        return self.get(name)

    def replace(
        self,
        name: str,
        api_key: str,
        api_secret: str,
        *,
        exchange: str | None = None,
        env: str | None = None,
    ) -> ExchangeKeyInfo:
        """Replace a stored key's credentials (and exchange or env, if given); a fresh salt
        and nonce. KeyNotFoundError if there is none named `name`."""
        with self.store._tx() as conn:
            row = _row(conn, name)
            if row is None:
                raise KeyNotFoundError(f"no exchange key named {name!r}")
            _, new_exchange, new_env = _checked(name, exchange or row.exchange, env or row.env)
            values = self._seal(name, new_exchange, new_env, api_key, api_secret)
            conn.execute(
                sa.update(ExchangeKeyRow)
                .where(ExchangeKeyRow.name == name)
                .values(**values, ts_updated=time.time_ns())
            )
        return self.get(name)

    def remove(self, name: str) -> ExchangeKeyInfo:
        """Delete a stored key and return what it was (KeyNotFoundError if none)."""
        return remove_key(self.store, name)

    # -- reading -----------------------------------------------------------------------

    def list(self) -> builtins.list[ExchangeKeyInfo]:
        """Every stored key by name, masked."""
        return stored_keys(self.store)

    def get(self, name: str) -> ExchangeKeyInfo:
        """The stored key `name`, masked (KeyNotFoundError if none)."""
        with self.store._read() as conn:
            row = _row(conn, name)
        if row is None:
            raise KeyNotFoundError(f"no exchange key named {name!r}")
        return _info(row)

    def decrypt(self, name: str) -> tuple[str, str]:
        """The (API key, secret) of `name`: only for the node that trades with it.
        KeyVaultError when the master key is not the one it was stored with, or the
        record was altered."""
        with self.store._read() as conn:
            row = _row(conn, name)
        if row is None:
            raise KeyNotFoundError(f"no exchange key named {name!r}")
        derived = KdfParams.decode(row.kdf).derive(self._master, bytes(row.salt))
        if not hmac.compare_digest(_check_of(derived), row.key_check):
            raise KeyVaultError(
                f"the master key does not open exchange key {name!r}: it was stored under "
                f"another master key (check ${MASTER_KEY_ENV}, ${MASTER_KEY_FILE_ENV} and "
                "$SAPPHIRE_HOME/secrets/master.key), or its salt was altered"
            )
        try:
            plain = AESGCM(derived).decrypt(
                bytes(row.nonce), bytes(row.ciphertext), _aad(row.name, row.exchange, row.env)
            )
        except InvalidTag:
            raise KeyVaultError(
                f"exchange key {name!r} failed its integrity check: its ciphertext, nonce, "
                "name, exchange or env was altered in the database"
            ) from None
        sealed = json.loads(plain)
        return sealed["key"], sealed["secret"]

    # -- helpers -----------------------------------------------------------------------

    def _seal(
        self, name: str, exchange: str, env: str, api_key: str, api_secret: str
    ) -> dict[str, Any]:
        key = _credential(api_key, "API key")
        secret = _credential(api_secret, "API secret")
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        derived = self.kdf.derive(self._master, salt)
        plain = json.dumps({"key": key, "secret": secret}).encode("utf-8")
        return {
            "name": name, "exchange": exchange, "env": env, "key_hint": _key_hint(key),
            "ciphertext": AESGCM(derived).encrypt(nonce, plain, _aad(name, exchange, env)),
            "nonce": nonce, "salt": salt, "kdf": self.kdf.encode(),
            "key_check": _check_of(derived),
        }  # fmt: skip


def _aad(name: str, exchange: str, env: str) -> bytes:
    return _AAD + json.dumps([name, exchange, env]).encode("utf-8")


def _check_of(derived: bytes) -> str:
    return hmac.new(derived, _CHECK, hashlib.sha256).hexdigest()


def stored_keys(store: StoreBase) -> list[ExchangeKeyInfo]:
    """Every exchange key in `store` by name, masked (no master key needed)."""
    with store._read() as conn:
        rows = conn.execute(sa.select(ExchangeKeyRow).order_by(ExchangeKeyRow.name))
        return [_info(row) for row in rows]


def remove_key(store: StoreBase, name: str) -> ExchangeKeyInfo:
    """Delete the exchange key `name` from `store` and return what it was (no master key
    needed; KeyNotFoundError if there is none)."""
    with store._tx() as conn:
        row = _row(conn, name)
        if row is None:
            raise KeyNotFoundError(f"no exchange key named {name!r}")
        conn.execute(sa.delete(ExchangeKeyRow).where(ExchangeKeyRow.name == name))
    return _info(row)


def credentials_environ(vault: KeyVault, name: str) -> dict[str, str]:
    """The environment variables a live session reads its credentials from
    (`sapphire.venues.bybit.credentials_from_env`), e.g. `BYBIT_TESTNET_API_KEY` and
    `BYBIT_TESTNET_API_SECRET`, for the stored key `name`, decrypted."""
    info = vault.get(name)
    key, secret = vault.decrypt(name)
    prefix = f"{info.exchange.upper()}_{info.env.upper()}"
    return {f"{prefix}_API_KEY": key, f"{prefix}_API_SECRET": secret}
