"""`AuditRepo`: the append-only, hash-chained audit log in the store (`audit_log`).

Each record's `hash` is sha256 of its `prev_hash` (64 hex characters, 64 zeros for the
first record) followed by the canonical JSON of its fields (`record_json`), so editing,
deleting or moving a record breaks the chain (`sapphire.compliance.audit` checks it).

Appends from several processes (the service, every node) chain correctly because each
append takes the log's write lock before it reads the head: on PostgreSQL `LOCK TABLE
audit_log IN EXCLUSIVE MODE` (readers go on; other appenders wait for the commit), on
SQLite the database's write lock (taken by a write that changes nothing, before the
read). `seq` is the head's plus one, given under that lock, so it has no gaps: a
database sequence would skip the values of rolled-back transactions, and a gap reads as
a deleted record. There is no API to update or delete a record.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sapphire.store.base import StoreBase
from sapphire.store.models_audit import AuditRecordRow

__all__ = [
    "ZERO_HASH",
    "AuditRecord",
    "AuditRepo",
    "append_audit",
    "canonical_json",
    "record_hash",
    "record_json",
]

#: the `prev_hash` of the first record
ZERO_HASH = "0" * 64
#: longest actor (a username, or an order's `<run_id>/<strategy_id>`: 100 + 1 + 100) and
#: longest action (the columns' sizes)
ACTOR_MAX, ACTION_MAX = 250, 200


def canonical_json(value: Any) -> str:
    """`value` as canonical JSON: sorted keys, no spaces, ASCII only (anything else
    escaped), no NaN or infinities; a ValueError naming a value JSON cannot hold."""

    def refuse(obj: object) -> Any:
        raise ValueError(
            f"audit detail holds {obj!r} ({type(obj).__name__}); only JSON values "
            "(str, int, float, bool, None, lists and dicts with str keys) are accepted"
        )

    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
            default=refuse,
        )  # fmt: skip
    except (TypeError, ValueError) as exc:  # mixed key types, NaN, or refused above
        raise ValueError(f"audit detail cannot be canonical JSON: {exc}") from None


def record_json(
    ts_ns: int, actor: str, action: str, target: str, detail_json: str, ip: str | None
) -> str:
    """The canonical JSON of a record's fields, with its stored detail text as it is (so
    a record is checked against the bytes stored, not against a re-encoding of them)."""
    fields = (
        ("action", canonical_json(action)),
        ("actor", canonical_json(actor)),
        ("detail", detail_json),
        ("ip", canonical_json(ip)),
        ("target", canonical_json(target)),
        ("ts_ns", canonical_json(ts_ns)),
    )
    return "{" + ",".join(f'"{key}":{value}' for key, value in fields) + "}"


def record_hash(prev_hash: str, record: str) -> str:
    """sha256(prev_hash || record) as 64 hex characters."""
    return hashlib.sha256(prev_hash.encode("ascii") + record.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored audit record; `detail_json` is the detail text as stored."""

    seq: int
    ts_ns: int
    actor: str
    action: str
    target: str
    detail_json: str
    ip: str | None
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        """The detail as a dict (`{"unreadable": text}` if the stored text is not a JSON
        object: only a damaged record has that)."""
        try:
            value = json.loads(self.detail_json)
        except ValueError:
            return {"unreadable": self.detail_json}
        return value if isinstance(value, dict) else {"unreadable": self.detail_json}

    def computed_hash(self) -> str:
        """The hash this record's stored fields give (= `hash` unless it was edited)."""
        return record_hash(
            self.prev_hash,
            record_json(
                self.ts_ns, self.actor, self.action, self.target, self.detail_json, self.ip
            ),
        )


def _text(value: object, name: str, max_len: int | None) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(f"audit {name} must be a str without NUL characters, got {value!r}")
    if max_len is not None and not 0 < len(value) <= max_len:
        raise ValueError(f"audit {name} must be 1..{max_len} characters, got {value!r}")
    return value


