"""What surveillance reports: an `Alert` per suspicious pattern, with the orders that
raised it and a one-line explanation that carries the figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sapphire.domain import ClientOrderId, InstrumentId, RiskEvent, StrategyId

__all__ = ["RISK_EVENT_KIND", "Alert", "Rule", "Severity", "iso_time"]

#: the `RiskEvent.kind` of an alert published on a node's bus (`Alert.to_risk_event`)
RISK_EVENT_KIND = "surveillance"


class Rule(StrEnum):
    """The surveillance rules (docs/surveillance.md explains each)."""

    WASH_TRADE = "WASH_TRADE"
    SPOOFING = "SPOOFING"
    LAYERING = "LAYERING"
    MARKING_THE_CLOSE = "MARKING_THE_CLOSE"
    ORDER_TO_TRADE = "ORDER_TO_TRADE"


class Severity(StrEnum):
    """How urgently a compliance officer should look: HIGH first."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


def iso_time(ts_ns: int) -> str:
    """`ts_ns` as ``YYYY-mm-ddTHH:MM:SS.fffZ`` (UTC, milliseconds)."""
    stamp = datetime.fromtimestamp(ts_ns // 1_000_000 / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ns // 1_000_000 % 1000:03d}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One suspicious pattern: which `rule` saw it at `ts_ns` (int ns, UTC), on which
    instrument, in which runs and strategies, the `client_order_ids` that raised it
    (their runs are `run_ids`; `instrument_id` None when they span several
    instruments), a one-line `explanation` with the figures, and the
    figures themselves (`figures`, numbers and short texts) for machines."""

    rule: Rule
    severity: Severity
    ts_ns: int
    instrument_id: InstrumentId | None
    run_ids: tuple[str, ...]
    strategy_ids: tuple[StrategyId, ...]
    client_order_ids: tuple[ClientOrderId, ...]
    explanation: str
    figures: Mapping[str, float | int | str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> tuple[int, str, tuple[str, ...], tuple[str, ...]]:
        """The order alerts are listed in: by time, then rule, then orders."""
        return (self.ts_ns, self.rule.value, self.run_ids, tuple(self.client_order_ids))

    def to_mapping(self) -> dict[str, Any]:
        """Plain JSON values (ids as strings, the time in ns and as ISO text)."""
        return {
            "rule": self.rule.value,
            "severity": self.severity.value,
            "ts_ns": self.ts_ns,
            "time": iso_time(self.ts_ns),
            "instrument_id": None if self.instrument_id is None else str(self.instrument_id),
            "run_ids": list(self.run_ids),
            "strategy_ids": [str(s) for s in self.strategy_ids],
            "client_order_ids": [str(c) for c in self.client_order_ids],
            "explanation": self.explanation,
            "figures": dict(self.figures),
        }

    def to_risk_event(self) -> RiskEvent:
        """The alert as a `RiskEvent` (kind "surveillance") for a node to publish on its
        bus, where the session journal stores risk events."""
        detail: dict[str, object] = self.to_mapping()
        return RiskEvent(
            ts_ns=self.ts_ns,
            kind=RISK_EVENT_KIND,
            reason=f"{self.rule.value}: {self.explanation}",
            detail=detail,
            strategy_id=self.strategy_ids[0] if len(self.strategy_ids) == 1 else None,
        )
