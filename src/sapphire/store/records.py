"""Plain records the store returns for things that are not domain events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from sapphire.domain.enums import LiquiditySide, OrderSide, PositionSide
from sapphire.domain.identifiers import (
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)

__all__ = [
    "EquityRecord",
    "EquitySnapshotLike",
    "FillRecord",
    "PositionLike",
    "PositionState",
    "RunInfo",
    "RunMode",
    "RunStatus",
    "StrategyPnlLike",
    "StrategyPnlRecord",
]


class RunMode(StrEnum):
    BACKTEST = "BACKTEST"
    PAPER = "PAPER"
    TESTNET = "TESTNET"
    LIVE = "LIVE"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"  # started and not finished: a crashed run stays RUNNING
    FINISHED = "FINISHED"  # stopped normally
    FAILED = "FAILED"  # stopped by an error


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A strategy run's row."""

    run_id: str
    mode: RunMode
    status: RunStatus
    strategy_ids: tuple[StrategyId, ...]
    config: dict[str, Any]
    ts_started: int
    ts_finished: int | None
    reason: str | None


class PositionLike(Protocol):
    """What `Store.save_position` reads (`sapphire.portfolio.Position` has all of it)."""

    @property
    def instrument_id(self) -> InstrumentId: ...
    @property
    def strategy_id(self) -> StrategyId | None: ...
    @property
    def leg(self) -> PositionSide | None: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def cost_basis(self) -> Decimal: ...
    @property
    def avg_px(self) -> Decimal | None: ...
    @property
    def realized_pnl(self) -> Decimal: ...
    @property
    def fees(self) -> Decimal: ...
    @property
    def funding(self) -> Decimal: ...
    @property
    def buy_qty(self) -> Decimal: ...
    @property
    def sell_qty(self) -> Decimal: ...
    @property
    def fill_count(self) -> int: ...
    @property
    def multiplier(self) -> Decimal: ...
    @property
    def opened_ts_ns(self) -> int | None: ...
    @property
    def closed_ts_ns(self) -> int | None: ...
    @property
    def last_ts_ns(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class PositionState:
    """A stored position: the fields of `PositionLike`, enough to restore it exactly.

    `strategy_id` None is an account-wide position; `leg` None a netting position (LONG /
    SHORT: a hedge-mode leg)."""

    instrument_id: InstrumentId
    strategy_id: StrategyId | None
    leg: PositionSide | None
    quantity: Decimal
    cost_basis: Decimal
    avg_px: Decimal | None
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    buy_qty: Decimal
    sell_qty: Decimal
    fill_count: int
    multiplier: Decimal
    opened_ts_ns: int | None
    closed_ts_ns: int | None
    last_ts_ns: int | None


class StrategyPnlLike(Protocol):
    """One strategy's PnL in an equity snapshot (`sapphire.portfolio.StrategyPnl`)."""

    @property
    def strategy_id(self) -> StrategyId: ...
    @property
    def currency(self) -> str: ...
    @property
    def realized(self) -> Decimal: ...
    @property
    def unrealized(self) -> Decimal: ...
    @property
    def fees(self) -> Decimal: ...
    @property
    def funding(self) -> Decimal: ...


class EquitySnapshotLike(Protocol):
    """What `Store.save_equity_snapshot` reads (`sapphire.portfolio.EquitySnapshot`)."""

    @property
    def ts_ns(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def equity(self) -> Decimal: ...
    @property
    def balance(self) -> Decimal: ...
    @property
    def unrealized_pnl(self) -> Decimal: ...
    @property
    def margin_used(self) -> Decimal: ...
    @property
    def gross_exposure(self) -> Decimal: ...
    @property
    def net_exposure(self) -> Decimal: ...
    @property
    def strategies(self) -> Mapping[StrategyId, Any]: ...


@dataclass(frozen=True, slots=True)
class StrategyPnlRecord:
    """A stored strategy PnL: ``total = realized + unrealized - fees + funding``."""

    strategy_id: StrategyId
    currency: str
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized - self.fees + self.funding


@dataclass(frozen=True, slots=True)
class EquityRecord:
    """A stored equity snapshot (the fields of `EquitySnapshotLike`)."""

    ts_ns: int
    currency: str
    equity: Decimal
    balance: Decimal
    unrealized_pnl: Decimal
    margin_used: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    strategies: dict[StrategyId, StrategyPnlRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FillRecord:
    """A stored fill: the `OrderFilled` event with its order's run, strategy, instrument
    and side."""

    run_id: str
    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId | None
    trade_id: TradeId
    strategy_id: StrategyId
    instrument_id: InstrumentId
    side: OrderSide
    last_qty: Decimal
    last_px: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: LiquiditySide
    ts_ns: int
