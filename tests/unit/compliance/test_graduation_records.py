"""Stored graduation decisions: read back whole, newest first, and a failed one let
through only by an override with a reason and an actor, stored and audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from sapphire.compliance.audit import AuditLog
from sapphire.compliance.graduation import Gate, GraduationDecision, GraduationLog
from sapphire.store import Store

PASS = Gate("deflated_sharpe", 0.97, 0.95, ">=", True, "study s")
FAIL = Gate("max_drawdown", 0.3, 0.15, "<=", False, "risk profile 'conservative'")
NA = Gate("pbo", None, 0.5, "<=", None, "no study")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'g.db'}")


def _new(gates: list[Gate], ts: int, strategy: str = "sma_cross") -> GraduationDecision:
    return GraduationDecision.new(
        strategy, {"fast": 10}, "paper", gates, {"data_hash": "ab" * 32}, actor="alice", ts_ns=ts
    )


def test_decisions_read_back_whole_and_newest_first(store: Store) -> None:
    log = GraduationLog(store)
    first = log.record(_new([PASS, NA], 1))
    second = log.record(_new([PASS, FAIL], 2, "momentum"))
    assert first.passed and first.status == "passed"  # a gate that did not apply is no fail
    assert not second.passed and second.status == "failed" and not second.allowed
    back = log.get(second.id or 0)
    assert back == second
    assert back.gates[1] == FAIL and back.evidence == {"data_hash": "ab" * 32}
    assert [d.id for d in log.history()] == [second.id, first.id]
    assert [d.id for d in log.history("sma_cross")] == [first.id]
    with pytest.raises(ValueError, match="no graduation decision 99"):
        log.get(99)
    with pytest.raises(ValueError, match="stage='prod'"):
        GraduationDecision.new("s", {}, "prod", [PASS], {}, actor="a")
    with pytest.raises(ValueError, match="actor"):
        GraduationDecision.new("s", {}, "paper", [PASS], {}, actor=" ")


def test_only_an_explicit_override_lets_a_failed_decision_through(store: Store) -> None:
    log = GraduationLog(store)
    failed = log.record(_new([PASS, FAIL], 1))
    passed = log.record(_new([PASS], 2))
    assert failed.id is not None and passed.id is not None
    with pytest.raises(ValueError, match="needs a reason"):
        log.override(failed.id, reason=" ", actor="bob")
    with pytest.raises(ValueError, match="actor"):
        log.override(failed.id, reason="ok", actor="")
    with pytest.raises(ValueError, match="passed every gate"):
        log.override(passed.id, reason="why not", actor="bob")
    done = log.override(failed.id, reason="drawdown limit under review", actor="bob", ts_ns=5)
    assert done.status == "overridden" and done.allowed and not done.passed
    assert (done.override_actor, done.override_reason, done.ts_override) == (
        "bob", "drawdown limit under review", 5,
    )  # fmt: skip
    assert log.get(failed.id).to_mapping()["override"]["actor"] == "bob"
    with pytest.raises(ValueError, match="overridden already by bob"):
        log.override(failed.id, reason="again", actor="carol")
    audit = AuditLog(store)
    [record] = audit.records(action="graduation.override")
    assert record.actor == "bob" and record.target == f"graduation_decision={failed.id}"
    assert audit.verify().ok
