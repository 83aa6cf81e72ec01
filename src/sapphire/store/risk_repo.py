"""`RiskRepo`: `Store`'s risk events and trading-state changes, and the trading state they
leave the node (or a strategy) in."""

from __future__ import annotations

import sqlalchemy as sa

from sapphire.domain.enums import TradingState
from sapphire.domain.events import RiskEvent, TradingStateChanged
from sapphire.domain.identifiers import StrategyId
from sapphire.store.base import StoreBase, id_text
from sapphire.store.codec import decode_event, encode_event
from sapphire.store.models import RiskEventRow

__all__ = ["RiskRepo"]


class RiskRepo(StoreBase):
    """The risk_events table (append-only)."""

    def record_risk_event(
        self, event: RiskEvent | TradingStateChanged, *, run_id: str | None = None
    ) -> None:
        """Append a `RiskEvent` or `TradingStateChanged` (a retry of the same event is a
        no-op)."""
        run = self._run_of(run_id)
        if not isinstance(event, RiskEvent | TradingStateChanged):
            raise ValueError(
                f"record_risk_event takes a RiskEvent or TradingStateChanged, got {event!r}"
            )
        event_id = id_text(event.event_id, "event_id", 100)
        values = {
            "run_id": run,
            "event_type": type(event).__name__,
            "event_id": event_id,
            "strategy_id": None if event.strategy_id is None else str(event.strategy_id),
            "ts_ns": event.ts_ns,
            "kind": event.kind if isinstance(event, RiskEvent) else None,
            "state": event.state.value if isinstance(event, TradingStateChanged) else None,
            "reason": event.reason,
            "payload": encode_event(event),
        }
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(RiskEventRow.run_id).where(RiskEventRow.event_id == event_id)
            ).first()
            if exists is None:
                conn.execute(sa.insert(RiskEventRow).values(**values))

    def risk_events(self, run_id: str) -> list[RiskEvent | TradingStateChanged]:
        """The run's risk events and trading-state changes, by time."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(RiskEventRow.event_type, RiskEventRow.payload)
                .where(RiskEventRow.run_id == run_id)
                .order_by(RiskEventRow.ts_ns, RiskEventRow.id)
            ).all()
        out: list[RiskEvent | TradingStateChanged] = []
        for row in rows:
            event = decode_event(row.event_type, row.payload)
            assert isinstance(event, RiskEvent | TradingStateChanged)
            out.append(event)
        return out

    def trading_state(
        self, run_id: str, strategy_id: StrategyId | str | None = None
    ) -> TradingState:
        """The latest recorded trading state of the node (or of one strategy); ACTIVE if
        none was recorded."""
        query = sa.select(RiskEventRow.state).where(
            RiskEventRow.run_id == run_id, RiskEventRow.state.is_not(None)
        )
        if strategy_id is None:
            query = query.where(RiskEventRow.strategy_id.is_(None))
        else:
            query = query.where(RiskEventRow.strategy_id == str(strategy_id))
        with self._read() as conn:
            state = conn.execute(
                query.order_by(RiskEventRow.ts_ns.desc(), RiskEventRow.id.desc()).limit(1)
            ).scalar()
        return TradingState.ACTIVE if state is None else TradingState(state)
