"""Initial schema: instruments, strategy runs, orders and their events, fills, positions,
balances, equity snapshots (with per-strategy PnL) and risk events.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sapphire.store.types

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the store's tables and indexes."""
    op.create_table(
        "instruments",
        sa.Column("instrument_id", sa.String(length=200), nullable=False),
        sa.Column("symbol", sa.String(length=100), nullable=False),
        sa.Column("venue", sa.String(length=50), nullable=False),
        sa.Column("base", sa.String(length=30), nullable=False),
        sa.Column("quote", sa.String(length=30), nullable=False),
        sa.Column("settlement", sa.String(length=30), nullable=False),
        sa.Column("contract_type", sa.String(length=20), nullable=False),
        sa.Column("tick_size", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("lot_size", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("min_qty", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("max_qty", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("min_notional", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("max_notional", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("maker_fee", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("taker_fee", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("multiplier", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("instrument_id", name=op.f("pk_instruments")),
    )
    op.create_table(
        "strategy_runs",
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("strategy_ids", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("ts_started", sa.BigInteger(), nullable=False),
        sa.Column("ts_finished", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_strategy_runs")),
    )
    with op.batch_alter_table("strategy_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_strategy_runs_ts_started"), ["ts_started"], unique=False
        )

    op.create_table(
        "balances",
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=30), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("total", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("locked", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("base_currency", sa.String(length=30), nullable=True),
        sa.Column("reported", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_balances_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "account_id", "currency", name=op.f("pk_balances")),
    )
    op.create_table(
        "equity_snapshots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=30), nullable=False),
        sa.Column("equity", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("balance", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("unrealized_pnl", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("margin_used", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("gross_exposure", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("net_exposure", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["strategy_runs.run_id"],
            name=op.f("fk_equity_snapshots_run_id_strategy_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
    )
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_equity_snapshots_run_id_ts_ns"), ["run_id", "ts_ns"], unique=False
        )

    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("strategy_id", sa.String(length=100), nullable=False),
        sa.Column("instrument_id", sa.String(length=200), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("quantity", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("price", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("trigger_price", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("trailing_offset", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("trailing_offset_type", sa.String(length=10), nullable=True),
        sa.Column("time_in_force", sa.String(length=10), nullable=False),
        sa.Column("expire_time_ns", sa.BigInteger(), nullable=True),
        sa.Column("post_only", sa.Boolean(), nullable=False),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("contingency_type", sa.String(length=10), nullable=False),
        sa.Column("parent_order_id", sa.String(length=200), nullable=True),
        sa.Column("linked_order_ids", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("filled_qty", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("avg_px", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("venue_order_id", sa.String(length=200), nullable=True),
        sa.Column("ts_init", sa.BigInteger(), nullable=False),
        sa.Column("ts_last", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_orders_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint("client_order_id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_orders_run_id_is_open"), ["run_id", "is_open"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orders_strategy_id_is_open"), ["strategy_id", "is_open"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orders_venue_order_id"), ["venue_order_id"], unique=False
        )

    op.create_table(
        "positions",
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("strategy_id", sa.String(length=100), nullable=False),
        sa.Column("instrument_id", sa.String(length=200), nullable=False),
        sa.Column("leg", sa.String(length=10), nullable=False),
        sa.Column("quantity", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("cost_basis", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("avg_px", sapphire.store.types.ExactDecimal(), nullable=True),
        sa.Column("realized_pnl", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("fees", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("funding", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("buy_qty", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("sell_qty", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("fill_count", sa.BigInteger(), nullable=False),
        sa.Column("multiplier", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("ts_opened", sa.BigInteger(), nullable=True),
        sa.Column("ts_closed", sa.BigInteger(), nullable=True),
        sa.Column("ts_last", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_positions_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "strategy_id", "instrument_id", "leg", name=op.f("pk_positions")
        ),
    )
    op.create_table(
        "risk_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("strategy_id", sa.String(length=100), nullable=True),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_risk_events_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_risk_events_event_id")),
    )
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_risk_events_run_id_ts_ns"), ["run_id", "ts_ns"], unique=False
        )

    op.create_table(
        "equity_snapshot_strategies",
        sa.Column(
            "snapshot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("strategy_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=30), nullable=False),
        sa.Column("realized", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("unrealized", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("fees", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("funding", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["equity_snapshots.id"],
            name=op.f("fk_equity_snapshot_strategies_snapshot_id_equity_snapshots"),
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id", "strategy_id", name=op.f("pk_equity_snapshot_strategies")
        ),
    )
    op.create_table(
        "fills",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("client_order_id", sa.String(length=200), nullable=False),
        sa.Column("venue_order_id", sa.String(length=200), nullable=True),
        sa.Column("trade_id", sa.String(length=200), nullable=False),
        sa.Column("strategy_id", sa.String(length=100), nullable=False),
        sa.Column("instrument_id", sa.String(length=200), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("last_qty", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("last_px", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("fee", sapphire.store.types.ExactDecimal(), nullable=False),
        sa.Column("fee_currency", sa.String(length=30), nullable=False),
        sa.Column("liquidity", sa.String(length=10), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_order_id"],
            ["orders.client_order_id"],
            name=op.f("fk_fills_client_order_id_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_fills_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint(
            "client_order_id", "trade_id", name=op.f("uq_fills_client_order_id_trade_id")
        ),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fills_run_id_ts_ns"), ["run_id", "ts_ns"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_fills_strategy_id_ts_ns"), ["strategy_id", "ts_ns"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_fills_ts_ns"), ["ts_ns"], unique=False)

    op.create_table(
        "order_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("client_order_id", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_order_id"],
            ["orders.client_order_id"],
            name=op.f("fk_order_events_client_order_id_orders"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["strategy_runs.run_id"], name=op.f("fk_order_events_run_id_strategy_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
        sa.UniqueConstraint(
            "client_order_id", "seq", name=op.f("uq_order_events_client_order_id_seq")
        ),
        sa.UniqueConstraint("event_id", name=op.f("uq_order_events_event_id")),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_order_events_run_id_ts_ns"), ["run_id", "ts_ns"], unique=False
        )


def downgrade() -> None:
    """Drop the store's tables (the optimiser's tables are not touched)."""
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_events_run_id_ts_ns"))

    op.drop_table("order_events")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_ts_ns"))
        batch_op.drop_index(batch_op.f("ix_fills_strategy_id_ts_ns"))
        batch_op.drop_index(batch_op.f("ix_fills_run_id_ts_ns"))

    op.drop_table("fills")
    op.drop_table("equity_snapshot_strategies")
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_events_run_id_ts_ns"))

    op.drop_table("risk_events")
    op.drop_table("positions")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_venue_order_id"))
        batch_op.drop_index(batch_op.f("ix_orders_strategy_id_is_open"))
        batch_op.drop_index(batch_op.f("ix_orders_run_id_is_open"))

    op.drop_table("orders")
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_run_id_ts_ns"))

    op.drop_table("equity_snapshots")
    op.drop_table("balances")
    with op.batch_alter_table("strategy_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_strategy_runs_ts_started"))

    op.drop_table("strategy_runs")
    op.drop_table("instruments")
