"""The portfolio: positions per (strategy, instrument), PnL attribution, equity snapshots.

A `Portfolio` wraps one `Account` (the venue's view: balances, account-wide netted
derivative positions, margin) and books every fill twice: once in the account, once in
the position of the strategy that traded, so that each strategy has its own realised and
unrealised PnL, fees and funding. Both books see the same fills, so::

    account.equity(marks) - initial equity == Σ strategies (realised + unrealised - fees + funding)

(in the reporting currency, with the spot base currencies valued at their marks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from sapphire.domain.enums import OrderSide, PositionSide
from sapphire.domain.events import (
    OrderFilled,
    PositionChanged,
    PositionClosed,
    PositionEvent,
    PositionOpened,
    check_ts,
    trusted_builder,
)
from sapphire.domain.identifiers import InstrumentId, StrategyId
from sapphire.domain.instrument import Instrument
from sapphire.domain.orders import Order
from sapphire.portfolio._num import Num, num, positive
from sapphire.portfolio.account import Account, Marks, _currency, check_supported
from sapphire.portfolio.fx import FxRates, convert, to_reporting
from sapphire.portfolio.position import Position, PositionBook

__all__ = ["EquitySnapshot", "FillResult", "Portfolio", "StrategyPnl"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class StrategyPnl:
    """One strategy's PnL in `currency`: `total = realized + unrealized - fees + funding`."""

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
class EquitySnapshot:
    """The portfolio at `ts_ns`, in `currency`.

    `equity = balance + unrealized_pnl`: `balance` is every account balance converted
    (spot coins included, at their marks), `unrealized_pnl` that of open derivative
    positions. Exposures are the strategies' position notionals at the marks (gross
    ``Σ |notional|``, net ``Σ notional``). `strategies` attributes the PnL.
    """

    ts_ns: int
    currency: str
    equity: Decimal
    balance: Decimal
    unrealized_pnl: Decimal
    margin_used: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    strategies: Mapping[StrategyId, StrategyPnl] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FillResult:
    """What one fill did: the strategy's position after it, the PnL it realised for the
    strategy and for the account (they differ when strategies offset each other), and
    the position event to publish (None when nothing changed shape)."""

    position: Position
    realized_pnl: Decimal
    account_realized_pnl: Decimal
    event: PositionEvent | None


