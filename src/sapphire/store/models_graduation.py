"""Strategy graduation decisions (migration 0006): one row per gate check of a strategy
moving backtest -> paper -> live, with its evidence, and the override that let a failed
check through (`sapphire.compliance.graduation` reads and writes them).

`gates` is the list of every gate's figure, threshold, comparison and outcome; `evidence`
holds the data hash, code version, study, paper run and metrics the figures came from.
A decision is never edited except to add an override (who, why, when), once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sapphire.store.models import Base
from sapphire.store.types import id_column_type


class GraduationDecisionRow(Base):
    """One graduation decision: `strategy` with `params` checked for `stage` by `actor`."""

    __tablename__ = "graduation_decisions"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    ts_ns: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(20))
    strategy: Mapped[str] = mapped_column(sa.String(200))
    params: Mapped[dict[str, Any]]
    stage: Mapped[str] = mapped_column(sa.String(10))
    passed: Mapped[bool] = mapped_column(sa.Boolean)
    gates: Mapped[list[Any]] = mapped_column(sa.JSON)
    evidence: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(sa.String(250))
    override_actor: Mapped[str | None] = mapped_column(sa.String(250))
    override_reason: Mapped[str | None] = mapped_column(sa.Text)
    ts_override: Mapped[int | None]

    __table_args__ = (sa.Index(None, "strategy", "ts_ns"),)
