"""What the working orders of the tick and book venue (`sapphire.sim.exchange.
MarketVenue`) reserve of the account's free margin.

An accepted order that opens or increases a position reserves, while it works, its
initial margin at its price plus the larger of the maker/taker fee (derivatives:
``increase * price * multiplier / leverage + fee`` in the settlement currency; spot:
``qty * price + fee`` of the quote for a BUY, `qty` of the base for a SELL). An order
whose reservation exceeds the free margin (or balance) *after* the other orders'
reservations is rejected, naming the numbers. Fills release it in proportion to the
quantity filled; cancels, expiry, rejection and liquidation release the rest; an
amendment re-reserves for the remaining quantity at the new price. Reduce-only and
position-reducing orders (judged against the position at arrival) reserve nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sapphire.domain import ContractType, Instrument, InstrumentId, OrderSide
from sapphire.portfolio import Account
from sapphire.sim.matching import WorkingOrder

__all__ = ["Reservations", "reservation"]

_ZERO = Decimal(0)


def reservation(
    inst: Instrument,
    side: OrderSide,
    qty: Decimal,
    px: Decimal,
    position: Decimal,
    leverage: Decimal,
) -> tuple[str, Decimal, str] | None:
    """(currency, amount, how it was computed) an order of `qty` at `px` reserves while
    it works against `position`, or None if it reserves nothing (it only reduces it)."""
    fee = max(inst.fee(qty, px, maker=True), inst.fee(qty, px, maker=False))
    if inst.contract_type is ContractType.SPOT:
        if side is OrderSide.BUY:
            return inst.quote, qty * px + fee, f"notional {qty * px} + fee {fee}"
        return inst.base, qty, f"the {qty} {inst.base} sold"
    reducing = min(qty, abs(position)) if position * side.sign < 0 else _ZERO
    increase = qty - reducing
    if increase == 0:
        return None
    margin = increase * px * inst.multiplier / leverage
    return (
        inst.settlement,
        margin + fee,
        f"initial margin {margin} at leverage {leverage} + fee {fee}",
    )


class Reservations:
    """The working orders' reservations, per order id: currency, amount, and the
    quantity it covers."""

    def __init__(self) -> None:
        self._held: dict[str, list[Any]] = {}

    def total(self, currency: str) -> Decimal:
        """What the working orders reserve in `currency`."""
        return sum((r[1] for r in self._held.values() if r[0] == currency), _ZERO)

    def admit(
        self,
        cid: str,
        inst: Instrument,
        side: OrderSide,
        qty: Decimal,
        px: Decimal,
        position: Decimal,
        account: Account,
        marks: dict[InstrumentId, Decimal],
    ) -> str | None:
        """Reserve for order `cid` arriving at `px`, or say why its reservation does not
        fit in the free margin left by the other working orders."""
        need = reservation(inst, side, qty, px, position, account.leverage)
        if need is None:
            return None
        ccy, amount, detail = need
        free = account.free_margin(ccy, marks)
        reserved = self.total(ccy)
        if amount > free - reserved:
            working = sum(1 for r in self._held.values() if r[0] == ccy)
            return (
                f"insufficient free {ccy} for {side} {qty} {inst.id} at {px}: "
                f"it reserves {amount} ({detail}), free {free} less {reserved} reserved by "
                f"{working} working order(s) leaves {free - reserved}"
            )
        self._held[cid] = [ccy, amount, qty]
        return None

    def renew(
        self,
        cid: str,
        inst: Instrument,
        work: WorkingOrder | None,
        position: Decimal,
        leverage: Decimal,
    ) -> None:
        """After an amendment of `cid` (now `work`, None when done): reserve for the
        remaining quantity at the new price."""
        held = self._held.pop(cid, None)
        if held is None or work is None:
            return  # it reserved nothing (reducing), or it is done
        px = work.price if work.price is not None else work.trigger_price
        left = work.quantity - work.filled_qty
        if px is None or px <= 0 or left <= 0:
            return
        need = reservation(inst, work.side, left, px, position, leverage)
        if need is not None:
            self._held[cid] = [need[0], need[1], left]

    def release(self, cid: str, filled: Decimal | None = None) -> None:
        """Release `cid`'s reservation: in proportion to `filled`, or all of it."""
        held = self._held.get(cid)
        if held is None:
            return
        if filled is None or filled >= held[2]:
            del self._held[cid]
            return
        held[1] -= held[1] * filled / held[2]
        held[2] -= filled
