"""Fee, slippage and latency models of the simulated venue.

- Fees: `InstrumentFees` charges the instrument's maker/taker rate on the fill's
  notional (`Instrument.fee`), in the quote currency; `FixedRateFees` overrides the rates.
- Slippage (taker fills only, as in docs/backtest.md): `NoSlippage`, `BpsSlippage`
  (`price * (1 ± bps / 10_000)`), `TickSlippage` (`price ± ticks * tick_size`) and
  `BookWalkSlippage` (the price impact of walking an `L2Book` for the fill's quantity).
  A slipped price is rounded to the tick against the trader (buys up, sells down).
- Latency: `FixedLatency` and `UniformLatency` (seeded) give the delays in ns between a
  submit (or cancel) and its arrival at the matcher, and between a fill and its report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from sapphire.domain import Instrument, LiquiditySide, OrderSide, to_decimal
from sapphire.sim.book import L2Book

__all__ = [
    "BookWalkSlippage",
    "BpsSlippage",
    "FeeModel",
    "FixedLatency",
    "FixedRateFees",
    "InstrumentFees",
    "LatencyModel",
    "NoSlippage",
    "SlippageModel",
    "TickSlippage",
    "UniformLatency",
    "against_trader",
]


# -- fees --------------------------------------------------------------------------------


class FeeModel(Protocol):
    """The fee of one fill, in `fee_currency(instrument)` (negative = a rebate)."""

    def fee(
        self, instrument: Instrument, qty: Decimal, price: Decimal, liquidity: LiquiditySide
    ) -> Decimal: ...

    def fee_currency(self, instrument: Instrument) -> str: ...


@dataclass(frozen=True, slots=True)
class InstrumentFees:
    """The instrument's own maker/taker rates on `qty * price * multiplier`."""

    def fee(
        self, instrument: Instrument, qty: Decimal, price: Decimal, liquidity: LiquiditySide
    ) -> Decimal:
        return instrument.fee(qty, price, maker=LiquiditySide(liquidity) is LiquiditySide.MAKER)

    def fee_currency(self, instrument: Instrument) -> str:
        return instrument.quote


@dataclass(frozen=True, slots=True)
class FixedRateFees:
    """Fixed maker/taker rates for every instrument (e.g. a VIP tier)."""

    maker: Decimal
    taker: Decimal

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            value = to_decimal(getattr(self, name), f"FixedRateFees.{name}")
            if not Decimal(-1) < value < Decimal(1):
                raise ValueError(f"FixedRateFees.{name} is a rate in (-1, 1), got {value}")
            object.__setattr__(self, name, value)

    def fee(
        self, instrument: Instrument, qty: Decimal, price: Decimal, liquidity: LiquiditySide
    ) -> Decimal:
        rate = self.maker if LiquiditySide(liquidity) is LiquiditySide.MAKER else self.taker
        return instrument.notional(qty, price) * rate

    def fee_currency(self, instrument: Instrument) -> str:
        return instrument.quote


# -- slippage ----------------------------------------------------------------------------


def against_trader(instrument: Instrument, side: OrderSide, price: Decimal) -> Decimal:
    """`price` rounded to the tick against the trader: a buy up, a sell down."""
    rounding = ROUND_CEILING if OrderSide(side) is OrderSide.BUY else ROUND_FLOOR
    return instrument.quantize_price(price, rounding)


class SlippageModel(Protocol):
    """The price a taker fill of `qty` gets, given the reference `price`."""

    def fill_price(
        self, instrument: Instrument, side: OrderSide, price: Decimal, qty: Decimal
    ) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class NoSlippage:
    """Fills at the reference price."""

    def fill_price(
        self, instrument: Instrument, side: OrderSide, price: Decimal, qty: Decimal
    ) -> Decimal:
        return price


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """`price * (1 + bps / 10_000)` for a buy, `(1 - bps / 10_000)` for a sell."""

    bps: Decimal

    def __post_init__(self) -> None:
        value = to_decimal(self.bps, "BpsSlippage.bps")
        if value < 0:
            raise ValueError(f"BpsSlippage.bps must be >= 0, got {value}")
        object.__setattr__(self, "bps", value)

    def fill_price(
        self, instrument: Instrument, side: OrderSide, price: Decimal, qty: Decimal
    ) -> Decimal:
        moved = price * (1 + OrderSide(side).sign * self.bps / Decimal(10_000))
        return against_trader(instrument, side, moved)


