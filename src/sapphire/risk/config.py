"""Pre-trade limits (`RiskConfig`) and the helpers that read limits from a mapping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from sapphire.domain import InstrumentId


def check_keys(mapping: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    """ValueError naming every key of ``mapping`` not in ``allowed``."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} must be a mapping, got {mapping!r}")
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise ValueError(
            f"unknown {where} key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def decimal_value(value: object, name: str) -> Decimal:
    """A finite Decimal from int/float/str/Decimal (floats via ``str``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return d


def positive_decimal(value: object, name: str) -> Decimal:
    d = decimal_value(value, name)
    if d <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return d


def fraction_value(value: object, name: str) -> Decimal:
    """A Decimal in (0, 1] (a fraction such as 0.25 = 25 %)."""
    d = decimal_value(value, name)
    if not 0 < d <= 1:
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}")
    return d


def _optional(value: object, convert: Any, name: str) -> Any:
    return None if value is None else convert(value, name)


@dataclass(frozen=True)
class RiskConfig:
    """Pre-trade limits of `RiskEngine`. ``None`` disables a limit.

    - ``max_notional_per_order``: quantity * price * multiplier of one order (quote ccy).
    - ``max_position_notional``: |position after the order| * price, per instrument.
    - ``max_position_qty``: per-instrument cap on |position after the order| (base units).
    - ``max_gross_exposure``: sum of |position notional| over all instruments after the
      order (quote/reporting currency, as given in `RiskContext.gross_exposure`).
    - ``max_open_orders``: open orders (before this one) must be fewer than this.
    - ``max_orders_per_window`` within ``rate_limit_window_s`` seconds (sliding window
      over the orders this engine let through, timed by `RiskContext.ts_ns`).
    - ``price_band``: a limit price or stop trigger may differ from the last price by at
      most this fraction (0.05 = 5 %) — the fat-finger check.
    - ``check_balance``: require free balance/margin for the risk-increasing part.
    """

    max_notional_per_order: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_position_qty: Mapping[InstrumentId, Decimal] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    max_gross_exposure: Decimal | None = None
    max_open_orders: int | None = None
    max_orders_per_window: int | None = None
    rate_limit_window_s: float = 1.0
    price_band: Decimal | None = None
    check_balance: bool = True

    def __post_init__(self) -> None:
        for name in ("max_notional_per_order", "max_position_notional", "max_gross_exposure"):
            object.__setattr__(self, name, _optional(getattr(self, name), positive_decimal, name))
        object.__setattr__(
            self, "price_band", _optional(self.price_band, fraction_value, "price_band")
        )
        caps: dict[InstrumentId, Decimal] = {}
        if not isinstance(self.max_position_qty, Mapping):
            raise ValueError(f"max_position_qty must be a mapping, got {self.max_position_qty!r}")
        for key, qty in self.max_position_qty.items():
            iid = InstrumentId.parse(key) if isinstance(key, str) else key
            if not isinstance(iid, InstrumentId):
                raise ValueError(f"max_position_qty keys must be instrument ids, got {key!r}")
            caps[iid] = positive_decimal(qty, f"max_position_qty[{iid}]")
        object.__setattr__(self, "max_position_qty", MappingProxyType(caps))
        for name in ("max_open_orders", "max_orders_per_window"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        w = self.rate_limit_window_s
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"rate_limit_window_s must be a positive number, got {w!r}")
        if not isinstance(self.check_balance, bool):
            raise ValueError(f"check_balance must be true or false, got {self.check_balance!r}")

    @property
    def rate_limit_window_ns(self) -> int:
        return round(self.rate_limit_window_s * 1_000_000_000)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RiskConfig:
        """Build from a dict/YAML mapping whose keys are the field names."""
        check_keys(mapping, {f.name for f in fields(cls)}, "pre_trade")
        return cls(**dict(mapping))

    def to_mapping(self) -> dict[str, Any]:
        """The inverse of `from_mapping` (Decimals as strings, ids as ``SYMBOL@VENUE``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "max_position_qty":
                v = {str(k): str(q) for k, q in v.items()}
            elif isinstance(v, Decimal):
                v = str(v)
            out[f.name] = v
        return out
