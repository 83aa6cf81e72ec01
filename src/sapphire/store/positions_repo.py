"""`PositionsRepo`: `Store`'s positions, one row per (run, strategy, instrument, leg) holding
its latest state (replaced on every save)."""

from __future__ import annotations

import sqlalchemy as sa

from sapphire.domain.enums import PositionSide
from sapphire.domain.events import check_ts
from sapphire.domain.identifiers import InstrumentId, StrategyId
from sapphire.domain.instrument import to_decimal
from sapphire.store.base import StoreBase, id_text, upsert
from sapphire.store.models import PositionRow
from sapphire.store.records import PositionLike, PositionState

__all__ = ["PositionsRepo"]

_ACCOUNT_WIDE = ""  # positions.strategy_id of a position that belongs to no strategy
_NET_LEG = "NET"  # positions.leg of a netting position


class PositionsRepo(StoreBase):
    """The positions table."""

    def save_position(self, position: PositionLike, *, run_id: str | None = None) -> None:
        """Insert or replace a position's state (key: run, strategy, instrument, leg)."""
        run = self._run_of(run_id)
        leg = position.leg
        if leg is not None and PositionSide(leg) is PositionSide.FLAT:
            raise ValueError("a position leg is LONG, SHORT or None (netting), not FLAT")
        values = {
            "run_id": run,
            "strategy_id": (
                _ACCOUNT_WIDE
                if position.strategy_id is None
                else id_text(position.strategy_id, "strategy_id", 100)
            ),
            "instrument_id": id_text(position.instrument_id, "instrument_id", 200),
            "leg": _NET_LEG if leg is None else PositionSide(leg).value,
            "quantity": to_decimal(position.quantity, "position.quantity"),
            "cost_basis": to_decimal(position.cost_basis, "position.cost_basis"),
            "avg_px": (
                None if position.avg_px is None else to_decimal(position.avg_px, "position.avg_px")
            ),
            "realized_pnl": to_decimal(position.realized_pnl, "position.realized_pnl"),
            "fees": to_decimal(position.fees, "position.fees"),
            "funding": to_decimal(position.funding, "position.funding"),
            "buy_qty": to_decimal(position.buy_qty, "position.buy_qty"),
            "sell_qty": to_decimal(position.sell_qty, "position.sell_qty"),
            "fill_count": _count(position.fill_count, "position.fill_count"),
            "multiplier": to_decimal(position.multiplier, "position.multiplier"),
            "ts_opened": _opt_ts(position.opened_ts_ns, "position.opened_ts_ns"),
            "ts_closed": _opt_ts(position.closed_ts_ns, "position.closed_ts_ns"),
            "ts_last": _opt_ts(position.last_ts_ns, "position.last_ts_ns"),
        }
        keys = ["run_id", "strategy_id", "instrument_id", "leg"]
        with self._tx() as conn:
            upsert(conn, PositionRow.__table__, values, keys)  # type: ignore[arg-type]

    def positions(self, run_id: str, *, open_only: bool = False) -> list[PositionState]:
        """The run's positions (flat ones too unless `open_only`), by strategy and instrument."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(PositionRow)
                .where(PositionRow.run_id == run_id)
                .order_by(PositionRow.strategy_id, PositionRow.instrument_id, PositionRow.leg)
            ).all()
        states = [
            PositionState(
                instrument_id=InstrumentId.parse(row.instrument_id),
                strategy_id=None
                if row.strategy_id == _ACCOUNT_WIDE
                else StrategyId(row.strategy_id),
                leg=None if row.leg == _NET_LEG else PositionSide(row.leg),
                quantity=row.quantity,
                cost_basis=row.cost_basis,
                avg_px=row.avg_px,
                realized_pnl=row.realized_pnl,
                fees=row.fees,
                funding=row.funding,
                buy_qty=row.buy_qty,
                sell_qty=row.sell_qty,
                fill_count=row.fill_count,
                multiplier=row.multiplier,
                opened_ts_ns=row.ts_opened,
                closed_ts_ns=row.ts_closed,
                last_ts_ns=row.ts_last,
            )
            for row in rows
        ]
        return [s for s in states if s.quantity != 0] if open_only else states


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _opt_ts(value: object, name: str) -> int | None:
    return None if value is None else check_ts(value, name)
