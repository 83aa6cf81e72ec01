"""`InstrumentsRepo`: `Store`'s instrument specifications (saved, listed, looked up)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sapphire.domain.enums import ContractType
from sapphire.domain.identifiers import InstrumentId
from sapphire.domain.instrument import Instrument
from sapphire.store.base import StoreBase, id_text, upsert
from sapphire.store.models import InstrumentRow

__all__ = ["InstrumentsRepo"]


class InstrumentsRepo(StoreBase):
    """The instruments table: one row per instrument id, replaced on save."""

    def save_instrument(self, instrument: Instrument) -> None:
        """Insert or replace an instrument's specification."""
        if not isinstance(instrument, Instrument):
            raise ValueError(f"save_instrument takes an Instrument, got {instrument!r}")
        values = {
            "instrument_id": id_text(instrument.id, "instrument_id", 200),
            "symbol": instrument.id.symbol,
            "venue": instrument.id.venue,
            "base": instrument.base,
            "quote": instrument.quote,
            "settlement": instrument.settlement,
            "contract_type": instrument.contract_type.value,
            "tick_size": instrument.tick_size,
            "lot_size": instrument.lot_size,
            "min_qty": instrument.min_qty,
            "max_qty": instrument.max_qty,
            "min_notional": instrument.min_notional,
            "max_notional": instrument.max_notional,
            "maker_fee": instrument.maker_fee,
            "taker_fee": instrument.taker_fee,
            "multiplier": instrument.multiplier,
        }
        with self._tx() as conn:
            upsert(conn, InstrumentRow.__table__, values, ["instrument_id"])  # type: ignore[arg-type]

    def instruments(self) -> list[Instrument]:
        """Every stored instrument, by id."""
        with self._read() as conn:
            rows = conn.execute(sa.select(InstrumentRow).order_by(InstrumentRow.instrument_id))
            return [_instrument(row) for row in rows]

    def instrument(self, instrument_id: InstrumentId | str) -> Instrument:
        """The stored instrument `instrument_id` (ValueError if unknown)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(InstrumentRow).where(InstrumentRow.instrument_id == str(instrument_id))
            ).first()
        if row is None:
            raise ValueError(f"no instrument {str(instrument_id)!r} in the store")
        return _instrument(row)


def _instrument(row: Any) -> Instrument:
    return Instrument(
        InstrumentId(row.symbol, row.venue),
        row.base,
        row.quote,
        row.settlement,
        ContractType(row.contract_type),
        row.tick_size,
        row.lot_size,
        maker_fee=row.maker_fee,
        taker_fee=row.taker_fee,
        min_qty=row.min_qty,
        max_qty=row.max_qty,
        min_notional=row.min_notional,
        max_notional=row.max_notional,
        multiplier=row.multiplier,
    )
