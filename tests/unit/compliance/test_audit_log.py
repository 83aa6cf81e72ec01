"""The hash-chained audit log on SQLite: the chain as documented, every kind of tampering
found at the right record, the anchor, filters and paging, and appends from several
threads and processes chaining without gaps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audit_helpers import (
    TAMPERING,
    append_from_processes,
    append_from_threads,
    assert_chained_appends,
    fill,
    sql,
)

from sapphire.compliance.audit import AuditLog
from sapphire.store import Store
from sapphire.store.audit_repo import ZERO_HASH, canonical_json, record_json


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'audit.db'}") as s:
        yield s


def test_the_chain_is_sha256_of_the_previous_hash_and_the_canonical_record(store: Store) -> None:
    log = AuditLog(store)
    assert log.append("alice", "POST /api/v1/x", "name=a", {"b": 1, "a": "é"}, "1.2.3.4") == 1
    assert log.append("bob", "DELETE /api/v1/x/{name}", "name=a", {}, None, ts_ns=7) == 2
    first, second = log.records(10)
    assert first.prev_hash == ZERO_HASH and second.prev_hash == first.hash
    fields = {
        "action": "POST /api/v1/x", "actor": "alice", "detail": {"a": "é", "b": 1},
        "ip": "1.2.3.4", "target": "name=a", "ts_ns": first.ts_ns,
    }  # fmt: skip
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert first.hash == hashlib.sha256((ZERO_HASH + canonical).encode()).hexdigest()
    assert first.detail_json == '{"a":"\\u00e9","b":1}' and first.detail == {"a": "é", "b": 1}
    assert second.ts_ns == 7 and second.ip is None
    assert log.head() == second


def test_canonical_json_is_one_spelling_and_refuses_what_json_cannot_hold() -> None:
    assert canonical_json({"b": [1, 2.5], "a": None}) == '{"a":null,"b":[1,2.5]}'
    assert record_json(1, "x", "y", "z", '{"k":1}', None) == canonical_json(
        {"ts_ns": 1, "actor": "x", "action": "y", "target": "z", "detail": {"k": 1}, "ip": None}
    )
    from decimal import Decimal

    with pytest.raises(ValueError, match="Decimal"):
        canonical_json({"qty": Decimal("1.5")})
    with pytest.raises(ValueError, match="cannot be canonical JSON"):
        canonical_json({"x": float("nan")})


def test_bad_appends_are_refused_naming_the_value(store: Store) -> None:
    log = AuditLog(store)
    with pytest.raises(ValueError, match=r"actor must be 1\.\.250 characters, got ''"):
        log.append("", "a", "t", {})
    with pytest.raises(ValueError, match="NUL"):
        log.append("a", "b\x00", "t", {})
    with pytest.raises(ValueError, match="detail must be a mapping"):
        log.append("a", "b", "t", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert log.records() == []  # nothing half-written


def test_an_intact_log_verifies_and_reports_its_head(store: Store) -> None:
    log = AuditLog(store)
    empty = log.verify()
    assert empty.ok and empty.checked == 0 and empty.head_hash == ZERO_HASH
    fill(log, 6)
    report = log.verify()
    head = log.head()
    assert head is not None
    assert report.ok and report.checked == 6 and report.head_seq == 6
    assert report.summary() == f"6 records, chain intact, head {head.hash}"


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_tampering_in_sql_is_found_at_the_first_bad_record(store: Store, tamper: str) -> None:
    log = AuditLog(store)
    fill(log, 6)
    kind, seq = TAMPERING[tamper](store)
    report = log.verify()
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.summary()
    assert report.checked == seq - 1  # the records before it are intact
    assert f"at seq {seq} ({kind})" in report.summary()


def test_swapped_rows_name_the_record_they_follow(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 6)
    TAMPERING["swap_rows"](store)
    problem = log.verify().problem
    assert problem is not None
    assert problem.message == "record 2 follows record 3 in the chain, not record 1"


def test_the_first_record_moved_elsewhere_is_reordered(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 3)
    sql(store, "UPDATE audit_log SET seq = 4 WHERE seq = 1")  # seq 1 missing, seq 4 = old 1
    sql(store, "UPDATE audit_log SET seq = 1 WHERE seq = 2")
    sql(store, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    sql(store, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    problem = log.verify().problem
    assert problem is not None and (problem.kind, problem.seq) == ("reordered", 1)


def test_a_truncated_tail_is_found_against_an_anchor(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 5)
    anchor = log.verify().head_hash
    assert log.verify(anchor).ok
    sql(store, "DELETE FROM audit_log WHERE seq >= 4")  # the chain itself is still whole
    assert log.verify().ok
    report = log.verify(anchor)
    assert not report.ok and report.problem is not None
    assert report.problem.kind == "anchor" and anchor in report.problem.message
    with pytest.raises(ValueError, match="anchor must be 64 lowercase hex characters"):
        log.verify("abc")


def test_there_is_no_api_to_change_or_remove_a_record() -> None:
    names = dir(AuditLog) + [n for n in dir(Store) if "audit" in n]
    assert "append" in names and "append_audit" in names
    assert not [n for n in names if n.startswith(("update", "delete", "remove", "edit", "set"))]


def test_records_page_and_filter(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 9)
    assert [r.seq for r in log.records(3)] == [1, 2, 3]
    assert [r.seq for r in log.records(3, after_seq=3)] == [4, 5, 6]
    assert [r.seq for r in log.records(3, newest_first=True)] == [9, 8, 7]
    assert [r.seq for r in log.records(3, before_seq=7, newest_first=True)] == [6, 5, 4]
    assert [r.seq for r in log.records(actor="user-1")] == [1, 4, 7]
    assert [r.seq for r in log.records(action="order.submitted")] == [2, 4, 6, 8]
    base = 1_700_000_000_000_000_000
    assert [r.seq for r in log.records(start_ns=base + 3, end_ns=base + 5)] == [3, 4]
    with pytest.raises(ValueError, match="limit must be an int >= 1, got 0"):
        log.records(0)


def test_a_long_log_is_walked_in_pages(store: Store) -> None:
    log = AuditLog(store)
    fill(log, 7)
    assert [r.seq for r in store.audit_chain(batch=3)] == list(range(1, 8))
    sql(store, "UPDATE audit_log SET target = 'x' WHERE seq = 7")  # in the last page
    problem = log.verify().problem
    assert problem is not None and problem.seq == 7


@pytest.mark.parametrize(
    "appenders",
    [
        pytest.param(lambda url: append_from_threads(url, 4, 15), id="threads"),
        pytest.param(lambda url: append_from_processes(url, 3, 15), id="processes"),
    ],
)
def test_concurrent_appenders_chain_without_gaps(
    tmp_path: Path, appenders: Callable[[str], None]
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Store(url) as store:  # migrated before the appenders start
        appenders(url)
        records = AuditLog(store).records(1000)
        actors = sorted({r.actor for r in records})
        assert len(actors) in (3, 4)
        assert_chained_appends(AuditLog(store), actors, 15)
