"""The risk engine: pre-trade checks, portfolio limits, kill switch, sizing and profiles.

- `RiskEngine(RiskConfig).check(order, RiskContext) -> RiskDecision` before every order.
- `PortfolioLimits.evaluate(ts_ns, equity, strategy_equity)` on every equity snapshot:
  daily loss, drawdown and VaR limits move the trading state (ACTIVE -> REDUCING ->
  HALTED) and return `RiskEvent` / `TradingStateChanged` events; `KillSwitch.trip`
  halts and lists the orders to cancel and the positions to close.
- Sizing: `fixed_quantity`, `fixed_notional`, `fixed_fractional`, `kelly_quantity`,
  `volatility_target`, all quantised by the `Instrument`.
- Profiles: `profile("conservative" | "aggressive")`, `RiskProfile.from_mapping(...)`.
"""

from sapphire.risk.checks import RiskContext, RiskDecision, RiskEngine, reference_price
from sapphire.risk.config import RiskConfig
from sapphire.risk.limits import (
    Breach,
    CloseIntent,
    KillSwitch,
    KillSwitchActions,
    PortfolioLimits,
    PositionLike,
    severity,
)
from sapphire.risk.profiles import (
    AGGRESSIVE,
    CONSERVATIVE,
    PROFILES,
    BalanceScaledRisk,
    RiskProfile,
    profile,
)
from sapphire.risk.sizing import (
    fixed_fractional,
    fixed_notional,
    fixed_quantity,
    kelly_fraction,
    kelly_quantity,
    volatility_target,
    volatility_target_weight,
)
from sapphire.risk.var import (
    historical_var,
    parametric_var,
    realised_volatility,
    returns_from_equity,
    value_at_risk,
)

__all__ = [
    "AGGRESSIVE",
    "CONSERVATIVE",
    "PROFILES",
    "BalanceScaledRisk",
    "Breach",
    "CloseIntent",
    "KillSwitch",
    "KillSwitchActions",
    "PortfolioLimits",
    "PositionLike",
    "RiskConfig",
    "RiskContext",
    "RiskDecision",
    "RiskEngine",
    "RiskProfile",
    "fixed_fractional",
    "fixed_notional",
    "fixed_quantity",
    "historical_var",
    "kelly_fraction",
    "kelly_quantity",
    "parametric_var",
    "profile",
    "realised_volatility",
    "reference_price",
    "returns_from_equity",
    "severity",
    "value_at_risk",
    "volatility_target",
    "volatility_target_weight",
]
