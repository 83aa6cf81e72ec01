"""The account at a venue: cash per currency, derivative positions, margin, equity.

- **Spot** fills move whole amounts: a BUY of `qty` at `px` debits ``qty * px`` of the
  quote currency and credits `qty` of the base currency; a SELL does the reverse. The
  base-currency balance *is* the position.
- **Derivatives** (linear perpetuals and futures, settled in the quote currency) keep a
  position in the account's own `PositionBook` (netting, or LONG/SHORT legs with
  `hedge=True`, or per instrument with `hedge={instrument ids}`; spot always nets); a
  fill only moves its realised PnL to the settlement currency. Funding
  is paid or received in the settlement currency.
- Fees are debited from `fee_currency` (default: quote for spot, settlement for
  derivatives); a negative fee is a rebate and credits it.

``equity(marks, fx)`` is every balance plus the unrealised PnL of open derivative
positions, each converted to the reporting currency with `fx` (see `sapphire.portfolio.fx`).
The value of a spot base currency with no rate in `fx` is taken from the mark of a spot
instrument this account traded (``BTC = mark of BTC/USDT`` when reporting in USDT).

Balances may go negative (a margin account's borrowing); `check_order` is where a
venue's "insufficient balance / margin" rule lives: it returns the reason or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from sapphire.domain.enums import ContractType, OrderSide, PositionSide
from sapphire.domain.identifiers import AccountId, InstrumentId
from sapphire.domain.instrument import Instrument
from sapphire.portfolio._num import Num, num, positive
from sapphire.portfolio.fx import FxRates, rate, to_reporting
from sapphire.portfolio.position import Position, PositionBook

__all__ = ["Account", "Marks"]

Marks = Mapping[InstrumentId, Decimal]

_ZERO = Decimal(0)
_SPOT = ContractType.SPOT  # a module constant: cheaper than the enum class attribute


def _currency(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip() or " " in value:
        raise ValueError(f"{name} must be a currency code, got {value!r}")
    return value


def check_supported(instrument: Instrument) -> None:
    """ValueError for instruments the books cannot account for (inverse contracts)."""
    if not isinstance(instrument, Instrument):
        raise ValueError(f"expected an Instrument, got {instrument!r}")
    if instrument.contract_type is _SPOT:
        if instrument.multiplier != 1:
            raise ValueError(
                f"spot instrument {instrument.id} has multiplier {instrument.multiplier}; "
                "spot quantities are in the base currency (multiplier 1)"
            )
    elif instrument.settlement != instrument.quote:
        raise ValueError(
            f"{instrument.id} settles in {instrument.settlement}, not its quote currency "
            f"{instrument.quote}: inverse contracts are not supported"
        )


class Account:
    """Balances per currency plus the derivative positions that margin them.

    `base_currency` is the reporting currency of `equity`; `leverage` (> 0) sets the
    initial margin of derivative positions (``|notional| / leverage``).
    """

    def __init__(
        self,
        base_currency: str,
        balances: Mapping[str, Num] | None = None,
        leverage: Num = Decimal(1),
        *,
        hedge: bool | Iterable[InstrumentId] = False,
        account_id: AccountId | None = None,
    ) -> None:
        self.base_currency = _currency("base_currency", base_currency)
        self._balances: dict[str, Decimal] = {}
        for ccy, amount in (balances or {}).items():
            self._balances[_currency("balance currency", ccy)] = num(f"balance of {ccy}", amount)
        self.leverage = positive("leverage", leverage)
        self.account_id = account_id
        self._instruments: dict[InstrumentId, Instrument] = {}
        self._hedge_all = hedge if isinstance(hedge, bool) else False
        self._hedged = frozenset() if isinstance(hedge, bool) else frozenset(hedge)
        for iid in self._hedged:
            if not isinstance(iid, InstrumentId):
                raise ValueError(f"hedge must be a bool or InstrumentIds, got {iid!r}")
        # only derivatives reach this book, so the rule needs no instrument definition
        self.positions = PositionBook(hedge=lambda iid: self._hedge_all or iid in self._hedged)

    @property
    def hedge(self) -> bool | frozenset[InstrumentId]:
        """True (every derivative hedged), False, or the hedged instrument ids."""
        return self._hedge_all or self._hedged

    def is_hedged(self, instrument: Instrument) -> bool:
        """Whether `instrument` keeps LONG and SHORT legs (never for spot)."""
        if instrument.contract_type is _SPOT:
            return False
        return self._hedge_all or instrument.id in self._hedged

    # ------------------------------------------------------------------ balances
    @property
    def balances(self) -> dict[str, Decimal]:
        """A copy of the cash per currency."""
        return dict(self._balances)

    def balance(self, currency: str) -> Decimal:
        return self._balances.get(currency, _ZERO)

    def _move(self, currency: str, amount: Decimal) -> None:
        if amount != 0:
            self._balances[currency] = self._balances.get(currency, _ZERO) + amount

    def deposit(self, currency: str, amount: Num) -> None:
        self._move(_currency("currency", currency), positive("deposit amount", amount))

    def withdraw(self, currency: str, amount: Num) -> None:
        """Take `amount` out; ValueError if the balance does not cover it."""
        ccy = _currency("currency", currency)
        value = positive("withdrawal amount", amount)
        if value > self.balance(ccy):
            raise ValueError(f"cannot withdraw {value} {ccy}: the balance is {self.balance(ccy)}")
        self._move(ccy, -value)

    # ------------------------------------------------------------------ instruments
    def _register(self, instrument: Instrument) -> Instrument:
        known = self._instruments.get(instrument.id)
        if known is instrument:
            return known
        if known is None:
            check_supported(instrument)
            self._instruments[instrument.id] = instrument
            return instrument
        if known != instrument:
            raise ValueError(f"{instrument.id} was traded with a different definition: {known}")
        return known

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        try:
            return self._instruments[instrument_id]
        except KeyError:
            raise ValueError(f"unknown instrument {instrument_id} for this account") from None

    # ------------------------------------------------------------------ events
    def apply_fill(
        self,
        instrument: Instrument,
        side: OrderSide,
        qty: Num,
        px: Num,
        fee: Num = _ZERO,
        fee_currency: str | None = None,
        ts_ns: int = 0,
        *,
        position_side: PositionSide | None = None,
    ) -> Decimal:
        """Book a fill; returns the PnL realised by it (derivatives; 0 for spot)."""
        inst = self._register(instrument)
        if not isinstance(side, OrderSide):
            raise ValueError(f"side must be an OrderSide, got {side!r}")
        q = positive("fill qty", qty)
        p = positive("fill price", px)
        f = num("fee", fee)
        spot = inst.contract_type is _SPOT
        fee_ccy = _currency(
            "fee_currency", fee_currency or (inst.quote if spot else inst.settlement)
        )
        if spot:
            if position_side is not None:
                raise ValueError(f"position_side={position_side!r} given for spot {inst.id}")
            if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
                raise ValueError(f"ts_ns must be int nanoseconds, got {ts_ns!r}")
        elif isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise ValueError(f"ts_ns must be int nanoseconds, got {ts_ns!r}")
        return self._book_fill(inst, side, q, p, f, fee_ccy, ts_ns, position_side)

    def _book_fill(
        self,
        inst: Instrument,
        side: OrderSide,
        q: Decimal,
        p: Decimal,
        f: Decimal,
        fee_ccy: str,
        ts_ns: int,
        position_side: PositionSide | None = None,
    ) -> Decimal:
        """`apply_fill` for checked values: a registered instrument, an OrderSide, finite
        Decimals (q > 0, p > 0), a currency code, int ts_ns (no position_side for spot).
        The venue and the portfolio book their own validated fills through here."""
        if inst.contract_type is _SPOT:
            sign = 1 if side is OrderSide.BUY else -1
            self._move(inst.base, sign * q)
            self._move(inst.quote, -sign * q * p)
            realized = _ZERO
        else:
            # a netted position already held: the account's hedge rule is fixed, so the
            # key lookup is all the book's `get_or_create` would do
            pos = self.positions._positions.get((inst.id, None)) if position_side is None else None
            if pos is not None and pos.multiplier is inst.multiplier:
                realized = pos._apply_fill(side, q, p, _ZERO, ts_ns)
            else:
                realized = self.positions._apply_fill(
                    inst.id, side, q, p, ts_ns, position_side, inst.multiplier
                )
            self._move(inst.settlement, realized)
        if f:
            self._move(fee_ccy, -f)
        return realized

    def apply_funding(
        self, instrument: Instrument | InstrumentId, rate: Num, mark_px: Num, ts_ns: int = 0
    ) -> Decimal:
        """Book a funding payment on the derivative position(s) of `instrument`.

        Returns the amount received (negative when paid), credited to the settlement
        currency. Long pays a positive rate.
        """
        inst = (
            self.instrument(instrument)
            if isinstance(instrument, InstrumentId)
            else self._register(instrument)
        )
        if inst.contract_type is _SPOT:
            raise ValueError(f"funding applies to derivatives, not to spot {inst.id}")
        amount = self.positions.apply_funding(inst.id, rate, mark_px, ts_ns)
        self._move(inst.settlement, amount)
        return amount

    # ------------------------------------------------------------------ valuation
    def _mark(self, marks: Marks | None, pos: Position) -> Decimal:
        if marks is None or pos.instrument_id not in marks:
            raise ValueError(f"no mark price for open position {pos.instrument_id}")
        return positive(f"mark of {pos.instrument_id}", marks[pos.instrument_id])

    def unrealized_pnl(self, marks: Marks) -> dict[str, Decimal]:
        """Unrealised PnL of open derivative positions, per settlement currency."""
        out: dict[str, Decimal] = {}
        for pos in self.positions.open_positions():
            ccy = self._instruments[pos.instrument_id].settlement
            out[ccy] = out.get(ccy, _ZERO) + pos.unrealized_pnl(self._mark(marks, pos))
        return out

    def margin_used(self, marks: Marks | None = None) -> dict[str, Decimal]:
        """Initial margin ``|notional| / leverage`` per settlement currency.

        Valued at the mark where `marks` has one, else at the average entry price.
        """
        out: dict[str, Decimal] = {}
        for pos in self.positions.open_positions():
            ccy = self._instruments[pos.instrument_id].settlement
            price = (
                positive(f"mark of {pos.instrument_id}", marks[pos.instrument_id])
                if marks is not None and pos.instrument_id in marks
                else abs(pos.cost_basis / pos.quantity)
            )
            out[ccy] = out.get(ccy, _ZERO) + abs(pos.notional(price)) / self.leverage
        return out

    def equity_by_currency(self, marks: Marks) -> dict[str, Decimal]:
        """Balance plus unrealised PnL, per currency."""
        out = dict(self._balances)
        for ccy, upnl in self.unrealized_pnl(marks).items():
            out[ccy] = out.get(ccy, _ZERO) + upnl
        return out

    def fx_with_marks(
        self, marks: Marks, fx: FxRates | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        """`fx` completed with spot marks: a base currency without a rate is valued at
        the mark of a spot instrument traded here whose quote currency has one."""
        reporting = currency or self.base_currency
        rates = dict(fx or {})
        for inst in self._instruments.values():
            if (
                inst.contract_type is _SPOT
                and inst.base not in rates
                and inst.base != reporting
                and inst.id in marks
            ):
                try:
                    quote_rate = rate(inst.quote, reporting, rates)
                except ValueError:
                    continue
                rates[inst.base] = positive(f"mark of {inst.id}", marks[inst.id]) * quote_rate
        return rates

    def equity(
        self, marks: Marks | None = None, fx: FxRates | None = None, currency: str | None = None
    ) -> Decimal:
        """Everything in `currency` (default `base_currency`): balances + unrealised PnL."""
        reporting = currency or self.base_currency
        marks = marks or {}
        rates = self.fx_with_marks(marks, fx, reporting)
        return to_reporting(self.equity_by_currency(marks), reporting, rates)

    def free_margin(self, currency: str, marks: Marks | None = None) -> Decimal:
        """Balance + unrealised PnL - initial margin, in `currency` (no conversion).

        Without `marks`, unrealised PnL counts as 0 and margin is at entry prices.
        """
        equity = self.balance(currency)
        if marks is not None:
            equity += self.unrealized_pnl(marks).get(currency, _ZERO)
        return equity - self.margin_used(marks).get(currency, _ZERO)

    # ------------------------------------------------------------------ checks
    def check_order(
        self,
        instrument: Instrument,
        side: OrderSide,
        qty: Num,
        px: Num,
        *,
        fee: Num | None = None,
        marks: Marks | None = None,
        position_side: PositionSide | None = None,
    ) -> str | None:
        """None if the account can pay for this order, else the reason (naming values).

        `fee` defaults to the taker fee of the notional. Spot: a BUY needs ``qty * px +
        fee`` of the quote currency, a SELL needs `qty` of the base currency (no short
        selling). Derivatives: the part of the order that opens or increases a position
        needs its initial margin plus the fee in free margin; a purely reducing order
        needs nothing (a hedge leg cannot be reduced below zero).
        """
        check_supported(instrument)
        if not isinstance(side, OrderSide):
            raise ValueError(f"side must be an OrderSide, got {side!r}")
        q = positive("order qty", qty)
        p = positive("order price", px)
        f = instrument.fee(q, p, maker=False) if fee is None else num("fee", fee)
        if instrument.contract_type is _SPOT:
            if side is OrderSide.BUY:
                need = q * p + f
                have = self.balance(instrument.quote)
                if need > have:
                    return (
                        f"insufficient {instrument.quote} balance for BUY {q} {instrument.id} "
                        f"at {p}: need {need} (incl. fee {f}), free {have}"
                    )
                return None
            have = self.balance(instrument.base)
            if q > have:
                return (
                    f"insufficient {instrument.base} balance for SELL {q} {instrument.id}: "
                    f"free {have}"
                )
            return None

        if self.is_hedged(instrument):
            if position_side not in (PositionSide.LONG, PositionSide.SHORT):
                raise ValueError(
                    f"a hedge-mode order on {instrument.id} needs position_side LONG or SHORT, "
                    f"got {position_side!r}"
                )
            pos = self.positions.get(instrument.id, position_side)
            held = abs(pos.quantity) if pos is not None else _ZERO
            opening = (side is OrderSide.BUY) == (position_side is PositionSide.LONG)
            if not opening and q > held:
                return (
                    f"{side} {q} would take the {position_side} leg of {instrument.id} "
                    f"below zero: it holds {held}"
                )
            increase = q if opening else _ZERO
        else:
            if position_side is not None:
                raise ValueError(
                    f"position_side={position_side!r} given for {instrument.id}, which is netted"
                )
            net = self.positions.net_quantity(instrument.id)
            reducing = min(q, abs(net)) if net * side.sign < 0 else _ZERO
            increase = q - reducing
        if increase == 0:
            return None
        margin = increase * p * instrument.multiplier / self.leverage
        need = margin + f
        have = self.free_margin(instrument.settlement, marks)
        if need > have:
            return (
                f"insufficient margin in {instrument.settlement} for {side} {q} "
                f"{instrument.id} at {p}: need {need} (initial margin {margin} at leverage "
                f"{self.leverage} + fee {f}), free {have}"
            )
        return None

    def __repr__(self) -> str:
        return (
            f"Account({self.base_currency}, balances={self._balances}, "
            f"leverage={self.leverage}, hedge={self.hedge})"
        )