class Portfolio:
    """Positions by (strategy, instrument) over one `Account`.

    Hedge mode follows the account (`Account(..., hedge=True)` or a set of instrument
    ids): then every fill of a hedged derivative names its leg with `position_side`.
    """

    def __init__(self, account: Account, instruments: Iterable[Instrument] = ()) -> None:
        if not isinstance(account, Account):
            raise ValueError(f"account must be an Account, got {account!r}")
        self.account = account
        self._instruments: dict[InstrumentId, Instrument] = {}
        self._books: dict[StrategyId, PositionBook] = {}
        for instrument in instruments:
            self.add_instrument(instrument)

    @property
    def base_currency(self) -> str:
        return self.account.base_currency

    # ------------------------------------------------------------------ instruments
    def add_instrument(self, instrument: Instrument) -> None:
        check_supported(instrument)
        known = self._instruments.get(instrument.id)
        if known is not None and known != instrument:
            raise ValueError(f"{instrument.id} is already registered as {known}")
        self._instruments[instrument.id] = instrument

    @property
    def instruments(self) -> Mapping[InstrumentId, Instrument]:
        """The registered instruments, by id (read-only)."""
        return MappingProxyType(self._instruments)

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        try:
            return self._instruments[instrument_id]
        except KeyError:
            raise ValueError(
                f"unknown instrument {instrument_id}: add it with Portfolio.add_instrument"
            ) from None

    # ------------------------------------------------------------------ events
    def _is_hedged(self, instrument_id: InstrumentId) -> bool:
        inst = self._instruments.get(instrument_id)
        return inst is not None and self.account.is_hedged(inst)

    def _book(self, strategy_id: StrategyId) -> PositionBook:
        if not isinstance(strategy_id, StrategyId):
            raise ValueError(f"strategy_id must be a StrategyId, got {strategy_id!r}")
        book = self._books.get(strategy_id)
        if book is None:
            book = PositionBook(hedge=self._is_hedged, strategy_id=strategy_id)
            self._books[strategy_id] = book
        return book

    def apply_fill(
        self,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        side: OrderSide,
        qty: Num,
        px: Num,
        fee: Num = _ZERO,
        ts_ns: int = 0,
        *,
        fee_currency: str | None = None,
        position_side: PositionSide | None = None,
    ) -> FillResult:
        """Book one fill of `strategy_id` in its position and in the account.

        The fee must be in the instrument's settlement currency (the quote currency for
        spot), the currency the strategy's PnL is kept in; ValueError otherwise.
        """
        inst = self.instrument(instrument_id)
        settlement = inst.quote  # linear contracts settle in their quote currency
        if fee_currency is not None and fee_currency != settlement:
            raise ValueError(
                f"fee currency {fee_currency!r} of a {instrument_id} fill: the portfolio "
                f"attributes fees in the settlement currency {settlement}"
            )
        if not isinstance(side, OrderSide):
            raise ValueError(f"side must be an OrderSide, got {side!r}")
        q = positive("fill qty", qty)
        p = positive("fill price", px)
        f = num("fee", fee)
        check_ts(ts_ns)
        return self._book_fill(strategy_id, inst, side, q, p, f, ts_ns, position_side, True)

    def _book_fill(
        self,
        strategy_id: StrategyId,
        inst: Instrument,
        side: OrderSide,
        q: Decimal,
        p: Decimal,
        f: Decimal,
        ts_ns: int,
        position_side: PositionSide | None,
        check_account: bool,
    ) -> FillResult:
        """Book checked values (OrderSide, finite Decimals q > 0 and p > 0, int ts_ns >= 0,
        the fee in `inst`'s settlement currency); `check_account` False skips the account's
        re-validation of the same values."""
        settlement = inst.quote
        book = self._book(strategy_id)
        # a netted position this book already holds: hedge mode is fixed per registered
        # instrument (the account's), so the key lookup is all `get_or_create` would do
        pos = book._positions.get((inst.id, None)) if position_side is None else None
        if pos is None or pos.multiplier is not inst.multiplier:
            pos = book.get_or_create(inst.id, position_side, multiplier=inst.multiplier)
        if pos.leg is not None:  # a hedge leg that would cross zero fails before any booking
            pos.check_fill(side, q)
        before_qty = pos.quantity
        account = self.account
        if check_account or position_side is not None:
            account_realized = account.apply_fill(
                inst, side, q, p, f, settlement, ts_ns, position_side=position_side
            )
        else:
            account._register(inst)
            fee_ccy = _currency("fee_currency", settlement)
            account_realized = account._book_fill(inst, side, q, p, f, fee_ccy, ts_ns)
        realized = pos._apply_fill(side, q, p, f, ts_ns)
        return FillResult(pos, realized, account_realized, self._event(pos, before_qty, ts_ns))

    def apply_order_fill(
        self, order: Order, fill: OrderFilled, *, position_side: PositionSide | None = None
    ) -> FillResult:
        """Book `fill` (an `OrderFilled` of `order`) for the order's strategy.

        Only the books change: applying the event to the order itself (`order.apply`) is
        the caller's step.
        """
        if not isinstance(order, Order) or not isinstance(fill, OrderFilled):
            raise ValueError(f"expected an Order and an OrderFilled, got {order!r}, {fill!r}")
        if fill.client_order_id != order.client_order_id:
            raise ValueError(
                f"fill {fill.trade_id} belongs to order {fill.client_order_id}, "
                f"not {order.client_order_id}"
            )
        if position_side is not None:
            return self.apply_fill(
                order.strategy_id,
                order.instrument_id,
                order.side,
                fill.last_qty,
                fill.last_px,
                fill.fee,
                fill.ts_ns,
                fee_currency=fill.fee_currency,
                position_side=position_side,
            )
        # an OrderFilled holds checked values (finite Decimals, qty and price > 0, int
        # ts >= 0) and an Order a typed side and strategy: book them without re-checking
        inst = self.instrument(order.instrument_id)
        if fill.fee_currency != inst.quote:
            raise ValueError(
                f"fee currency {fill.fee_currency!r} of a {order.instrument_id} fill: the "
                f"portfolio attributes fees in the settlement currency {inst.quote}"
            )
        return self._book_fill(
            order.strategy_id,
            inst,
            order.side,
            fill.last_qty,
            fill.last_px,
            fill.fee,
            fill.ts_ns,
            None,
            False,
        )

    def apply_funding(
        self, instrument_id: InstrumentId, rate: Num, mark_px: Num, ts_ns: int = 0
    ) -> Decimal:
        """Funding on `instrument_id` for the account and every strategy holding it;
        returns the amount the account received (negative when paid)."""
        inst = self.instrument(instrument_id)
        amount = self.account.apply_funding(inst, rate, mark_px, ts_ns)
        for book in self._books.values():
            book.apply_funding(instrument_id, rate, mark_px, ts_ns)
        return amount

    def _event(self, pos: Position, before: Decimal, ts_ns: int) -> PositionEvent | None:
        if pos.strategy_id is None:
            return None
        after = pos.quantity
        kind: type[PositionEvent]
        if before == 0:
            if after == 0:
                return None
            kind = PositionOpened
        elif after == 0:
            kind = PositionClosed
        elif after != before:
            kind = PositionChanged
        else:
            return None
        inst = self._instruments[pos.instrument_id]
        # the books hold exactly what PositionEvent checks (typed ids, a side that
        # agrees with the quantity, finite Decimals, avg_px > 0 while open): no re-check
        return trusted_builder(kind)(
            ts_ns=ts_ns,
            strategy_id=pos.strategy_id,
            instrument_id=pos.instrument_id,
            side=pos.side,
            quantity=pos.quantity,
            avg_px=pos.avg_px,
            realized_pnl=pos.realized_pnl,
            currency=inst.quote,
        )

    # ------------------------------------------------------------------ positions
    def strategies(self) -> list[StrategyId]:
        return list(self._books)

    def position(
        self,
        strategy_id: StrategyId,
        instrument_id: InstrumentId,
        position_side: PositionSide | None = None,
    ) -> Position | None:
        book = self._books.get(strategy_id)
        return None if book is None else book.get(instrument_id, position_side)

    def positions(
        self, strategy_id: StrategyId | None = None, instrument_id: InstrumentId | None = None
    ) -> list[Position]:
        """Every position ever opened (flat ones included), optionally filtered."""
        books = (
            [self._books[strategy_id]]
            if strategy_id is not None and strategy_id in self._books
            else []
            if strategy_id is not None
            else list(self._books.values())
        )
        return [p for book in books for p in book.positions(instrument_id)]

    def open_positions(self, strategy_id: StrategyId | None = None) -> list[Position]:
        return [p for p in self.positions(strategy_id) if p.is_open]

    def net_quantity(
        self, instrument_id: InstrumentId, strategy_id: StrategyId | None = None
    ) -> Decimal:
        """Signed quantity of `instrument_id` (one strategy's, or all strategies')."""
        if strategy_id is None:
            books: Iterable[PositionBook] = self._books.values()
        else:
            book = self._books.get(strategy_id)
            books = () if book is None else (book,)
        total = _ZERO  # summed in the order of `positions(strategy_id, instrument_id)`
        for book in books:
            for p in book.positions(instrument_id):
                total += p.quantity
        return total

    # ------------------------------------------------------------------ valuation
    def _mark(self, marks: Marks, instrument_id: InstrumentId) -> Decimal:
        if instrument_id not in marks:
            raise ValueError(f"no mark price for open position {instrument_id}")
        return positive(f"mark of {instrument_id}", marks[instrument_id])

    def _rates(self, marks: Marks, fx: FxRates | None, currency: str) -> dict[str, Decimal]:
        return self.account.fx_with_marks(marks, fx, currency)

    def strategy_pnl(
        self,
        strategy_id: StrategyId,
        marks: Marks,
        fx: FxRates | None = None,
        currency: str | None = None,
    ) -> StrategyPnl:
        """The PnL of `strategy_id`, every position's settlement currency converted."""
        reporting = currency or self.base_currency
        rates = self._rates(marks, fx, reporting)
        sums = {"realized": _ZERO, "unrealized": _ZERO, "fees": _ZERO, "funding": _ZERO}
        for pos in self.positions(strategy_id):
            ccy = self._instruments[pos.instrument_id].quote
            upnl = (
                pos.unrealized_pnl(self._mark(marks, pos.instrument_id)) if pos.is_open else _ZERO
            )
            for key, value in (
                ("realized", pos.realized_pnl),
                ("unrealized", upnl),
                ("fees", pos.fees),
                ("funding", pos.funding),
            ):
                sums[key] += convert(value, ccy, reporting, rates)
        return StrategyPnl(strategy_id, reporting, **sums)

    def pnl_by_strategy(
        self, marks: Marks, fx: FxRates | None = None, currency: str | None = None
    ) -> dict[StrategyId, StrategyPnl]:
        return {sid: self.strategy_pnl(sid, marks, fx, currency) for sid in self._books}

    def _exposures(
        self,
        marks: Marks,
        fx: FxRates | None,
        currency: str | None,
        strategy_id: StrategyId | None,
    ) -> tuple[Decimal, Decimal]:
        reporting = currency or self.base_currency
        rates = self._rates(marks, fx, reporting)
        gross = net = _ZERO
        for pos in self.open_positions(strategy_id):
            inst = self._instruments[pos.instrument_id]
            value = convert(
                pos.notional(self._mark(marks, pos.instrument_id)), inst.quote, reporting, rates
            )
            gross += abs(value)
            net += value
        return gross, net

    def gross_exposure(
        self,
        marks: Marks,
        fx: FxRates | None = None,
        currency: str | None = None,
        strategy_id: StrategyId | None = None,
    ) -> Decimal:
        """``Σ |quantity * mark * multiplier|`` over open positions, in `currency`."""
        return self._exposures(marks, fx, currency, strategy_id)[0]

    def net_exposure(
        self,
        marks: Marks,
        fx: FxRates | None = None,
        currency: str | None = None,
        strategy_id: StrategyId | None = None,
    ) -> Decimal:
        """``Σ quantity * mark * multiplier`` (shorts negative), in `currency`."""
        return self._exposures(marks, fx, currency, strategy_id)[1]

    def equity(
        self, marks: Marks | None = None, fx: FxRates | None = None, currency: str | None = None
    ) -> Decimal:
        return self.account.equity(marks, fx, currency)

    def snapshot(
        self,
        ts_ns: int,
        marks: Marks | None = None,
        fx: FxRates | None = None,
        currency: str | None = None,
    ) -> EquitySnapshot:
        """Equity, balance, unrealised PnL, margin, exposures and per-strategy PnL now."""
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or ts_ns < 0:
            raise ValueError(f"ts_ns must be int nanoseconds >= 0, got {ts_ns!r}")
        reporting = currency or self.base_currency
        marks = marks or {}
        rates = self._rates(marks, fx, reporting)
        balance = to_reporting(self.account.balances, reporting, rates)
        upnl = to_reporting(self.account.unrealized_pnl(marks), reporting, rates)
        margin = to_reporting(self.account.margin_used(marks), reporting, rates)
        gross, net = self._exposures(marks, rates, reporting, None)
        return EquitySnapshot(
            ts_ns=ts_ns,
            currency=reporting,
            equity=balance + upnl,
            balance=balance,
            unrealized_pnl=upnl,
            margin_used=margin,
            gross_exposure=gross,
            net_exposure=net,
            strategies=self.pnl_by_strategy(marks, rates, reporting),
        )
