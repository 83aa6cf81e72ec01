"""The database's tables (SQLAlchemy 2 declarative models): the trading ledger's, the ML
model registry's and the optimiser's studies.

Conventions (docs/engine.md, "Persistence"):
- money, prices, quantities and fees are `ExactDecimal` (NUMERIC on PostgreSQL, exact text
  on SQLite); never floats;
- timestamps are BIGINT nanoseconds since the epoch, UTC, named `ts_*` like the domain's
  `ts_ns` fields (int64 ns reaches the year 2262);
- identifiers are the domain's strings (`str(InstrumentId)`, `ClientOrderId`, ...) and keep
  the domain's names, so `client_order_id` is `client_order_id` in Python, SQL and JSON;
- enums are stored by member name (`"BUY"`, `"PARTIALLY_FILLED"`).

The schema is created and upgraded by the Alembic migrations in `migrations/versions`
(`sapphire.store.migrate(url)`), never by `metadata.create_all`; a test checks that the
migrations and these models agree on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sapphire.store.types import ExactDecimal, id_column_type

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Name of Alembic's version table (not `alembic_version`, so that a shared PostgreSQL
#: database can hold other applications' migrations too).
VERSION_TABLE = "sapphire_alembic_version"


class Base(DeclarativeBase):
    """Declarative base of the store's models; `Base.metadata` holds exactly them."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        Decimal: ExactDecimal(),
        int: sa.BigInteger(),
        dict[str, Any]: sa.JSON(),
        list[str]: sa.JSON(),
    }


class InstrumentRow(Base):
    """An instrument's specification (tick/lot sizes, limits, fees)."""

    __tablename__ = "instruments"

    instrument_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.String(100))
    venue: Mapped[str] = mapped_column(sa.String(50))
    base: Mapped[str] = mapped_column(sa.String(30))
    quote: Mapped[str] = mapped_column(sa.String(30))
    settlement: Mapped[str] = mapped_column(sa.String(30))
    contract_type: Mapped[str] = mapped_column(sa.String(20))
    tick_size: Mapped[Decimal]
    lot_size: Mapped[Decimal]
    min_qty: Mapped[Decimal | None]
    max_qty: Mapped[Decimal | None]
    min_notional: Mapped[Decimal | None]
    max_notional: Mapped[Decimal | None]
    maker_fee: Mapped[Decimal]
    taker_fee: Mapped[Decimal]
    multiplier: Mapped[Decimal]


class StrategyRunRow(Base):
    """One run of a trading node (backtest, paper, testnet or live) and its strategies."""

    __tablename__ = "strategy_runs"

    run_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(20))
    status: Mapped[str] = mapped_column(sa.String(20))
    strategy_ids: Mapped[list[str]]
    config: Mapped[dict[str, Any]]
    ts_started: Mapped[int]
    ts_finished: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (sa.Index(None, "ts_started"),)


class OrderRow(Base):
    """An order's latest state (upserted with every event); `is_open` mirrors Order.is_open."""

    __tablename__ = "orders"

    client_order_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"))
    strategy_id: Mapped[str] = mapped_column(sa.String(100))
    instrument_id: Mapped[str] = mapped_column(sa.String(200))
    side: Mapped[str] = mapped_column(sa.String(10))
    type: Mapped[str] = mapped_column(sa.String(20))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal | None]
    trigger_price: Mapped[Decimal | None]
    trailing_offset: Mapped[Decimal | None]
    trailing_offset_type: Mapped[str | None] = mapped_column(sa.String(10))
    time_in_force: Mapped[str] = mapped_column(sa.String(10))
    expire_time_ns: Mapped[int | None]
    post_only: Mapped[bool]
    reduce_only: Mapped[bool]
    contingency_type: Mapped[str] = mapped_column(sa.String(10))
    parent_order_id: Mapped[str | None] = mapped_column(sa.String(200))
    linked_order_ids: Mapped[list[str]]
    status: Mapped[str] = mapped_column(sa.String(20))
    is_open: Mapped[bool]
    filled_qty: Mapped[Decimal]
    avg_px: Mapped[Decimal | None]
    venue_order_id: Mapped[str | None] = mapped_column(sa.String(200))
    ts_init: Mapped[int]
    ts_last: Mapped[int]

    __table_args__ = (
        sa.Index(None, "strategy_id", "is_open"),
        sa.Index(None, "run_id", "is_open"),
        sa.Index(None, "venue_order_id"),
    )


