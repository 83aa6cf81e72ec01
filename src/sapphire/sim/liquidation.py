"""The liquidation model shared by both simulated venues: `LiquidationRule` and
`Liquidation`.

A margined account whose equity in a settlement currency (balance + unrealised PnL at
the marks) falls *below* the maintenance margin of its open derivative positions
settled in that currency (cross margin) is liquidated: the venue cancels the working
orders of those instruments and closes every such position at its mark, charging the
taker fee plus the liquidation fee. Each close is a `Liquidation`, a plain event the
node books on its per-strategy positions (`TradingNode.on_liquidation`); the venue
never changes the node's state. No insurance fund: a loss beyond the equity leaves a
negative balance.

The bar venue (`sapphire.sim.venue.SimulatedVenue`) checks the rule at every path point
of a bar; the tick and book venue (`sapphire.sim.exchange.MarketVenue`) after every
market-data event and funding payment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    OrderFilled,
    OrderSide,
    TradeId,
    to_decimal,
)
from sapphire.portfolio import Account

__all__ = ["DERIVATIVES", "LIQUIDATION_CANCEL", "Liquidation", "LiquidationRule"]

# why a venue canceled an order when it liquidated the position (`venue.reasons`)
LIQUIDATION_CANCEL = "canceled by the liquidation of the position"
# the contract types whose positions are margined, hence liquidated
DERIVATIVES = frozenset({ContractType.PERPETUAL, ContractType.FUTURE})
_ZERO = Decimal(0)


def _rate(name: str, value: object) -> Decimal:
    rate = to_decimal(value, name)
    if not _ZERO <= rate < 1:
        raise ValueError(f"{name} must be a rate in [0, 1), got {rate}")
    return rate


@dataclass(frozen=True, slots=True)
class LiquidationRule:
    """When a margined account is liquidated, and what it costs.

    `maintenance_margin_rate` (e.g. 0.005 = 0.5 %) of each open derivative position's
    notional at the mark is the maintenance margin; an account whose equity in a
    settlement currency (balance + unrealised PnL) is *below* the maintenance margin of
    the positions settled in it is liquidated: each position is closed at its mark,
    paying the taker fee plus `liquidation_fee_rate` of the notional. The bar venue
    can adopt the same rule (`breached` on its account, `close_fees` for the fills).
    """

    maintenance_margin_rate: Decimal = Decimal("0.005")
    liquidation_fee_rate: Decimal = Decimal("0.005")

    def __post_init__(self) -> None:
        for name in ("maintenance_margin_rate", "liquidation_fee_rate"):
            object.__setattr__(self, name, _rate(f"LiquidationRule.{name}", getattr(self, name)))

    def maintenance_margin(
        self, quantity: Decimal, mark: Decimal, multiplier: Decimal = Decimal(1)
    ) -> Decimal:
        """``|quantity| * mark * multiplier * maintenance_margin_rate``."""
        return abs(quantity) * mark * multiplier * self.maintenance_margin_rate

    def margin_by_currency(
        self, account: Account, marks: dict[InstrumentId, Decimal]
    ) -> dict[str, Decimal]:
        """The maintenance margin of `account`'s open derivative positions, per
        settlement currency (ValueError naming a position without a mark)."""
        out: dict[str, Decimal] = {}
        for pos in account.positions.open_positions():
            inst = account.instrument(pos.instrument_id)
            mark = marks.get(pos.instrument_id)
            if mark is None:
                raise ValueError(f"no mark price for open position {pos.instrument_id}")
            margin = self.maintenance_margin(pos.quantity, mark, inst.multiplier)
            out[inst.settlement] = out.get(inst.settlement, _ZERO) + margin
        return out

    def breached(self, account: Account, marks: dict[InstrumentId, Decimal]) -> list[str]:
        """The settlement currencies whose equity is below their maintenance margin."""
        margins = self.margin_by_currency(account, marks)
        if not margins:
            return []
        equity = account.equity_by_currency(marks)
        return sorted(ccy for ccy, mm in margins.items() if equity.get(ccy, _ZERO) < mm)

    def breaches(
        self, account: Account, marks: dict[InstrumentId, Decimal]
    ) -> Iterator[tuple[str, Decimal, Decimal]]:
        """(currency, equity, maintenance margin) of each breached settlement currency,
        valued when reached (after the closes of the one before); none while an open
        position has no mark (it cannot be valued yet)."""
        if any(p.instrument_id not in marks for p in account.positions.open_positions()):
            return
        for ccy in self.breached(account, marks):
            equity = account.equity_by_currency(marks).get(ccy, _ZERO)
            yield ccy, equity, self.margin_by_currency(account, marks)[ccy]

    def close_fees(
        self, instrument: Instrument, quantity: Decimal, price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """(taker fee, liquidation fee) of closing `quantity` at `price`."""
        notional = instrument.notional(abs(quantity), price)
        return notional * instrument.taker_fee, notional * self.liquidation_fee_rate

    def close(
        self,
        account: Account,
        instrument: Instrument,
        quantity: Decimal,
        mark: Decimal,
        ts_ns: int,
        *,
        venue: str,
        seq: int,
        equity: Decimal,
        margin: Decimal,
        canceled: Sequence[ClientOrderId],
        event_id: str | None = None,
    ) -> Liquidation:
        """Close a signed `quantity` of `instrument` on `account` at `mark` (taker fee +
        liquidation fee) and return the `Liquidation`, with its fill `{venue}-LIQ-{seq}`.
        Both simulated venues call this; they cancel the working orders first."""
        side = OrderSide.SELL if quantity > 0 else OrderSide.BUY
        fee, liq_fee = self.close_fees(instrument, quantity, mark)
        reason = (
            f"liquidation of {quantity} {instrument.id} at {mark}: equity {equity} "
            f"{instrument.settlement} below the maintenance margin {margin} "
            f"(rate {self.maintenance_margin_rate})"
        )
        ids: dict[str, Any] = {"event_id": event_id} if event_id is not None else {}
        fill = OrderFilled(
            **ids,
            ts_ns=ts_ns,
            client_order_id=ClientOrderId(f"{venue}-LIQ-{seq}"),
            trade_id=TradeId(f"{venue}-LT{seq}"),
            last_qty=abs(quantity),
            last_px=mark,
            liquidity=LiquiditySide.TAKER,
            fee=fee + liq_fee,
            fee_currency=instrument.settlement,
        )
        realized = account.apply_fill(
            instrument, side, abs(quantity), mark, fee + liq_fee, instrument.settlement, ts_ns
        )
        return Liquidation(
            instrument_id=instrument.id, ts_ns=ts_ns, side=side, quantity=abs(quantity),
            price=mark, fee=fee, liquidation_fee=liq_fee, equity=equity,
            maintenance_margin=margin, reason=reason, fill=fill, canceled=tuple(canceled),
            realized_pnl=realized,
        )  # fmt: skip

    def liquidation_price(
        self, quantity: Decimal, entry: Decimal, cash: Decimal, multiplier: Decimal = Decimal(1)
    ) -> Decimal:
        """The mark at which one position of signed `quantity` entered at `entry`, the
        only one on an account holding `cash`, reaches its maintenance margin:
        ``cash + q*m*(P - entry) = |q|*m*P*r``, so
        ``P = (q*m*entry - cash) / (q*m*(1 - sign(q)*r))``. Any mark strictly beyond
        it (below for a long, above for a short) liquidates."""
        q = to_decimal(quantity, "quantity")
        if q == 0:
            raise ValueError("a flat position has no liquidation price")
        sign = 1 if q > 0 else -1
        qm = q * multiplier
        return (qm * entry - cash) / (qm * (1 - sign * self.maintenance_margin_rate))


@dataclass(frozen=True, slots=True)
class Liquidation:
    """The venue closed a position because the account fell below maintenance margin.

    `fill` is the closing execution (a venue-made order id, taker liquidity, its fee the
    sum of `fee` and `liquidation_fee`); `canceled` the orders canceled before it. A
    plain event: the node books it on its own portfolio (`TradingNode.on_liquidation`).
    """

    instrument_id: InstrumentId
    ts_ns: int
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidation_fee: Decimal
    equity: Decimal
    maintenance_margin: Decimal
    reason: str
    fill: OrderFilled
    canceled: tuple[ClientOrderId, ...] = ()
    realized_pnl: Decimal = _ZERO
