"""Sizing at the fill: the `sizer` an entry order carries to the venue.

A sizer is called by the venue with the fill price and the account's equity and returns
the quantity (or the reason none can be traded). The venue may run in another process
(paper trading), so every sizer here is plain data too: `spec()` describes it and
`sizer_from_spec` rebuilds the same callable on the other side.

- `QuantitySizer`: `fixed` (a base quantity), `notional` (a quote amount / the fill
  price) or `equity` (a fraction of the equity / the fill price), rounded down to a lot.
- `RiskSizer`: fixed-fractional sizing (`size_mode="risk"`): risk the profile's risk per
  trade of the equity between the fill price and the entry's stop-loss, within the margin
  the run's leverage allows (a tight stop would otherwise ask for more than the account
  can hold, and every entry would be denied for margin).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sapphire.domain import Instrument
from sapphire.domain.instrument import to_decimal
from sapphire.risk import RiskProfile

__all__ = ["QUANTITY_MODES", "QuantitySizer", "RiskSizer", "Sizer", "sizer_from_spec"]

Sizer = Callable[[Decimal, Decimal], "Decimal | str"]
QUANTITY_MODES = ("fixed", "notional", "equity")
_FUDGE = Decimal("1e-9")  # a quantity a hair below a lot multiple is that multiple


class QuantitySizer:
    """`fixed`, `notional` or `equity` sizing of `size`, rounded down to `lot`."""

    __slots__ = ("lot", "mode", "size")

    def __init__(self, mode: str, size: Any, lot: Any = None) -> None:
        if mode not in QUANTITY_MODES:
            raise ValueError(f"size_mode={mode!r} is invalid: expected {', '.join(QUANTITY_MODES)}")
        self.mode = mode
        self.size = to_decimal(size, "size")
        if not self.size > 0:
            raise ValueError(f"size={size!r} is invalid: expected a positive number")
        lot_value = to_decimal(lot, "lot") if lot else None
        self.lot = lot_value if lot_value else None

    def __call__(self, px: Decimal, equity: Decimal) -> Decimal | str:
        mode = self.mode
        if mode == "fixed":
            q = self.size
        elif mode == "notional":
            q = self.size / px
        else:
            q = self.size * equity / px
        if q <= 0:
            return "insufficient margin"
        lot = self.lot
        if lot is not None and q % lot != 0:  # on the grid already: kept as written
            q = ((q / lot) + _FUDGE).to_integral_value(rounding=ROUND_FLOOR) * lot
            if q <= 0:
                return "size below lot"
        return q

    def spec(self) -> dict[str, Any]:
        return {"mode": self.mode, "size": str(self.size), "lot": str(self.lot or "")}


class RiskSizer:
    """Risk the profile's risk per trade between the fill and the stop-loss `stop` (a
    fraction of the fill price, below it for a buy, `side` +1, above it for a sell, -1),
    quantised by the instrument (`sapphire.risk.sizing.fixed_fractional`), and at most
    what the equity holds at `leverage` with the fee paid (`notional / leverage + fee <=
    equity`, the pre-trade margin check)."""

    __slots__ = ("instrument", "leverage", "profile", "side", "stop")

    def __init__(
        self,
        stop: Any,
        side: int,
        profile: RiskProfile,
        instrument: Instrument,
        leverage: Any = 1,
    ) -> None:
        self.stop = to_decimal(stop, "stop")
        if not self.stop > 0:
            raise ValueError(f"stop={stop!r} is invalid: expected a fraction > 0")
        if side not in (1, -1):
            raise ValueError(f"side={side!r} is invalid: expected 1 or -1")
        self.side = side
        self.profile = profile
        self.instrument = instrument
        self.leverage = to_decimal(leverage, "leverage")
        if not self.leverage > 0:
            raise ValueError(f"leverage={leverage!r} is invalid: expected a number > 0")

    def __call__(self, px: Decimal, equity: Decimal) -> Decimal | str:
        from sapphire.risk.sizing import fixed_fractional

        if equity <= 0:
            return "insufficient margin"
        level = px * (1 - self.side * self.stop)
        if level <= 0:
            return f"stop-loss {self.stop} puts the stop at or below zero"
        fraction = self.profile.risk_fraction(equity)
        qty = fixed_fractional(equity, fraction, px, level, self.instrument)
        inst = self.instrument
        fee = max(inst.taker_fee, inst.maker_fee, Decimal(0))
        cap = inst.quantize_qty(equity / (px * (1 / self.leverage + fee)))
        qty = min(qty, cap)
        return qty if qty > 0 else "size below lot"

    def spec(self) -> dict[str, Any]:
        return {
            "mode": "risk", "stop": str(self.stop), "side": self.side,
            "leverage": str(self.leverage),
        }  # fmt: skip


def sizer_from_spec(
    spec: dict[str, Any] | None,
    *,
    profile: RiskProfile | None = None,
    instrument: Instrument | None = None,
) -> Sizer | None:
    """The sizer `spec` describes (None for None); mode `risk` needs the run's risk
    `profile` and the `instrument`."""
    if spec is None:
        return None
    mode = spec.get("mode")
    if mode == "risk":
        if profile is None or instrument is None:
            raise ValueError("sizer mode='risk' needs the run's risk profile and instrument")
        return RiskSizer(
            Decimal(spec["stop"]), int(spec["side"]), profile, instrument,
            Decimal(spec.get("leverage", "1")),
        )  # fmt: skip
    return QuantitySizer(str(mode), spec["size"], spec.get("lot") or None)