def append_audit(
    conn: Connection,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any],
    ip: str | None = None,
    *,
    ts_ns: int | None = None,
) -> int:
    """Append one record through `conn` (inside its transaction) and return its seq."""
    actor = _text(actor, "actor", ACTOR_MAX)
    action = _text(action, "action", ACTION_MAX)
    target = _text(target, "target", None)
    if ip is not None:
        ip = _text(ip, "ip", 64)
    if not isinstance(detail, Mapping):
        raise ValueError(f"audit detail must be a mapping, got {detail!r}")
    detail_json = canonical_json(dict(detail))
    when = time.time_ns() if ts_ns is None else ts_ns
    if type(when) is not int or when < 0:
        raise ValueError(f"audit ts_ns must be an int >= 0, got {when!r}")
    _lock(conn)
    head = conn.execute(_HEAD).first()
    seq, prev = (1, ZERO_HASH) if head is None else (head.seq + 1, head.hash)
    digest = record_hash(prev, record_json(when, actor, action, target, detail_json, ip))
    conn.execute(
        _INSERT,
        {
            "seq": seq, "ts_ns": when, "actor": actor, "action": action, "target": target,
            "detail": detail_json, "ip": ip, "prev_hash": prev, "hash": digest,
        },
    )  # fmt: skip
    return int(seq)


_HEAD = (
    sa.select(AuditRecordRow.seq, AuditRecordRow.hash).order_by(AuditRecordRow.seq.desc()).limit(1)
)
_INSERT = sa.insert(AuditRecordRow)
_LOCK_PG = sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE")
_LOCK_SQLITE = sa.update(AuditRecordRow).where(sa.false()).values(seq=AuditRecordRow.seq)


def _lock(conn: Connection) -> None:
    """Take the log's write lock until the transaction ends (see the module docstring)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_PG)
        return
    # SQLite: a write takes the database's write lock and starts the transaction; one that
    # has written already (an order event's) holds the lock
    if not getattr(conn.connection.dbapi_connection, "in_transaction", False):
        conn.execute(_LOCK_SQLITE)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq), ts_ns=int(row.ts_ns), actor=row.actor, action=row.action,
        target=row.target, detail_json=row.detail, ip=row.ip, prev_hash=row.prev_hash,
        hash=row.hash,
    )  # fmt: skip


class AuditRepo(StoreBase):
    """The audit_log table: append, read, walk."""

    def append_audit(
        self,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, Any],
        ip: str | None = None,
        *,
        ts_ns: int | None = None,
    ) -> int:
        """Append a record (committed before it returns, or with the enclosing
        `atomic()` block) and return its seq."""
        with self._tx() as conn:
            return append_audit(conn, actor, action, target, detail, ip, ts_ns=ts_ns)

    def audit_records(
        self,
        limit: int = 100,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Up to `limit` records with seq in (after_seq, before_seq), of `actor`, of
        `action`, with ts_ns in [start_ns, end_ns), by seq (newest first if asked)."""
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        query = sa.select(AuditRecordRow)
        if after_seq is not None:
            query = query.where(AuditRecordRow.seq > after_seq)
        if before_seq is not None:
            query = query.where(AuditRecordRow.seq < before_seq)
        if actor is not None:
            query = query.where(AuditRecordRow.actor == actor)
        if action is not None:
            query = query.where(AuditRecordRow.action == action)
        if start_ns is not None:
            query = query.where(AuditRecordRow.ts_ns >= start_ns)
        if end_ns is not None:
            query = query.where(AuditRecordRow.ts_ns < end_ns)
        order = AuditRecordRow.seq.desc() if newest_first else AuditRecordRow.seq
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query.order_by(order).limit(limit))]

    def audit_chain(self, batch: int = 2000) -> Iterator[AuditRecord]:
        """Every record by seq, read `batch` at a time (memory stays flat on a long log)."""
        last: int | None = None
        while True:
            page = self.audit_records(batch, after_seq=last)
            yield from page
            if len(page) < batch:
                return
            last = page[-1].seq

    def audit_seq_of_hash(self, digest: str) -> int | None:
        """The seq of the record whose hash is `digest` (None if there is none)."""
        with self._read() as conn:
            found = conn.execute(
                sa.select(AuditRecordRow.seq).where(AuditRecordRow.hash == digest).limit(1)
            ).first()
        return None if found is None else int(found.seq)
