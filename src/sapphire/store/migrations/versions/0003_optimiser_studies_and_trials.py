"""The optimiser's studies and trials.

Before this revision the optimiser created these two tables itself
(`metadata.create_all`), so a database that already ran a study has them while its
version table says 0002 (or has no version table at all). Upgrading such a database keeps
the tables and their rows: they already have the right columns and indexes, and only the
constraints the old optimiser left unnamed get this schema's names (renamed in place on
PostgreSQL; on SQLite, which cannot rename a constraint, the small studies table is
copied into a new one).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STUDIES, TRIALS = "optimize_studies", "optimize_trials"
# the names this schema gives the constraints an earlier optimiser left unnamed:
# (table, kind, columns) -> name
_NAMES = {
    (STUDIES, "pk", ("id",)): "pk_optimize_studies",
    (STUDIES, "uq", ("name",)): "uq_optimize_studies_name",
    (TRIALS, "pk", ("id",)): "pk_optimize_trials",
    (TRIALS, "fk", ("study_id",)): "fk_optimize_trials_study_id_optimize_studies",
}


def _studies_columns() -> list[sa.schema.SchemaItem]:
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.String(length=500), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("directions", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(_NAMES[STUDIES, "pk", ("id",)])),
        sa.UniqueConstraint("name", name=op.f(_NAMES[STUDIES, "uq", ("name",)])),
    ]


def _existing_tables() -> set[str]:
    """Tables already in the database (none in offline `--sql` mode: there print them all)."""
    if context.is_offline_mode():
        return set()
    return set(sa.inspect(op.get_bind()).get_table_names())


def upgrade() -> None:
    """Create optimize_studies and optimize_trials, or adopt those an earlier optimiser made."""
    existing = _existing_tables()
    if STUDIES not in existing:
        op.create_table(STUDIES, *_studies_columns())
    if TRIALS not in existing:
        op.create_table(
            TRIALS,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("study_id", sa.Integer(), nullable=False),
            sa.Column("number", sa.Integer(), nullable=False),
            sa.Column("state", sa.String(length=20), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("values", sa.JSON(), nullable=True),
            sa.Column("metrics", sa.JSON(), nullable=False),
            sa.Column("moments", sa.JSON(), nullable=True),
            sa.Column("extra", sa.JSON(), nullable=True),
            sa.Column("duration", sa.Float(), nullable=False),
            sa.ForeignKeyConstraint(
                ["study_id"],
                [f"{STUDIES}.id"],
                name=op.f(_NAMES[TRIALS, "fk", ("study_id",)]),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(_NAMES[TRIALS, "pk", ("id",)])),
            sa.UniqueConstraint("study_id", "number", name=op.f("uq_optimize_trials_study_number")),
        )
        with op.batch_alter_table(TRIALS, schema=None) as batch_op:
            batch_op.create_index(
                batch_op.f("ix_optimize_trials_study_id"), ["study_id"], unique=False
            )
    if existing & {STUDIES, TRIALS}:
        _name_constraints(existing)


def _name_constraints(existing: set[str]) -> None:
    """Give the constraints of the tables an earlier optimiser created this schema's names."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    found: dict[tuple[str, str, tuple[str, ...]], str | None] = {}
    for table in existing & {STUDIES, TRIALS}:
        pk = inspector.get_pk_constraint(table)
        found[table, "pk", tuple(pk["constrained_columns"])] = pk.get("name")
        for uq in inspector.get_unique_constraints(table):
            found[table, "uq", tuple(uq["column_names"])] = uq.get("name")
        for fk in inspector.get_foreign_keys(table):
            found[table, "fk", tuple(fk["constrained_columns"])] = fk.get("name")
    wrong = {key: found[key] for key, name in _NAMES.items() if key in found and found[key] != name}
    if bind.dialect.name == "postgresql":
        quote = bind.dialect.identifier_preparer.quote
        for key, old in wrong.items():
            op.execute(
                f"ALTER TABLE {quote(key[0])} RENAME CONSTRAINT {quote(str(old))} "
                f"TO {quote(_NAMES[key])}"
            )
    elif bind.dialect.name == "sqlite" and (STUDIES, "uq", ("name",)) in wrong:
        # SQLite reports only the unique constraint's missing name (its primary and foreign
        # keys have none to compare): copy the studies into a table that names it
        copy_from = sa.Table(STUDIES, sa.MetaData(), *_studies_columns())
        with op.batch_alter_table(STUDIES, copy_from=copy_from, recreate="always"):
            pass


def downgrade() -> None:
    """Drop the optimiser's tables and every stored study with them."""
    with op.batch_alter_table(TRIALS, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_optimize_trials_study_id"))
    op.drop_table(TRIALS)
    op.drop_table(STUDIES)
