"""The HTML report of one graduation decision: its verdict, every gate's figure against
its threshold, the override if any, and the evidence (data hash, code version, params)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from sapphire.report import Page, cell, format_number, grid_table, kv_table, report_path

__all__ = ["decision_report"]


def _outcome(passed: Any) -> str:
    return "n/a" if passed is None else "PASS" if passed else "FAIL"


def decision_report(decision: Mapping[str, Any], path: str | Path | None = None) -> Path:
    """Write the report of a decision (`GraduationDecision.to_mapping()`); its path."""
    page = Page()
    status = str(decision.get("status", "")).upper()
    page.h2(f"Verdict: {status}")
    rows = [
        "<tr>" + cell(escape(str(g["name"]))) + cell(format_number(g.get("figure")), numeric=True)
        + cell(escape(str(g.get("op", "")))) + cell(format_number(g.get("threshold")), numeric=True)
        + cell(_outcome(g.get("passed"))) + cell(escape(str(g.get("detail", "")))) + "</tr>"
        for g in decision.get("gates", [])
    ]  # fmt: skip
    page.html(grid_table("gates", ["gate", "figure", "", "threshold", "outcome", "on"], rows))
    override = decision.get("override")
    if override:
        page.h2("Override")
        page.note("A failed gate was let through by an explicit, audited override.")
        page.html(kv_table("override", override))
    page.h2("Decision")
    page.html(kv_table("decision", {
        k: decision.get(k) for k in ("id", "kind", "strategy", "stage", "actor", "ts_ns")
    }))  # fmt: skip
    page.html(kv_table("params", dict(decision.get("params") or {})))
    evidence = dict(decision.get("evidence") or {})
    metrics = evidence.pop("metrics", None)
    page.h2("Evidence")
    page.html(kv_table("evidence", evidence))
    if metrics:
        page.h2("Backtest metrics")
        page.html(kv_table("metrics", metrics, numeric=True))
    name = f"graduation-{decision.get('id')}"
    title = (
        f"Graduation {decision.get('id')}: {decision.get('strategy')} to {decision.get('stage')}"
    )
    return page.write(report_path(path, name), title, title, status)
