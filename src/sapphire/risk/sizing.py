"""Position sizing: how many units to trade.

Every sizer returns a ``Decimal`` quantity quantised DOWN to the instrument's lot size
(``Instrument.quantize_qty``); a size that rounds below the instrument's ``min_qty`` is
returned as ``Decimal(0)`` (too small to trade) rather than silently rounded up. Sizers
never cap at ``max_qty`` or at the account's balance: the pre-trade checks
(`sapphire.risk.RiskEngine`) reject what is too large, with a reason.

The fractions (risk per trade, Kelly fraction, volatilities) may be given as floats;
they are converted with ``Decimal(str(x))``. Money is Decimal.
"""

from __future__ import annotations

import math
from decimal import Decimal

from sapphire.domain import Instrument
from sapphire.risk.config import decimal_value as to_decimal

Number = Decimal | float | int | str


def _positive(value: Number, name: str) -> Decimal:
    d = to_decimal(value, name)
    if d <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return d


def _finalise(raw: Decimal, instrument: Instrument) -> Decimal:
    qty = instrument.quantize_qty(raw)
    if qty <= 0 or (instrument.min_qty is not None and qty < instrument.min_qty):
        return Decimal(0)
    return qty


def fixed_quantity(quantity: Number, instrument: Instrument) -> Decimal:
    """A constant quantity, quantised to the lot size."""
    return _finalise(_positive(quantity, "quantity"), instrument)


def fixed_notional(notional: Number, price: Number, instrument: Instrument) -> Decimal:
    """The quantity worth ``notional`` (quote currency) at ``price``."""
    n = _positive(notional, "notional")
    p = _positive(price, "price")
    return _finalise(n / (p * instrument.multiplier), instrument)


def fixed_fractional(
    equity: Number,
    risk_fraction: Number,
    entry_price: Number,
    stop_price: Number,
    instrument: Instrument,
) -> Decimal:
    """Risk ``risk_fraction`` of ``equity`` between entry and stop.

    ``qty = equity * risk_fraction / (|entry - stop| * multiplier)``: if the stop is hit
    the loss (before fees and slippage) is ``equity * risk_fraction``.
    """
    eq = _positive(equity, "equity")
    r = _positive(risk_fraction, "risk_fraction")
    if r > 1:
        raise ValueError(f"risk_fraction must be at most 1, got {risk_fraction!r}")
    entry = _positive(entry_price, "entry_price")
    stop = _positive(stop_price, "stop_price")
    distance = abs(entry - stop)
    if distance == 0:
        raise ValueError(f"stop_price {stop_price!r} equals entry_price {entry_price!r}")
    return _finalise(eq * r / (distance * instrument.multiplier), instrument)


def _kelly(win_rate: float, payoff: float, fraction: float, cap: float) -> Decimal:
    for name, v in (("win_rate", win_rate), ("payoff", payoff), ("fraction", fraction)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if not 0.0 <= win_rate <= 1.0:
        raise ValueError(f"win_rate must be in [0, 1], got {win_rate!r}")
    if payoff <= 0:
        raise ValueError(f"payoff must be positive, got {payoff!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if isinstance(cap, bool) or not isinstance(cap, int | float) or not 0.0 < cap <= 1.0:
        raise ValueError(f"cap must be in (0, 1], got {cap!r}")
    # in Decimal, so that e.g. p = 0.6, b = 1 gives exactly 0.2 (not 0.19999999999999996)
    p, b = to_decimal(win_rate, "win_rate"), to_decimal(payoff, "payoff")
    full = p - (1 - p) / b
    return min(to_decimal(cap, "cap"), max(Decimal(0), full) * to_decimal(fraction, "fraction"))


def kelly_fraction(
    win_rate: float, payoff: float, fraction: float = 0.5, cap: float = 0.25
) -> float:
    """Fractional Kelly bet, capped: ``min(cap, fraction * max(0, p - (1 - p) / b))``.

    ``win_rate`` ``p`` is the probability of a winning trade, ``payoff`` ``b`` the average
    win divided by the average loss. A negative edge gives 0 (no trade).
    """
    return float(_kelly(win_rate, payoff, fraction, cap))


def kelly_quantity(
    equity: Number,
    price: Number,
    win_rate: float,
    payoff: float,
    instrument: Instrument,
    fraction: float = 0.5,
    cap: float = 0.25,
) -> Decimal:
    """Quantity whose notional is ``kelly_fraction(...)`` of ``equity``."""
    eq = _positive(equity, "equity")
    p = _positive(price, "price")
    f = _kelly(win_rate, payoff, fraction, cap)
    if f == 0:
        return Decimal(0)
    return _finalise(eq * f / (p * instrument.multiplier), instrument)


def volatility_target_weight(
    target_annual_vol: float, realised_annual_vol: float, max_leverage: float = 1.0
) -> float:
    """Exposure as a multiple of equity: ``min(max_leverage, target / realised)``."""
    for name, v in (
        ("target_annual_vol", target_annual_vol),
        ("realised_annual_vol", realised_annual_vol),
        ("max_leverage", max_leverage),
    ):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {v!r}")
    return min(float(max_leverage), target_annual_vol / realised_annual_vol)


def volatility_target(
    equity: Number,
    price: Number,
    target_annual_vol: float,
    realised_annual_vol: float,
    instrument: Instrument,
    max_leverage: float = 1.0,
) -> Decimal:
    """Quantity whose notional is ``equity * min(max_leverage, target / realised vol)``.

    ``realised_annual_vol`` is e.g. ``sapphire.risk.realised_volatility(returns)``.
    """
    eq = _positive(equity, "equity")
    p = _positive(price, "price")
    w = to_decimal(
        volatility_target_weight(target_annual_vol, realised_annual_vol, max_leverage), "weight"
    )
    return _finalise(eq * w / (p * instrument.multiplier), instrument)
