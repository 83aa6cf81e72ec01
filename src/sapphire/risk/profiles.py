"""Risk profiles: named bundles of sizing risk, portfolio limits and pre-trade limits.

Built in: `CONSERVATIVE` and `AGGRESSIVE` (see `profile("name")`); users define their own
with `RiskProfile.from_mapping` (a dict, or a YAML mapping via `RiskProfile.from_yaml`),
optionally starting from a built-in (``base: conservative``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any

from sapphire.risk.checks import RiskEngine
from sapphire.risk.config import (
    RiskConfig,
    check_keys,
    decimal_value,
    fraction_value,
    positive_decimal,
)
from sapphire.risk.limits import PortfolioLimits
from sapphire.risk.var import VAR_METHODS


@dataclass(frozen=True)
class BalanceScaledRisk:
    """Risk per trade that decays exponentially with the account balance.

    ``high`` at or below ``low_balance``, ``low`` at or above ``high_balance``, and between
    them ``r(b) = high * (low / high) ** ((b - low_balance) / (high_balance - low_balance))``.
    The aggressive profile uses 2 % / 0.5 % between 10,000 and 100,000:
    ``r(b) = 0.02 * 0.25 ** ((b - 10000) / 90000)``.
    """

    high: Decimal
    low: Decimal
    low_balance: Decimal
    high_balance: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "high", fraction_value(self.high, "risk_per_trade.high"))
        object.__setattr__(self, "low", fraction_value(self.low, "risk_per_trade.low"))
        lb = positive_decimal(self.low_balance, "risk_per_trade.low_balance")
        hb = positive_decimal(self.high_balance, "risk_per_trade.high_balance")
        object.__setattr__(self, "low_balance", lb)
        object.__setattr__(self, "high_balance", hb)
        if hb <= lb:
            raise ValueError(
                f"risk_per_trade.high_balance {hb} must exceed risk_per_trade.low_balance {lb}"
            )

    def at(self, balance: Decimal) -> Decimal:
        if balance <= self.low_balance:
            return self.high
        if balance >= self.high_balance:
            return self.low
        exponent = (balance - self.low_balance) / (self.high_balance - self.low_balance)
        return self.high * (self.low / self.high) ** exponent

    def to_mapping(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


_SCALED_KEYS = frozenset({"high", "low", "low_balance", "high_balance"})


@dataclass(frozen=True)
class RiskProfile:
    """How much to risk and where to stop.

    - ``risk_per_trade``: fraction of the balance risked per trade (fixed-fractional
      sizing), a constant or a `BalanceScaledRisk`; read it with `risk_fraction(balance)`.
    - ``max_drawdown`` / ``strategy_max_drawdown``: peak-to-trough equity loss of the
      portfolio / of one strategy that halts it (fractions; ``None`` = no limit).
    - ``daily_loss_limit``: loss since the start of the UTC day, as a fraction of the
      equity at the day's start, that halts the node until the next UTC day.
    - ``daily_var_limit``: one-day VaR (``var_confidence``, ``var_method``) above which the
      node only reduces risk.
    - ``pre_trade``: the `RiskConfig` for `RiskEngine`.
    """

    name: str
    risk_per_trade: Decimal | BalanceScaledRisk
    max_drawdown: Decimal | None = None
    strategy_max_drawdown: Decimal | None = None
    daily_loss_limit: Decimal | None = None
    daily_var_limit: Decimal | None = None
    var_confidence: float = 0.95
    var_method: str = "historical"
    pre_trade: RiskConfig = field(default_factory=RiskConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"risk profile name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.risk_per_trade, BalanceScaledRisk):
            object.__setattr__(
                self, "risk_per_trade", fraction_value(self.risk_per_trade, "risk_per_trade")
            )
        for name in (
            "max_drawdown",
            "strategy_max_drawdown",
            "daily_loss_limit",
            "daily_var_limit",
        ):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, fraction_value(v, name))
        c = self.var_confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.5 <= c < 1:
            raise ValueError(f"var_confidence must be in [0.5, 1), got {c!r}")
        if self.var_method not in VAR_METHODS:
            raise ValueError(
                f"unknown var_method {self.var_method!r}; expected one of {', '.join(VAR_METHODS)}"
            )
        if not isinstance(self.pre_trade, RiskConfig):
            raise ValueError(f"pre_trade must be a RiskConfig, got {self.pre_trade!r}")

    def risk_fraction(self, balance: Decimal | float | int | str) -> Decimal:
        """The fraction of ``balance`` to risk on one trade."""
        b = decimal_value(balance, "balance")
        if b < 0:
            raise ValueError(f"balance must not be negative, got {balance!r}")
        if isinstance(self.risk_per_trade, BalanceScaledRisk):
            return self.risk_per_trade.at(b)
        return self.risk_per_trade

    def risk_amount(self, balance: Decimal | float | int | str) -> Decimal:
        """``balance * risk_fraction(balance)``: the money one trade may lose."""
        b = decimal_value(balance, "balance")
        return b * self.risk_fraction(b)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RiskProfile:
        """A profile from a dict/YAML mapping; unknown keys raise ValueError naming them.

        Keys are the field names; ``base: conservative`` (or ``aggressive``) starts from a
        built-in profile and overrides only the keys given. ``risk_per_trade`` is a number
        or a mapping ``{high, low, low_balance, high_balance}``; ``pre_trade`` a mapping of
        `RiskConfig` fields (merged over the base profile's).
        """
        allowed = {f.name for f in fields(cls)} | {"base"}
        check_keys(mapping, allowed, "risk profile")
        data = dict(mapping)
        base_name = data.pop("base", None)
        if base_name is None:
            if "name" not in data or "risk_per_trade" not in data:
                missing = [k for k in ("name", "risk_per_trade") if k not in data]
                raise ValueError(
                    f"risk profile needs {' and '.join(missing)} (or a 'base' profile to extend)"
                )
            base_pre: dict[str, Any] = {}
        else:
            base = profile(str(base_name))
            base_pre = base.pre_trade.to_mapping()
            for f in fields(cls):
                if f.name not in data and f.name != "pre_trade":
                    data[f.name] = getattr(base, f.name)
        rpt = data.get("risk_per_trade")
        if isinstance(rpt, Mapping):
            check_keys(rpt, _SCALED_KEYS, "risk_per_trade")
            missing = sorted(_SCALED_KEYS - set(rpt))
            if missing:
                raise ValueError(f"risk_per_trade mapping is missing key(s): {', '.join(missing)}")
            data["risk_per_trade"] = BalanceScaledRisk(**dict(rpt))
        pre = data.get("pre_trade", {})
        if isinstance(pre, RiskConfig):
            pre = pre.to_mapping()
        if not isinstance(pre, Mapping):
            raise ValueError(f"pre_trade must be a mapping, got {pre!r}")
        check_keys(pre, {f.name for f in fields(RiskConfig)}, "pre_trade")
        data["pre_trade"] = RiskConfig.from_mapping({**base_pre, **dict(pre)})
        return cls(**data)

    @classmethod
    def from_yaml(cls, text: str) -> RiskProfile:
        """A profile from YAML text holding one mapping (see `from_mapping`)."""
        import yaml

        loaded = yaml.safe_load(text)
        if not isinstance(loaded, Mapping):
            raise ValueError(f"a risk profile YAML document must be a mapping, got {loaded!r}")
        return cls.from_mapping(loaded)

    def to_mapping(self) -> dict[str, Any]:
        """Plain values (Decimals as strings) that `from_mapping` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, BalanceScaledRisk | RiskConfig):
                v = v.to_mapping()
            elif isinstance(v, Decimal):
                v = str(v)
            out[f.name] = v
        return out

    def portfolio_limits(self, **overrides: Any) -> PortfolioLimits:
        """Fresh `PortfolioLimits` with this profile's drawdown, daily loss and VaR limits."""
        return PortfolioLimits.from_profile(self, **overrides)

    def risk_engine(self) -> RiskEngine:
        """A fresh `RiskEngine` with this profile's pre-trade limits."""
        return RiskEngine(self.pre_trade)

    def with_pre_trade(self, **changes: Any) -> RiskProfile:
        """A copy whose pre-trade limits have ``changes`` applied."""
        return replace(self, pre_trade=replace(self.pre_trade, **changes))


