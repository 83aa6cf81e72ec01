"""`AuditLog`: the append-only, hash-chained audit log of every state-changing request
and every order, and `verify`, which finds the first record edited, deleted or moved.

```python
log = AuditLog(store)
log.append("alice", "POST /api/v1/exchange-keys", "name=main", {"status": 201}, "10.0.0.7")
report = log.verify()
report.ok, report.checked, report.head_hash  # keep head_hash elsewhere as an anchor
log.verify(anchor=old_head_hash)  # also fails if the records up to the anchor are gone
```

Each record's hash covers its predecessor's hash and its own fields (`store.audit_repo`),
so a record edited in SQL no longer gives its hash, a deleted one leaves a gap in `seq`
or a record whose `prev_hash` matches nothing before it, and a moved one follows a record
that is stored elsewhere. Rewriting the whole chain after an edit is caught only against
an anchor: a head hash recorded outside the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sapphire.store import Store
from sapphire.store.audit_repo import ZERO_HASH, AuditRecord

__all__ = ["AuditLog", "AuditProblem", "AuditRecord", "AuditReport"]

ProblemKind = Literal["edited", "deleted", "reordered", "anchor"]


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """The first damage `verify` found: at record `seq` (None for a missing anchor)."""

    kind: ProblemKind
    seq: int | None
    message: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What `verify` found: `checked` records intact (all of them when `problem` is None),
    the last one's seq and hash (the head: ZERO_HASH and 0 for an empty log)."""

    checked: int
    head_seq: int
    head_hash: str
    problem: AuditProblem | None = None

    @property
    def ok(self) -> bool:
        """True when the whole chain is intact (and holds the anchor, if one was given)."""
        return self.problem is None

    def summary(self) -> str:
        """One line for a person: "N records, chain intact, head <hash>" or the damage."""
        if self.problem is None:
            noun = "record" if self.checked == 1 else "records"
            return f"{self.checked} {noun}, chain intact, head {self.head_hash}"
        where = "" if self.problem.seq is None else f" at seq {self.problem.seq}"
        return (
            f"audit log broken{where} ({self.problem.kind}): {self.problem.message}; "
            f"{self.checked} records intact before it"
        )


class AuditLog:
    """The audit log in `store` (any process may append: appends are serialised by the
    database, see `sapphire.store.audit_repo`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, Any],
        ip: str | None = None,
        *,
        ts_ns: int | None = None,
    ) -> int:
        """Append a record (committed before it returns) and return its seq; `detail`
        must hold JSON values only and never a secret."""
        return self.store.append_audit(actor, action, target, detail, ip, ts_ns=ts_ns)

    def records(
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
        """Up to `limit` records by seq (see `Store.audit_records` for the filters)."""
        return self.store.audit_records(
            limit, after_seq=after_seq, before_seq=before_seq, actor=actor, action=action,
            start_ns=start_ns, end_ns=end_ns, newest_first=newest_first,
        )  # fmt: skip

    def head(self) -> AuditRecord | None:
        """The newest record (None while the log is empty)."""
        newest = self.store.audit_records(1, newest_first=True)
        return newest[0] if newest else None

    def verify(self, anchor: str | None = None) -> AuditReport:
        """Walk the chain from seq 1 and report the first record edited, deleted or moved
        (and, with `anchor`, whether the record with that hash is still in the chain)."""
        if anchor is not None and (
            len(anchor) != 64 or any(c not in "0123456789abcdef" for c in anchor)
        ):
            raise ValueError(f"anchor must be 64 lowercase hex characters, got {anchor!r}")
        checked, prev, anchored = 0, ZERO_HASH, anchor is None
        for record in self.store.audit_chain():
            problem = self._check(record, checked + 1, prev)
            if problem is not None:
                return AuditReport(checked, checked, prev, problem)
            checked, prev = checked + 1, record.hash
            anchored = anchored or record.hash == anchor
        if not anchored:
            problem = AuditProblem(
                "anchor", None,
                f"no record has the anchor hash {anchor}: records up to it were deleted or "
                "the chain was rewritten since it was taken",
            )  # fmt: skip
            return AuditReport(checked, checked, prev, problem)
        return AuditReport(checked, checked, prev)

    def _check(self, record: AuditRecord, expected_seq: int, prev: str) -> AuditProblem | None:
        seq = record.seq
        if record.computed_hash() != record.hash:
            return AuditProblem("edited", seq, f"record {seq}'s stored fields do not give its hash")
        if seq != expected_seq:
            missing = (
                f"record {expected_seq} is"
                if seq == expected_seq + 1
                else f"records {expected_seq}..{seq - 1} are"
            )
            return AuditProblem("deleted", expected_seq, f"{missing} missing")
        if record.prev_hash == prev:
            return None
        if record.prev_hash == ZERO_HASH:
            return AuditProblem(
                "reordered", seq, f"record {seq} is the chain's first record, stored at seq {seq}"
            )
        before = f"record {seq - 1}" if seq > 1 else "the start of the chain"
        follows = self.store.audit_seq_of_hash(record.prev_hash)
        if follows is not None:
            return AuditProblem(
                "reordered", seq,
                f"record {seq} follows record {follows} in the chain, not {before}",
            )  # fmt: skip
        return AuditProblem(
            "deleted", seq,
            f"record {seq} does not follow {before}: the record it follows is gone "
            "(deleted, or the record before it rewritten with a new hash)",
        )  # fmt: skip
