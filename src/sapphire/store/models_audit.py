"""The hash-chained audit log and the encrypted exchange keys (migration 0005).

`audit_log` is append-only: `seq` counts from 1 without gaps and is given by the appender
under a lock (not by a database sequence, whose values a rolled-back transaction would
skip, leaving a gap that reads as a deleted record). `hash` = sha256(`prev_hash` ||
canonical JSON of the record's fields) and the first record's `prev_hash` is 64 zeros;
`sapphire.store.audit_repo` writes the chain and `sapphire.compliance.audit` checks it.

`exchange_keys` holds each exchange API key and secret encrypted with AES-256-GCM under a
key derived from the master secret with argon2id (`sapphire.store.keyvault`); only
`key_hint` (the API key's last characters) is readable without the master secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sapphire.store.models import Base
from sapphire.store.types import id_column_type


class AuditRecordRow(Base):
    """One audit record: who (`actor`) did what (`action`) to what (`target`), when
    (`ts_ns`) and from where (`ip`); `detail` is canonical JSON (sorted keys, no spaces)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    ts_ns: Mapped[int]
    actor: Mapped[str] = mapped_column(sa.String(250))
    action: Mapped[str] = mapped_column(sa.String(200))
    target: Mapped[str] = mapped_column(sa.Text)
    detail: Mapped[str] = mapped_column(sa.Text)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (sa.Index(None, "ts_ns"), sa.Index(None, "actor", "seq"))


class ExchangeKeyRow(Base):
    """An exchange API key and secret, encrypted (`ciphertext`, with its `nonce`), under a
    key derived from the master secret, `salt` and the `kdf` parameters."""

    __tablename__ = "exchange_keys"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    exchange: Mapped[str] = mapped_column(sa.String(30))
    env: Mapped[str] = mapped_column(sa.String(10))
    key_hint: Mapped[str] = mapped_column(sa.String(20))
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary)
    nonce: Mapped[bytes] = mapped_column(sa.LargeBinary)
    salt: Mapped[bytes] = mapped_column(sa.LargeBinary)
    kdf: Mapped[str] = mapped_column(sa.String(100))
    key_check: Mapped[str] = mapped_column(sa.String(64))
    ts_created: Mapped[int]
    ts_updated: Mapped[int]
