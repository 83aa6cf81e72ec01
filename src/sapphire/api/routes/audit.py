"""The /api/v1 routes of audit: the audit log, read only (admin scope).

- `GET /audit`: records by seq, newest first by default, a page at a time (`before_seq`
  / `after_seq` from the previous page's `next_*`), filtered by actor, action and time.
- `GET /audit/verify`: walk the hash chain and report the first damaged record, the
  number checked and the head hash (keep it elsewhere; pass it back as `anchor`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.security.deps import Principal, require
from sapphire.compliance.audit import AuditRecord, AuditReport

__all__ = ["AuditPage", "AuditRecordOut", "AuditVerifyOut", "iso_utc", "router"]

router = APIRouter(tags=["audit"])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MAX = 2**63 - 1
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
_HASH = "^[0-9a-f]{64}$"
_EXAMPLE_HASH = "9578c2ed09554ee3e092b834a3c41c0177bdfbe14e629a0b4712c4c3c3e07ebd"


def iso_utc(ts_ns: int) -> str:
    """Nanoseconds since the epoch as ISO-8601 UTC with microseconds (`...Z`)."""
    moment = _EPOCH + timedelta(microseconds=ts_ns // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ns(moment: datetime | None, name: str) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{name}={moment.isoformat()} has no timezone: give one, e.g. "
            f"{moment.isoformat()}Z",
        )
    ns = (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    return min(max(ns, -_INT64_MAX), _INT64_MAX)  # the column's range: compare, not overflow


class AuditRecordOut(BaseModel):
    """One audit record."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "seq": 42, "ts": "2026-12-07T10:15:02.123456Z",
                    "ts_ns": 1796638502123456000, "actor": "alice",
                    "action": "POST /api/v1/exchange-keys", "target": "",
                    "detail": {"status": 201, "body": {"name": "main", "api_secret": "[redacted]"}},
                    "ip": "10.0.0.7", "prev_hash": "0" * 64, "hash": _EXAMPLE_HASH,
                }
            ]
        }
    )  # fmt: skip

    seq: int = Field(description="Position in the log, from 1, without gaps.")
    ts: str = Field(description="When it was recorded, ISO-8601 UTC.")
    ts_ns: int = Field(description="The same moment in nanoseconds since the epoch.")
    actor: str = Field(description="Who: a username, 'anonymous', or run/strategy for orders.")
    action: str = Field(description="What: 'METHOD /route/{template}' or 'order.<event>'.")
    target: str = Field(description="On what: path parameters, or a client order id.")
    detail: dict[str, Any] = Field(description="Status and a redacted summary; never secrets.")
    ip: str | None = Field(description="The client's address (None for orders).")
    prev_hash: str = Field(description="The previous record's hash (64 zeros for the first).")
    hash: str = Field(description="sha256(prev_hash || canonical JSON of the record).")

    @classmethod
    def of(cls, record: AuditRecord) -> AuditRecordOut:
        """The response form of a stored record."""
        return cls(
            seq=record.seq, ts=iso_utc(record.ts_ns), ts_ns=record.ts_ns, actor=record.actor,
            action=record.action, target=record.target, detail=record.detail, ip=record.ip,
            prev_hash=record.prev_hash, hash=record.hash,
        )  # fmt: skip


