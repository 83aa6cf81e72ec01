"""`BarReports`: the order events the bar venue (`sapphire.sim.venue.SimulatedVenue`)
reports, and the ids it makes for them.

Venue order ids are "{name}-N", trade ids "{name}-TN" and event ids "{name}-EN". When
the venue's name has no whitespace (and no settlement currency has a space) they are
valid by construction, and so are the events of values the venue computed and checked
itself: then they are built without re-validation (the hot path of a backtest).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sapphire.domain import (
    ClientOrderId,
    Instrument,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.events import trusted_builder

__all__ = ["BarReports"]

# constructors without validation, for the events of values the venue made itself
_new_filled = trusted_builder(OrderFilled)
_new_accepted = trusted_builder(OrderAccepted)
_new_canceled = trusted_builder(OrderCanceled)
_MAKER, _TAKER = LiquiditySide.MAKER, LiquiditySide.TAKER


class BarReports:
    """Builds the events of venue `name` and numbers its orders, trades and events."""

    def __init__(self, name: str, instruments: Iterable[Instrument]) -> None:
        self.name = name
        self._orders = 0
        self._trades = 0
        self._events = 0
        try:
            VenueOrderId(f"{name}-0")
            self.fast = all(" " not in i.settlement for i in instruments)
        except ValueError:
            self.fast = False

    def event_id(self) -> str:
        """The next event id."""
        self._events += 1
        return f"{self.name}-E{self._events}"

    def venue_order_id(self) -> VenueOrderId:
        """The next venue order id."""
        self._orders += 1
        text = f"{self.name}-{self._orders}"
        return str.__new__(VenueOrderId, text) if self.fast else VenueOrderId(text)

    def accepted(self, ts: int, cid: ClientOrderId, vid: VenueOrderId) -> OrderAccepted:
        if self.fast and type(ts) is int and ts >= 0:
            return _new_accepted(
                event_id=self.event_id(), ts_ns=ts, client_order_id=cid, venue_order_id=vid
            )
        return OrderAccepted(
            event_id=self.event_id(), ts_ns=ts, client_order_id=cid, venue_order_id=vid
        )

    def canceled(self, ts: int, cid: ClientOrderId) -> OrderCanceled:
        if self.fast and type(ts) is int and ts >= 0:
            return _new_canceled(event_id=self.event_id(), ts_ns=ts, client_order_id=cid)
        return OrderCanceled(event_id=self.event_id(), ts_ns=ts, client_order_id=cid)

    def rejected(self, ts: int, cid: ClientOrderId, reason: str) -> OrderRejected:
        return OrderRejected(event_id=self.event_id(), ts_ns=ts, client_order_id=cid, reason=reason)

    def expired(self, ts: int, cid: ClientOrderId) -> OrderExpired:
        return OrderExpired(event_id=self.event_id(), ts_ns=ts, client_order_id=cid)

    def updated(
        self,
        ts: int,
        cid: ClientOrderId,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
    ) -> OrderUpdated:
        return OrderUpdated(
            event_id=self.event_id(),
            ts_ns=ts,
            client_order_id=cid,
            quantity=quantity,
            price=price,
            trigger_price=trigger_price,
        )

    def filled(
        self,
        ts: int,
        cid: ClientOrderId,
        qty: Decimal,
        px: Decimal,
        maker: bool,
        fee: Decimal,
        currency: str,
        vid: VenueOrderId,
        *,
        checked: bool,
    ) -> OrderFilled:
        """A fill, the venue's next trade; `checked`: the venue checked its values (a
        positive finite price and quantity, an int time >= 0), so it skips validation."""
        self._trades += 1
        trade = f"{self.name}-T{self._trades}"
        return (_new_filled if checked else OrderFilled)(
            event_id=self.event_id(),
            ts_ns=ts,
            client_order_id=cid,
            trade_id=str.__new__(TradeId, trade) if checked else TradeId(trade),
            last_qty=qty,
            last_px=px,
            liquidity=_MAKER if maker else _TAKER,
            fee=fee,
            fee_currency=currency,
            venue_order_id=vid,
        )
