"""Stored graduation decisions: every gate check of a strategy moving backtest -> paper ->
live, with its evidence, readable back, and the explicit override that lets a failed
check through.

```python
log = GraduationLog(store)
decision = log.record(GraduationDecision.new("sma_cross", {"fast": 10}, "paper", gates,
                                              evidence, actor="alice"))
log.get(decision.id).status          # "passed" / "failed" / "overridden"
log.override(decision.id, reason="approved by risk committee", actor="bob")
```

A decision is never changed except by one override (actor and reason both required, a
passed decision has nothing to override); the override is appended to the hash-chained
audit log in the same store (`sapphire.compliance.audit.AuditLog`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import sqlalchemy as sa

from sapphire.compliance.audit import AuditLog
from sapphire.compliance.gate import Gate
from sapphire.store import Store
from sapphire.store.models_graduation import GraduationDecisionRow

__all__ = ["KINDS", "STAGES", "Gate", "GraduationDecision", "GraduationLog"]

#: the stages a strategy graduates to (a backtest is where every strategy starts)
STAGES = ("paper", "live")
#: a promotion of one strategy, or a challenger against a champion
KINDS = ("promotion", "challenger")
#: the audit log's action for an override
OVERRIDE_ACTION = "graduation.override"
_table = cast(sa.Table, GraduationDecisionRow.__table__)


@dataclass(frozen=True, slots=True)
class GraduationDecision:
    """A stored decision (`id` None until recorded); `passed` is True when every gate that
    applied passed."""

    kind: str
    strategy: str
    params: dict[str, Any]
    stage: str
    gates: tuple[Gate, ...]
    evidence: dict[str, Any]
    actor: str
    ts_ns: int
    id: int | None = None
    override_actor: str | None = None
    override_reason: str | None = None
    ts_override: int | None = None
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r} is invalid: expected one of {STAGES}")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is invalid: expected one of {KINDS}")
        if not self.strategy:
            raise ValueError("strategy must be a non-empty name")
        _check_actor(self.actor)
        if not self.gates:
            raise ValueError("a decision needs at least one gate")
        object.__setattr__(self, "passed", all(g.passed is not False for g in self.gates))

    @classmethod
    def new(
        cls,
        strategy: str,
        params: Mapping[str, Any],
        stage: str,
        gates: Sequence[Gate],
        evidence: Mapping[str, Any],
        *,
        actor: str,
        kind: str = "promotion",
        ts_ns: int | None = None,
    ) -> GraduationDecision:
        """A decision made now (or at `ts_ns`), not yet stored."""
        return cls(
            kind=kind, strategy=strategy, params=dict(params), stage=stage, gates=tuple(gates),
            evidence=dict(evidence), actor=actor,
            ts_ns=time.time_ns() if ts_ns is None else int(ts_ns),
        )  # fmt: skip

    @property
    def overridden(self) -> bool:
        """True when a failed decision was let through by an override."""
        return self.override_actor is not None

    @property
    def status(self) -> str:
        """ "passed", "failed" or "overridden"."""
        return "passed" if self.passed else "overridden" if self.overridden else "failed"

    @property
    def allowed(self) -> bool:
        """True when the strategy may move to `stage`: every gate passed, or overridden."""
        return self.passed or self.overridden

    @property
    def failed_gates(self) -> list[Gate]:
        """The gates that failed."""
        return [g for g in self.gates if g.passed is False]

    def to_mapping(self) -> dict[str, Any]:
        """The decision as JSON data (what `graduate show --json` prints)."""
        return {
            "id": self.id, "kind": self.kind, "strategy": self.strategy,
            "params": dict(self.params), "stage": self.stage, "passed": self.passed,
            "status": self.status, "gates": [g.to_mapping() for g in self.gates],
            "evidence": dict(self.evidence), "actor": self.actor, "ts_ns": self.ts_ns,
            "override": None if not self.overridden else {
                "actor": self.override_actor, "reason": self.override_reason,
                "ts_ns": self.ts_override,
            },
        }  # fmt: skip


def _check_actor(actor: object, what: str = "actor") -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 250:
        raise ValueError(f"{what} must be a name of 1..250 characters, got {actor!r}")
    return actor.strip()


def _decision(row: Any) -> GraduationDecision:
    return GraduationDecision(
        kind=row.kind, strategy=row.strategy, params=dict(row.params), stage=row.stage,
        gates=tuple(Gate.from_mapping(g) for g in row.gates),
        evidence=dict(row.evidence), actor=row.actor, ts_ns=int(row.ts_ns), id=int(row.id),
        override_actor=row.override_actor, override_reason=row.override_reason,
        ts_override=None if row.ts_override is None else int(row.ts_override),
    )  # fmt: skip


class GraduationLog:
    """The graduation decisions in `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, decision: GraduationDecision) -> GraduationDecision:
        """Store a new decision; the stored copy, with its id."""
        if decision.id is not None:
            raise ValueError(f"decision {decision.id} is stored already")
        values = {
            "ts_ns": decision.ts_ns, "kind": decision.kind, "strategy": decision.strategy,
            "params": decision.params, "stage": decision.stage, "passed": decision.passed,
            "gates": [g.to_mapping() for g in decision.gates], "evidence": decision.evidence,
            "actor": decision.actor, "override_actor": None, "override_reason": None,
            "ts_override": None,
        }  # fmt: skip
        with self.store.engine.begin() as conn:
            key = conn.execute(_table.insert().values(**values)).inserted_primary_key
        assert key is not None
        return replace(decision, id=int(key[0]))

    def get(self, decision_id: int) -> GraduationDecision:
        """The decision `decision_id`; a ValueError naming it when there is none."""
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(_table).where(_table.c.id == int(decision_id))).first()
        if row is None:
            raise ValueError(
                f"no graduation decision {decision_id}: see `sapphire graduate history`"
            )
        return _decision(row)

    def history(self, strategy: str | None = None, *, limit: int = 100) -> list[GraduationDecision]:
        """The newest `limit` decisions, newest first (of one strategy if given)."""
        query = sa.select(_table).order_by(_table.c.ts_ns.desc(), _table.c.id.desc())
        if strategy is not None:
            query = query.where(_table.c.strategy == strategy)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [_decision(r) for r in rows]

    def override(
        self, decision_id: int, *, reason: str, actor: str, ts_ns: int | None = None
    ) -> GraduationDecision:
        """Let failed decision `decision_id` through: stored with `actor` and `reason` and
        appended to the audit log. A passed or already overridden decision is refused."""
        who = _check_actor(actor)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("an override needs a reason: say why the failed gates may be skipped")
        decision = self.get(decision_id)
        if decision.passed:
            raise ValueError(f"decision {decision_id} passed every gate: nothing to override")
        if decision.overridden:
            raise ValueError(
                f"decision {decision_id} was overridden already by {decision.override_actor}"
            )
        ts = time.time_ns() if ts_ns is None else int(ts_ns)
        with self.store.engine.begin() as conn:
            done = conn.execute(
                _table.update()
                .where(_table.c.id == decision.id, _table.c.override_actor.is_(None))
                .values(override_actor=who, override_reason=reason.strip(), ts_override=ts)
            ).rowcount
        if done != 1:  # another process overrode it between the read and the write
            raise ValueError(f"decision {decision_id} was overridden already")
        AuditLog(self.store).append(
            who, OVERRIDE_ACTION, f"graduation_decision={decision.id}",
            {
                "strategy": decision.strategy, "stage": decision.stage,
                "reason": reason.strip(), "failed_gates": [g.name for g in decision.failed_gates],
            },
            ts_ns=ts,
        )  # fmt: skip
        return self.get(decision_id)


def _same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return {k: str(v) for k, v in a.items()} == {k: str(v) for k, v in b.items()}


def graduated(
    store: Store, strategy: str, params: Mapping[str, Any], stage: str = "live"
) -> GraduationDecision | None:
    """The newest decision that lets `strategy` with `params` move to `stage` (every gate
    passed, or an override), or None: a newer failed decision for the same setup wins
    over an older pass, so a strategy that stopped passing is stopped too."""
    for decision in GraduationLog(store).history(strategy, limit=1000):
        if decision.stage == stage and _same_params(decision.params, params):
            return decision if decision.allowed else None
    return None
