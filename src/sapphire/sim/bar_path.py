"""The bar venue's matching rules: working orders on a bar's OHLC path.

`SimulatedVenue` (`sapphire.sim.venue`) matches orders against bars with these rules,
those of docs/backtest.md and of the compiled kernel:

- a market order fills at the next bar's open (the first price the venue sees after
  it), slipped against the trader;
- resting orders are walked along the bar's OHLC path (`open -> first extreme ->
  second extreme -> close`; `intrabar="path"` or `"worst"`). On each segment the first
  level crossed in path order fills; touching counts; a level already crossed at the
  start of a segment (a gap) fills at that point (the open), not at the level. Several
  orders hit at one point fill in the order stop > trailing stop > limit (the kernel's
  stop-loss > trailing > take-profit). After a fill the rest of the segment is walked
  again from the fill point, so orders submitted in reaction (bracket legs) are live
  from there on;
- stop and trailing-stop fills are taker fills with slippage (`FillModel`); limit fills
  are maker fills without slippage (a gap through a limit fills at the better open
  price);
- a trailing stop's level follows the best price reached, updated at each path point
  after the segment leading to it has been checked.

Prices are floats: the trigger decisions are made on floats exactly as the kernel makes
them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sapphire.domain import (
    Instrument,
    Order,
    OrderType,
    TrailingOffsetType,
    VenueOrderId,
)

__all__ = [
    "LIMIT",
    "STOP",
    "TRAIL",
    "BarBook",
    "FillModel",
    "RestingOrder",
    "Sizer",
    "first_hit",
    "reachable",
]

# `sizer(fill_price, equity) -> quantity`, or the reason it cannot size
Sizer = Callable[[Decimal, Decimal], "Decimal | str"]
_ZERO = Decimal(0)
# Kinds of resting orders, in fill priority at one point.
STOP, TRAIL, LIMIT = 0, 1, 2


@dataclass(frozen=True)
class FillModel:
    """Slippage of taker fills: `slippage_bps` or `slippage_ticks` against the trader;
    slipped prices are rounded to `tick` (0 = no rounding) against the trader."""

    slippage_bps: float = 0.0
    slippage_ticks: int = 0
    tick: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slippage_bps) and 0 <= self.slippage_bps < 10_000):
            raise ValueError(f"slippage_bps={self.slippage_bps!r} is invalid: expected [0, 10000)")
        if self.slippage_ticks < 0:
            raise ValueError(f"slippage_ticks={self.slippage_ticks!r} is invalid: expected >= 0")
        if not (math.isfinite(self.tick) and self.tick >= 0):
            raise ValueError(f"tick={self.tick!r} is invalid: expected >= 0")
        if self.slippage_ticks and not self.tick:
            raise ValueError("slippage_ticks needs a tick")

    def slip(self, price: float, sign: float) -> float:
        """`price` moved against a trader buying (`sign` +1) or selling (-1)."""
        bps, ticks, tick = self.slippage_bps, self.slippage_ticks, self.tick
        if bps == 0.0 and ticks == 0:
            return price
        p = price
        if bps != 0.0:
            p = p * (1.0 + sign * bps / 10_000.0)
        if ticks:
            p = p + sign * ticks * tick
        if tick > 0.0:
            p = (
                math.ceil(p / tick - 1e-09) * tick
                if sign > 0
                else math.floor(p / tick + 1e-09) * tick
            )
        return p


class RestingOrder:
    """The venue's view of one working order (floats for matching)."""

    __slots__ = (
        "cid",
        "expire_ns",
        "frac",
        "instrument_id",
        "kind",
        "level",
        "limit_px",
        "market",
        "offset",
        "order",
        "post_only",
        "qty",
        "reduce_only",
        "sign",
        "sizer",
        "venue_id",
    )

    def __init__(self, order: Order, sizer: Sizer | None, venue_id: VenueOrderId) -> None:
        self.order = order
        self.cid = order.client_order_id
        self.instrument_id = order.instrument_id
        self.sign = float(order.side.sign)
        self.qty = order.quantity
        self.sizer = sizer
        self.venue_id = venue_id
        self.reduce_only = order.reduce_only
        self.post_only = order.post_only
        self.expire_ns = order.expire_time_ns
        self.frac = 0.0
        self.offset = 0.0
        self.limit_px = math.nan
        t = order.type
        self.market = t is OrderType.MARKET
        if t is OrderType.MARKET:
            self.kind = STOP
            self.level = math.nan
        elif t is OrderType.LIMIT:
            self.kind = LIMIT
            self.level = float(order.price)  # type: ignore[arg-type]
        elif t is OrderType.TRAILING_STOP:
            self.kind = TRAIL
            off = order.trailing_offset or _ZERO
            if order.trailing_offset_type is TrailingOffsetType.PERCENT:
                self.frac = float(off / 100)
            else:
                self.offset = float(off)
            self.level = float(order.trigger_price) if order.trigger_price is not None else math.nan
        else:  # STOP_MARKET, STOP_LIMIT (the limit part once triggered)
            self.kind = STOP
            self.level = float(order.trigger_price)  # type: ignore[arg-type]
            if t is OrderType.STOP_LIMIT:
                self.limit_px = float(order.price)  # type: ignore[arg-type]

    def trigger(self) -> None:
        """A stop-limit order's stop was reached: it becomes a limit order at its price."""
        self.kind = LIMIT
        self.level = self.limit_px
        self.limit_px = math.nan

    def trail_to(self, price: float) -> None:
        """Move a trailing stop's level after the market reached `price`."""
        if self.frac:
            # a sell trail (sign -1) sits below the best price: price * (1 - frac)
            cand = price * (1.0 + self.sign * self.frac)
        else:
            cand = price + self.sign * self.offset
        lvl = self.level
        if lvl != lvl or (self.sign < 0 and cand > lvl) or (self.sign > 0 and cand < lvl):
            self.level = cand


