"""Model registry: ML model versions, their aliases and the history of alias moves.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VERSION_KEY = (["name", "version"], ["ml_model_versions.name", "ml_model_versions.version"])


def upgrade() -> None:
    """Create ml_model_versions, ml_alias_history and ml_model_aliases."""
    op.create_table(
        "ml_model_versions",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("task", sa.String(length=20), nullable=False),
        sa.Column("artefact", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_ml_model_versions")),
    )
    op.create_table(
        "ml_alias_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("set_ns", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            *_VERSION_KEY, name=op.f("fk_ml_alias_history_name_ml_model_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_alias_history")),
    )
    with op.batch_alter_table("ml_alias_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ml_alias_history_name_alias_id"), ["name", "alias", "id"], unique=False
        )

    op.create_table(
        "ml_model_aliases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=50), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("set_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            *_VERSION_KEY, name=op.f("fk_ml_model_aliases_name_ml_model_versions")
        ),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_ml_model_aliases")),
    )


def downgrade() -> None:
    """Drop the model registry's tables (artefact files are left on disk)."""
    op.drop_table("ml_model_aliases")
    with op.batch_alter_table("ml_alias_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ml_alias_history_name_alias_id"))

    op.drop_table("ml_alias_history")
    op.drop_table("ml_model_versions")