class OrderEventRow(Base):
    """One order event, in the order it was applied (`seq` from 0); `payload` is the event's
    fields as JSON with decimals as exact strings."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(sa.ForeignKey("orders.client_order_id"))
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"))
    seq: Mapped[int] = mapped_column(sa.Integer)
    event_type: Mapped[str] = mapped_column(sa.String(40))
    event_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    ts_ns: Mapped[int]
    payload: Mapped[dict[str, Any]]

    __table_args__ = (
        sa.UniqueConstraint("client_order_id", "seq"),
        sa.Index(None, "run_id", "ts_ns"),
    )


class FillRow(Base):
    """One fill (an OrderFilled event, flattened for queries by time, run and strategy)."""

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"))
    client_order_id: Mapped[str] = mapped_column(sa.ForeignKey("orders.client_order_id"))
    venue_order_id: Mapped[str | None] = mapped_column(sa.String(200))
    trade_id: Mapped[str] = mapped_column(sa.String(200))
    strategy_id: Mapped[str] = mapped_column(sa.String(100))
    instrument_id: Mapped[str] = mapped_column(sa.String(200))
    side: Mapped[str] = mapped_column(sa.String(10))
    last_qty: Mapped[Decimal]
    last_px: Mapped[Decimal]
    fee: Mapped[Decimal]
    fee_currency: Mapped[str] = mapped_column(sa.String(30))
    liquidity: Mapped[str] = mapped_column(sa.String(10))
    ts_ns: Mapped[int]

    __table_args__ = (
        sa.UniqueConstraint("client_order_id", "trade_id"),
        sa.Index(None, "ts_ns"),
        sa.Index(None, "run_id", "ts_ns"),
        sa.Index(None, "strategy_id", "ts_ns"),
    )


class PositionRow(Base):
    """A position's latest state per (run, strategy, instrument, leg).

    `strategy_id` is "" for an account-wide position (no strategy); `leg` is NET for a
    netting book, LONG or SHORT for the two legs of a hedge-mode book. `cost_basis` (the
    signed Σ qty * entry price of the open quantity) is kept so that a restored position
    continues exactly; `avg_px` (= cost_basis / quantity) is there for queries.
    """

    __tablename__ = "positions"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"), primary_key=True)
    strategy_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    instrument_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    leg: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    quantity: Mapped[Decimal]
    cost_basis: Mapped[Decimal]
    avg_px: Mapped[Decimal | None]
    realized_pnl: Mapped[Decimal]
    fees: Mapped[Decimal]
    funding: Mapped[Decimal]
    buy_qty: Mapped[Decimal]
    sell_qty: Mapped[Decimal]
    fill_count: Mapped[int]
    multiplier: Mapped[Decimal]
    ts_opened: Mapped[int | None]
    ts_closed: Mapped[int | None]
    ts_last: Mapped[int | None]


class BalanceRow(Base):
    """The latest balances of an account (an `AccountState`), one row per currency; saving a
    new state replaces all of the account's rows. `free` = `total` - `locked`."""

    __tablename__ = "balances"

    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(30), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer)  # the currency's place in the AccountState
    total: Mapped[Decimal]
    locked: Mapped[Decimal]
    base_currency: Mapped[str | None] = mapped_column(sa.String(30))
    reported: Mapped[bool]
    event_id: Mapped[str] = mapped_column(sa.String(100))
    ts_ns: Mapped[int]


class EquitySnapshotRow(Base):
    """The portfolio's equity at a moment, in `currency` (`equity = balance +
    unrealized_pnl`; exposures are position notionals at the marks)."""

    __tablename__ = "equity_snapshots"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"))
    ts_ns: Mapped[int]
    currency: Mapped[str] = mapped_column(sa.String(30))
    equity: Mapped[Decimal]
    balance: Mapped[Decimal]
    unrealized_pnl: Mapped[Decimal]
    margin_used: Mapped[Decimal]
    gross_exposure: Mapped[Decimal]
    net_exposure: Mapped[Decimal]

    __table_args__ = (sa.Index(None, "run_id", "ts_ns"),)


