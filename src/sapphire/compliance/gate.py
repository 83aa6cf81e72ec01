"""One graduation gate's outcome: the record the gates compute
(`sapphire.optimize.graduation`) and the store keeps with each decision
(`sapphire.compliance.graduation`). Its own module so both read the same class without
either importing the other's dependencies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Gate"]


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate's outcome: `figure` `op` `threshold` must hold (">=", "<="...); `passed`
    None when the gate did not apply (`detail` says why)."""

    name: str
    figure: float | None
    threshold: float | None
    op: str
    passed: bool | None
    detail: str = ""

    def to_mapping(self) -> dict[str, Any]:
        """The gate as JSON data."""
        return {
            "name": self.name, "figure": self.figure, "threshold": self.threshold,
            "op": self.op, "passed": self.passed, "detail": self.detail,
        }  # fmt: skip

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Gate:
        """A gate from `to_mapping`'s JSON data."""
        return cls(
            name=str(m["name"]), figure=m.get("figure"), threshold=m.get("threshold"),
            op=str(m.get("op", "")), passed=m.get("passed"), detail=str(m.get("detail", "")),
        )  # fmt: skip
