"""Strategy graduation decisions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create graduation_decisions."""
    op.create_table(
        "graduation_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("strategy", sa.String(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("stage", sa.String(length=10), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=250), nullable=False),
        sa.Column("override_actor", sa.String(length=250), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("ts_override", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_graduation_decisions")),
    )
    with op.batch_alter_table("graduation_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_graduation_decisions_strategy_ts_ns"),
            ["strategy", "ts_ns"],
            unique=False,
        )


def downgrade() -> None:
    """Drop graduation_decisions (and every stored decision)."""
    with op.batch_alter_table("graduation_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_graduation_decisions_strategy_ts_ns"))
    op.drop_table("graduation_decisions")