class EquityStrategyRow(Base):
    """One strategy's PnL attribution within an equity snapshot."""

    __tablename__ = "equity_snapshot_strategies"

    snapshot_id: Mapped[int] = mapped_column(
        id_column_type(), sa.ForeignKey("equity_snapshots.id"), primary_key=True
    )
    strategy_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    currency: Mapped[str] = mapped_column(sa.String(30))
    realized: Mapped[Decimal]
    unrealized: Mapped[Decimal]
    fees: Mapped[Decimal]
    funding: Mapped[Decimal]


class RiskEventRow(Base):
    """A `RiskEvent` (a limit breached, an order denied, the kill switch: `kind` set) or a
    `TradingStateChanged` (`state` set); `payload` holds the whole event."""

    __tablename__ = "risk_events"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("strategy_runs.run_id"))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    event_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    strategy_id: Mapped[str | None] = mapped_column(sa.String(100))
    ts_ns: Mapped[int]
    kind: Mapped[str | None] = mapped_column(sa.String(60))
    state: Mapped[str | None] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]]

    __table_args__ = (sa.Index(None, "run_id", "ts_ns"),)


class ModelVersionRow(Base):
    """One registered version of a named ML model (`sapphire.ml.registry`): immutable once
    `status` is "ready" except for `metrics`, which later evaluations extend. `artefact` is
    the file's path relative to the registry's root; `status` is "pending" while the
    artefact is being written, "ready" after, "failed" if writing it failed."""

    __tablename__ = "ml_model_versions"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    created_ns: Mapped[int]
    task: Mapped[str] = mapped_column(sa.String(20))
    artefact: Mapped[str] = mapped_column(sa.String(500))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    lineage: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(sa.String(20))


class ModelAliasRow(Base):
    """Where an alias ("candidate", "challenger", "champion") of a model points now."""

    __tablename__ = "ml_model_aliases"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer)
    set_ns: Mapped[int]

    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["name", "version"], ["ml_model_versions.name", "ml_model_versions.version"]
        ),
    )


class AliasHistoryRow(Base):
    """One move of a model alias (`action`: "register", "promote" or "rollback"), in the
    order they happened (`id`); `previous_version` is where the alias pointed before."""

    __tablename__ = "ml_alias_history"

    id: Mapped[int] = mapped_column(id_column_type(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    alias: Mapped[str] = mapped_column(sa.String(50))
    version: Mapped[int] = mapped_column(sa.Integer)
    previous_version: Mapped[int | None] = mapped_column(sa.Integer)
    set_ns: Mapped[int]
    action: Mapped[str] = mapped_column(sa.String(20))

    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["name", "version"], ["ml_model_versions.name", "ml_model_versions.version"]
        ),
        sa.Index(None, "name", "alias", "id"),
    )


class StudyRow(Base):
    """An optimiser study (`sapphire.optimize`): its objectives and everything needed to
    resume it (`config`)."""

    __tablename__ = "optimize_studies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    strategy: Mapped[str] = mapped_column(sa.String(500))
    objectives: Mapped[list[str]]
    directions: Mapped[list[str]]
    config: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class TrialRow(Base):
    """One finished trial of a study; `number` counts from 0 within the study. The JSON
    columns are written pre-encoded by the optimiser (NaN and infinities as null)."""

    __tablename__ = "optimize_trials"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("optimize_studies.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(20))
    params: Mapped[dict[str, Any]]
    values: Mapped[list[float] | None] = mapped_column(sa.JSON)
    metrics: Mapped[dict[str, Any]]
    moments: Mapped[dict[str, Any] | None]
    extra: Mapped[dict[str, Any] | None]
    duration: Mapped[float] = mapped_column(sa.Float)

    __table_args__ = (
        sa.UniqueConstraint("study_id", "number", name="uq_optimize_trials_study_number"),
    )


# the service's tables, in modules of their own (they register on Base.metadata)
from sapphire.store import models_audit, models_auth, models_graduation  # noqa: E402, F401

metadata = Base.metadata