def reachable(resting: list[RestingOrder], lo: float, hi: float) -> bool:
    """Whether the bar's range [lo, hi] can fill or move any working order: a buy limit
    or sell stop needs the low at or below its level, a sell limit or buy stop the high
    at or above it; trailing stops move on every bar. When nothing is reachable the
    path walk would do nothing and is skipped (the hot path while a bracket waits)."""
    for r in resting:
        lvl = r.level
        if r.kind == TRAIL or lvl != lvl:
            return True
        if (r.sign > 0.0) == (r.kind == LIMIT):
            if lo <= lvl:
                return True
        elif hi >= lvl:
            return True
    return False


class BarBook:
    """The working orders of one instrument: `queued` market orders wait for the next
    price, `resting` orders for the path; `last` is the last price seen (NaN: none)."""

    __slots__ = ("instrument", "last", "queued", "resting")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.queued: list[RestingOrder] = []  # market orders waiting for the next price
        self.resting: list[RestingOrder] = []
        self.last = math.nan


def first_hit(
    resting: list[RestingOrder], s: float, b: float
) -> tuple[RestingOrder, float, bool] | None:
    """The order the segment s -> b reaches first, the point it is reached at, and
    whether that is the segment's start (a level already crossed there: a gap); None
    when the segment reaches none. Ties go to the kind first in fill priority, then to
    the order that came first."""
    d = 1.0 if b > s else (-1.0 if b < s else 0.0)
    best: RestingOrder | None = None
    best_key = (2, 0.0, 0)
    best_at = 0.0
    for r in resting:
        lvl = r.level
        if lvl != lvl:
            continue
        sg = r.sign
        if r.kind == LIMIT:
            at_start = sg * (s - lvl) <= 0.0
            on_seg = sg * (b - lvl) <= 0.0
        else:
            at_start = sg * (s - lvl) >= 0.0
            on_seg = sg * (b - lvl) >= 0.0
        if at_start:
            key = (0, 0.0, r.kind)
            at = s
        elif on_seg and d != 0.0:
            key = (1, d * lvl, r.kind)
            at = lvl
        else:
            continue
        if key < best_key:
            best, best_key, best_at = r, key, at
    if best is None:
        return None
    return best, best_at, best_key[0] == 0