@dataclass(frozen=True, slots=True)
class TickSlippage:
    """`ticks` whole ticks against the trader."""

    ticks: int

    def __post_init__(self) -> None:
        if isinstance(self.ticks, bool) or not isinstance(self.ticks, int) or self.ticks < 0:
            raise ValueError(f"TickSlippage.ticks must be an int >= 0, got {self.ticks!r}")

    def fill_price(
        self, instrument: Instrument, side: OrderSide, price: Decimal, qty: Decimal
    ) -> Decimal:
        moved = price + OrderSide(side).sign * self.ticks * instrument.tick_size
        return against_trader(instrument, side, moved)


@dataclass(slots=True)
class BookWalkSlippage:
    """The impact of walking `book` for `qty`: reference price + (VWAP - touch).

    A buy walks the asks from the best one, a sell the bids; the VWAP of the levels it
    would take, minus the best price, is added to (a buy) or taken from (a sell) the
    reference price. Beyond the book's depth the rest is priced at the last level. An
    empty side leaves the price as it is. (The L2 matcher walks the real book itself;
    this model lends a book's shape to bar or tick fills.)
    """

    book: L2Book

    def fill_price(
        self, instrument: Instrument, side: OrderSide, price: Decimal, qty: Decimal
    ) -> Decimal:
        levels = self.book.levels(OrderSide(side).opposite)
        if not levels or qty <= 0:
            return price
        remaining, cost = qty, Decimal(0)
        level_px = Decimal(0)
        for raw_px, raw_size in levels:
            level_px, size = to_decimal(raw_px), to_decimal(raw_size)
            take = min(remaining, size)
            cost += take * level_px
            remaining -= take
            if remaining == 0:
                break
        cost += remaining * level_px
        # VWAP - touch is >= 0 for a buy (asks rise) and <= 0 for a sell (bids fall)
        moved = price + (cost / qty - to_decimal(levels[0][0]))
        return against_trader(instrument, side, moved)


# -- latency -----------------------------------------------------------------------------


class LatencyModel(Protocol):
    """Delays in ns: `submit_delay()` before an order (or cancel) reaches the matcher,
    `report_delay()` before a fill or other report reaches the node."""

    def submit_delay(self) -> int: ...

    def report_delay(self) -> int: ...


def _check_ns(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (ns), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class FixedLatency:
    """The same delays every time (0 = instantaneous)."""

    submit_ns: int = 0
    report_ns: int = 0

    def __post_init__(self) -> None:
        _check_ns(self.submit_ns, "FixedLatency.submit_ns")
        _check_ns(self.report_ns, "FixedLatency.report_ns")

    def submit_delay(self) -> int:
        return self.submit_ns

    def report_delay(self) -> int:
        return self.report_ns


@dataclass(slots=True)
class UniformLatency:
    """Delays drawn uniformly from [low, high] ns by a `random.Random(seed)`: the same
    seed gives the same delays, so a backtest is reproducible."""

    submit_ns: tuple[int, int]
    report_ns: tuple[int, int]
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("submit_ns", "report_ns"):
            bounds = tuple(getattr(self, name))
            if len(bounds) != 2:
                raise ValueError(f"UniformLatency.{name} must be (low, high), got {bounds!r}")
            low = _check_ns(bounds[0], f"UniformLatency.{name} low")
            high = _check_ns(bounds[1], f"UniformLatency.{name} high")
            if low > high:
                raise ValueError(f"UniformLatency.{name}: low {low} > high {high}")
            setattr(self, name, (low, high))
        self._rng = random.Random(self.seed)

    def submit_delay(self) -> int:
        return self._rng.randint(*self.submit_ns)

    def report_delay(self) -> int:
        return self._rng.randint(*self.report_ns)