class AuditPage(BaseModel):
    """A page of audit records and the cursor of the next one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"records": [], "next_before_seq": None, "next_after_seq": None}]
        }
    )

    records: list[AuditRecordOut] = Field(description="The records, in the order asked for.")
    next_before_seq: int | None = Field(
        description="Newest-first paging: pass as before_seq for the next page (None: last)."
    )
    next_after_seq: int | None = Field(
        description="Oldest-first paging: pass as after_seq for the next page (None: last)."
    )


class AuditProblemOut(BaseModel):
    """The first damage found in the chain."""

    kind: Literal["edited", "deleted", "reordered", "anchor"] = Field(
        description="edited: a record's fields no longer give its hash; deleted: a gap in "
        "seq or a broken link; reordered: a record follows another than the one before it; "
        "anchor: the anchor hash is not in the chain."
    )
    seq: int | None = Field(description="The record where it was found (None for 'anchor').")
    message: str = Field(description="What was found, for a person.")


class AuditVerifyOut(BaseModel):
    """The result of walking the hash chain."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": True, "checked": 42, "head_seq": 42, "head_hash": _EXAMPLE_HASH,
                    "problem": None,
                    "summary": f"42 records, chain intact, head {_EXAMPLE_HASH}",
                }
            ]
        }
    )  # fmt: skip

    ok: bool = Field(description="True when every record is intact (and the anchor found).")
    checked: int = Field(description="Records found intact (before the problem, if any).")
    head_seq: int = Field(description="The last intact record's seq (0: none).")
    head_hash: str = Field(description="Its hash: record it elsewhere to anchor the log.")
    problem: AuditProblemOut | None = Field(description="The first damage, if any.")
    summary: str = Field(description="One line for a person.")

    @classmethod
    def of(cls, report: AuditReport) -> AuditVerifyOut:
        """The response form of a verify report."""
        problem = report.problem
        return cls(
            ok=report.ok, checked=report.checked, head_seq=report.head_seq,
            head_hash=report.head_hash, summary=report.summary(),
            problem=None if problem is None else AuditProblemOut(
                kind=problem.kind, seq=problem.seq, message=problem.message
            ),
        )  # fmt: skip


@router.get("/audit", response_model=AuditPage, summary="Read the audit log")
def list_audit(
    request: Request,
    _principal: Annotated[Principal, Depends(require("admin"))],
    limit: Annotated[int, Query(ge=1, le=1000, description="Records per page.")] = 100,
    order: Annotated[
        Literal["desc", "asc"], Query(description="desc: newest first; asc: oldest first.")
    ] = "desc",
    before_seq: Annotated[
        int | None, Query(ge=1, le=_INT64_MAX, description="Only records with a smaller seq.")
    ] = None,
    after_seq: Annotated[
        int | None, Query(ge=0, le=_INT64_MAX, description="Only records with a larger seq.")
    ] = None,
    actor: Annotated[
        str | None,
        Query(min_length=1, max_length=250, pattern=_PRINTABLE, description="Only this actor's."),
    ] = None,
    action: Annotated[
        str | None,
        Query(min_length=1, max_length=200, pattern=_PRINTABLE, description="Only this action."),
    ] = None,
    start: Annotated[
        datetime | None, Query(description="Only records at or after (ISO-8601 with zone).")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="Only records before (ISO-8601 with zone).")
    ] = None,
) -> AuditPage:
    """Audit records by seq, filtered; page with the returned cursor."""
    records = request.app.state.service.audit.records(
        limit, after_seq=after_seq, before_seq=before_seq, actor=actor, action=action,
        start_ns=_ns(start, "start"), end_ns=_ns(end, "end"), newest_first=order == "desc",
    )  # fmt: skip
    full = len(records) == limit
    last = records[-1].seq if records else None
    return AuditPage(
        records=[AuditRecordOut.of(r) for r in records],
        next_before_seq=last if full and order == "desc" else None,
        next_after_seq=last if full and order == "asc" else None,
    )


@router.get("/audit/verify", response_model=AuditVerifyOut, summary="Verify the audit log")
def verify_audit(
    request: Request,
    _principal: Annotated[Principal, Depends(require("admin"))],
    anchor: Annotated[
        str | None,
        Query(pattern=_HASH, description="A head hash recorded earlier: it must be in the chain."),
    ] = None,
) -> AuditVerifyOut:
    """Walk the whole hash chain; `ok` false names the first damaged record."""
    return AuditVerifyOut.of(request.app.state.service.audit.verify(anchor))