CONSERVATIVE = RiskProfile(
    name="conservative",
    risk_per_trade=Decimal("0.01"),
    max_drawdown=Decimal("0.25"),
    strategy_max_drawdown=Decimal("0.15"),
    daily_loss_limit=Decimal("0.05"),
    daily_var_limit=Decimal("0.03"),
)

AGGRESSIVE = RiskProfile(
    name="aggressive",
    risk_per_trade=BalanceScaledRisk(
        high=Decimal("0.02"),
        low=Decimal("0.005"),
        low_balance=Decimal(10_000),
        high_balance=Decimal(100_000),
    ),
    max_drawdown=Decimal("0.40"),
    strategy_max_drawdown=Decimal("0.25"),
    daily_loss_limit=Decimal("0.10"),
    daily_var_limit=Decimal("0.06"),
)

PROFILES: dict[str, RiskProfile] = {p.name: p for p in (CONSERVATIVE, AGGRESSIVE)}


def profile(name: str | RiskProfile) -> RiskProfile:
    """A built-in profile by name (``conservative`` or ``aggressive``), a profile read
    from a YAML file (a name ending in ``.yaml``/``.yml``), or `name` if it is one."""
    if isinstance(name, RiskProfile):
        return name
    if isinstance(name, str) and name.endswith((".yaml", ".yml")):
        from pathlib import Path

        path = Path(name).expanduser()
        if not path.is_file():
            raise ValueError(f"risk profile file not found: {path}")
        return RiskProfile.from_yaml(path.read_text(encoding="utf-8"))
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown risk profile {name!r}; built-in: {', '.join(sorted(PROFILES))}"
        ) from None
