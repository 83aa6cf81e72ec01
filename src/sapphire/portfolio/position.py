"""Positions: signed quantity, average entry, realised PnL, fees and funding, in Decimal.

A `Position` nets every fill of one instrument (for one strategy, or for the whole
account). A fill in the direction of the position (or from flat) increases it and moves
the average entry price; a fill against it closes ``min(fill, |position|)`` and realises
``closed * (fill_px - avg_px) * multiplier`` (sign-adjusted for shorts); whatever is left
of the fill after the position reached zero opens a new position on the other side at the
fill price (a *flip*).

Internally the position keeps its signed cost basis ``cost = Σ signed open qty * entry
price`` instead of the average price, so that no division ever enters the books:
``avg_px = cost / quantity`` is only reported. A partial close takes the share
``cost * closed / |quantity|`` of the basis, rounded to `LEDGER_QUANTUM` (1e-16); a full
close takes all of it. Hence, exactly, at every moment::

    realized_pnl + unrealized_pnl(mark) == multiplier * (Σ -signed_qty_i * px_i + qty * mark)

i.e. what a cash account would show (`docs/engine.md`, "Portfolio and accounting").

`PositionBook` holds the positions of many instruments: netting (one position per
instrument) or hedge mode (a LONG and a SHORT leg per instrument, chosen per fill).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation

from sapphire.domain.enums import OrderSide, PositionSide
from sapphire.domain.identifiers import InstrumentId, StrategyId
from sapphire.portfolio._num import LEDGER_EXPONENT, LEDGER_QUANTUM, Num, num, positive

__all__ = ["HedgeRule", "Position", "PositionBook"]

_ZERO = Decimal(0)


class Position:
    """The netted position of one instrument (for one strategy, or account-wide).

    `leg` is set in hedge mode: a LONG leg can never go below zero, a SHORT leg never
    above (a fill that would cross zero raises ValueError instead of flipping).

    Money fields, all in the instrument's settlement currency:
    - `realized_pnl`: price PnL of closed quantity (fees and funding not included);
    - `fees`: fees paid (a maker rebate is a negative fee);
    - `funding`: funding received (negative when paid);
    so the position's contribution to equity is
    ``realized_pnl + unrealized_pnl(mark) - fees + funding`` (`total_pnl`).
    """

    __slots__ = (
        "_cost",
        "buy_qty",
        "closed_ts_ns",
        "fees",
        "fill_count",
        "funding",
        "instrument_id",
        "last_ts_ns",
        "leg",
        "multiplier",
        "opened_ts_ns",
        "quantity",
        "realized_pnl",
        "sell_qty",
        "strategy_id",
    )

    def __init__(
        self,
        instrument_id: InstrumentId,
        strategy_id: StrategyId | None = None,
        *,
        multiplier: Decimal | int | str = Decimal(1),
        leg: PositionSide | None = None,
    ) -> None:
        if not isinstance(instrument_id, InstrumentId):
            raise ValueError(f"instrument_id must be an InstrumentId, got {instrument_id!r}")
        if leg is not None and leg not in (PositionSide.LONG, PositionSide.SHORT):
            raise ValueError(f"a hedge leg is LONG or SHORT, got {leg!r}")
        self.instrument_id = instrument_id
        self.strategy_id = strategy_id
        self.multiplier = positive("multiplier", multiplier)
        self.leg = leg
        self.quantity = _ZERO  # signed: > 0 long, < 0 short
        self._cost = _ZERO  # signed cost basis of the open quantity (price units)
        self.realized_pnl = _ZERO
        self.fees = _ZERO
        self.funding = _ZERO
        self.buy_qty = _ZERO  # Σ quantity bought; buy_qty - sell_qty == quantity
        self.sell_qty = _ZERO
        self.fill_count = 0
        self.opened_ts_ns: int | None = None
        self.closed_ts_ns: int | None = None
        self.last_ts_ns: int | None = None

    # ---------------------------------------------------------------- state
    @property
    def side(self) -> PositionSide:
        if self.quantity > 0:
            return PositionSide.LONG
        if self.quantity < 0:
            return PositionSide.SHORT
        return PositionSide.FLAT

    @property
    def is_open(self) -> bool:
        return self.quantity != 0

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def avg_px(self) -> Decimal | None:
        """Average entry price of the open quantity; None while flat."""
        if self.quantity == 0:
            return None
        return self._cost / self.quantity

    @property
    def cost_basis(self) -> Decimal:
        """Signed ``Σ open qty * entry price`` (price units, before the multiplier)."""
        return self._cost

    # ---------------------------------------------------------------- updates
    def apply_fill(
        self,
        side: OrderSide,
        qty: Num,
        px: Num,
        fee: Num = _ZERO,
        ts_ns: int = 0,
    ) -> Decimal:
        """Book one fill; returns the PnL it realised (before fees)."""
        if not isinstance(side, OrderSide):
            raise ValueError(f"side must be an OrderSide, got {side!r}")
        q = positive("fill qty", qty)
        p = positive("fill price", px)
        f = num("fee", fee)
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise ValueError(f"ts_ns must be int nanoseconds, got {ts_ns!r}")
        return self._apply_fill(side, q, p, f, ts_ns)

    def _apply_fill(
        self, side: OrderSide, q: Decimal, p: Decimal, f: Decimal, ts_ns: int
    ) -> Decimal:
        """`apply_fill` for values already checked: an OrderSide, finite Decimals with
        q > 0 and p > 0, int ts_ns (the books' internal path)."""
        sign = 1 if side is OrderSide.BUY else -1
        quantity = self.quantity
        old_sign = (quantity > 0) - (quantity < 0)
        if self.leg is not None:
            self.check_fill(side, q)

        realized = _ZERO
        if old_sign == 0 or old_sign == sign:
            if old_sign == 0:
                self.opened_ts_ns = ts_ns
                self.closed_ts_ns = None
            self.quantity += sign * q
            self._cost += sign * q * p
        else:
            size = abs(self.quantity)
            closed = min(q, size)
            share = self._cost if closed == size else self._share(closed, size)
            realized = (old_sign * closed * p - share) * self.multiplier
            self._cost -= share
            self.quantity += sign * closed
            rest = q - closed
            if rest > 0:  # through zero: the remainder opens the other side at `p`
                self.quantity = sign * rest
                self._cost = sign * rest * p
                self.opened_ts_ns = ts_ns
            elif self.quantity == 0:
                self._cost = _ZERO
                self.closed_ts_ns = ts_ns

        self.realized_pnl += realized
        self.fees += f
        if sign > 0:
            self.buy_qty += q
        else:
            self.sell_qty += q
        self.fill_count += 1
        self.last_ts_ns = ts_ns
        return realized

    def apply_funding(self, rate: Num, mark_px: Num, ts_ns: int = 0) -> Decimal:
        """Book one funding payment; returns the amount received (negative when paid).

        The position pays ``quantity * mark_px * rate * multiplier``: a long pays a
        positive rate, a short receives it (`docs/backtest.md`, funding).
        """
        r = num("funding rate", rate)
        m = positive("mark price", mark_px)
        amount = -(self.quantity * m * r * self.multiplier)
        if amount == 0:
            amount = _ZERO  # no "-0" in the books
        self.funding += amount
        if self.quantity != 0:
            self.last_ts_ns = ts_ns
        return amount

    # ---------------------------------------------------------------- valuation
    def unrealized_pnl(self, mark: Num) -> Decimal:
        """``(quantity * mark - cost basis) * multiplier``; zero while flat."""
        if self.quantity == 0:
            return _ZERO
        m = positive("mark price", mark)
        return (self.quantity * m - self._cost) * self.multiplier

    def notional(self, mark: Num) -> Decimal:
        """Signed market value ``quantity * mark * multiplier`` (negative when short)."""
        if self.quantity == 0:
            return _ZERO
        return self.quantity * positive("mark price", mark) * self.multiplier

    def total_pnl(self, mark: Num) -> Decimal:
        """``realized + unrealized - fees + funding``: the position's equity contribution."""
        return self.realized_pnl + self.unrealized_pnl(mark) - self.fees + self.funding

    # ---------------------------------------------------------------- helpers
    def _share(self, closed: Decimal, size: Decimal) -> Decimal:
        share = self._cost * closed / size
        exponent = share.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= LEDGER_EXPONENT:
            return share  # exact and short already
        try:
            return share.quantize(LEDGER_QUANTUM)
        except InvalidOperation:  # beyond 28 digits at 1e-16: keep Decimal's own rounding
            return share

    def check_fill(self, side: OrderSide, qty: Decimal) -> None:
        """ValueError if a fill of `qty` on `side` would take a hedge leg across zero."""
        if self.leg is None:
            return
        new = self.quantity + side.sign * qty
        if self.leg is PositionSide.LONG and new < 0:
            raise ValueError(
                f"fill {side} {qty} would take the LONG leg of {self.instrument_id} "
                f"from {self.quantity} below zero (hedge legs do not flip)"
            )
        if self.leg is PositionSide.SHORT and new > 0:
            raise ValueError(
                f"fill {side} {qty} would take the SHORT leg of {self.instrument_id} "
                f"from {self.quantity} above zero (hedge legs do not flip)"
            )

    def __repr__(self) -> str:
        leg = f", leg={self.leg}" if self.leg else ""
        return (
            f"Position({self.instrument_id}, strategy={self.strategy_id}{leg}, "
            f"qty={self.quantity}, avg_px={self.avg_px}, realized={self.realized_pnl}, "
            f"fees={self.fees}, funding={self.funding})"
        )


HedgeRule = bool | Iterable[InstrumentId] | Callable[[InstrumentId], bool]


class PositionBook:
    """Positions of many instruments; netting by default, LONG/SHORT legs with `hedge`.

    `hedge` is True (every instrument hedged), False (none), a collection of the hedged
    instrument ids, or a predicate on the instrument id (hedge mode per instrument).
    A hedged instrument's fills name their leg (`position_side` LONG or SHORT): a BUY on
    the LONG leg opens/increases it, a SELL on the LONG leg reduces it, and the reverse
    for the SHORT leg. A netted instrument's fills leave `position_side` out.
    """

    def __init__(self, *, hedge: HedgeRule = False, strategy_id: StrategyId | None = None) -> None:
        self._hedge: Callable[[InstrumentId], bool]
        if isinstance(hedge, bool):
            self._hedge = (lambda _: True) if hedge else (lambda _: False)
        elif callable(hedge):
            self._hedge = hedge
        else:
            hedged = frozenset(hedge)
            for iid in hedged:
                if not isinstance(iid, InstrumentId):
                    raise ValueError(f"hedge must list InstrumentIds, got {iid!r}")
            self._hedge = hedged.__contains__
        self.strategy_id = strategy_id
        self._positions: dict[tuple[InstrumentId, PositionSide | None], Position] = {}

    def is_hedged(self, instrument_id: InstrumentId) -> bool:
        """Whether `instrument_id` keeps LONG and SHORT legs in this book."""
        return bool(self._hedge(instrument_id))

    def _key(
        self, instrument_id: InstrumentId, position_side: PositionSide | None
    ) -> tuple[InstrumentId, PositionSide | None]:
        if self._hedge(instrument_id):  # `is_hedged`, inline
            if position_side not in (PositionSide.LONG, PositionSide.SHORT):
                raise ValueError(
                    f"a hedge-mode fill of {instrument_id} needs position_side LONG or SHORT, "
                    f"got {position_side!r}"
                )
            return instrument_id, position_side
        if position_side is not None:
            raise ValueError(
                f"position_side={position_side!r} given for {instrument_id}, which is netted "
                "in this book (hedge mode keeps LONG/SHORT legs)"
            )
        return instrument_id, None

    def get_or_create(
        self,
        instrument_id: InstrumentId,
        position_side: PositionSide | None = None,
        *,
        multiplier: Decimal | int | str = Decimal(1),
    ) -> Position:
        key = self._key(instrument_id, position_side)
        pos = self._positions.get(key)
        if pos is not None and multiplier is pos.multiplier:
            return pos  # the very Decimal the position was made with: nothing to check
        mult = positive("multiplier", multiplier)
        if pos is None:
            pos = Position(instrument_id, self.strategy_id, multiplier=mult, leg=key[1])
            self._positions[key] = pos
        elif pos.multiplier != mult:
            raise ValueError(
                f"multiplier {mult} for {instrument_id} differs from the position's "
                f"{pos.multiplier}"
            )
        return pos

    def get(
        self, instrument_id: InstrumentId, position_side: PositionSide | None = None
    ) -> Position | None:
        return self._positions.get(self._key(instrument_id, position_side))

    def apply_fill(
        self,
        instrument_id: InstrumentId,
        side: OrderSide,
        qty: Num,
        px: Num,
        fee: Num = _ZERO,
        ts_ns: int = 0,
        *,
        position_side: PositionSide | None = None,
        multiplier: Decimal | int | str = Decimal(1),
    ) -> tuple[Position, Decimal]:
        """Book a fill on the right position; returns (position, realised PnL)."""
        pos = self.get_or_create(instrument_id, position_side, multiplier=multiplier)
        return pos, pos.apply_fill(side, qty, px, fee, ts_ns)

    def _apply_fill(
        self,
        instrument_id: InstrumentId,
        side: OrderSide,
        q: Decimal,
        p: Decimal,
        ts_ns: int,
        position_side: PositionSide | None,
        multiplier: Decimal,
    ) -> Decimal:
        """`apply_fill` (no fee) for checked values (see `Position._apply_fill`)."""
        pos = self.get_or_create(instrument_id, position_side, multiplier=multiplier)
        return pos._apply_fill(side, q, p, _ZERO, ts_ns)

    def apply_funding(
        self,
        instrument_id: InstrumentId,
        rate: Num,
        mark_px: Num,
        ts_ns: int = 0,
    ) -> Decimal:
        """Funding on every leg of `instrument_id`; returns the total received."""
        total = _ZERO
        for (iid, _), pos in self._positions.items():
            if iid == instrument_id:
                total += pos.apply_funding(rate, mark_px, ts_ns)
        return total

    def net_quantity(self, instrument_id: InstrumentId) -> Decimal:
        """Signed quantity over all legs of `instrument_id`."""
        return sum(
            (p.quantity for (iid, _), p in self._positions.items() if iid == instrument_id),
            _ZERO,
        )

    def positions(self, instrument_id: InstrumentId | None = None) -> list[Position]:
        return [
            p
            for (iid, _), p in self._positions.items()
            if instrument_id is None or iid == instrument_id
        ]

    def open_positions(self) -> list[Position]:
        return [p for p in self._positions.values() if p.is_open]

    def instruments(self) -> list[InstrumentId]:
        return list(dict.fromkeys(iid for iid, _ in self._positions))

    def __iter__(self) -> Iterator[Position]:
        return iter(list(self._positions.values()))

    def __len__(self) -> int:
        return len(self._positions)
