"""The graduation gates: their written-down thresholds (`GateConfig`) and the figures each
gate computes. docs/governance.md gives each gate's reasoning.

The deflated Sharpe ratio and the PBO are `sapphire.optimize.stats`'; this module adds
the minimum track record length (Bailey & López de Prado 2012, "The Sharpe Ratio
Efficient Frontier", Journal of Risk 15(2)) and the random-entry Monte Carlo test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sapphire.compliance.gate import Gate

__all__ = [
    "GATE_NAMES",
    "Gate",
    "GateConfig",
    "check_figure",
    "min_track_record_length",
    "random_entry_test",
]

#: every gate, in the order a check prints them
GATE_NAMES = (
    "deflated_sharpe",
    "pbo",
    "min_track_record",
    "random_entries",
    "max_drawdown",
    "trade_match",
    "tracking_error",
    "beats_champion",
)
_NORMAL = NormalDist()


def check_figure(name: str, figure: float, op: str, threshold: float, detail: str = "") -> Gate:
    """A gate that passes when `figure op threshold` (">=", ">", "<=", "<"); a NaN fails."""
    ops = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}
    if op not in ops:
        raise ValueError(f"op={op!r} is invalid: expected one of {', '.join(ops)}")
    value = float(figure)
    ok = not math.isnan(value) and bool(ops[op](value, float(threshold)))
    return Gate(name, None if math.isnan(value) else value, float(threshold), op, ok, detail)


def _fraction(name: str, value: Any, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}={value!r} is invalid: expected a number in (0, 1)")
    v = float(value)
    if not (0.0 < v < 1.0 if open_low else 0.0 <= v <= 1.0):
        bounds = "(0, 1)" if open_low else "[0, 1]"
        raise ValueError(f"{name}={value!r} is invalid: expected a number in {bounds}")
    return v


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The gates' thresholds, as written in docs/governance.md (every field has a default;
    `from_mapping`/`from_yaml` refuse unknown fields and bad values, naming them)."""

    #: the deflated Sharpe ratio (a probability) must be at least this
    min_dsr: float = 0.95
    #: the probability of backtest overfitting (CSCV over the study's trials) at most this
    max_pbo: float = 0.5
    #: the confidence of the minimum track record length
    mintrl_confidence: float = 0.95
    #: the per-bar Sharpe ratio the track record must beat (0: any skill at all)
    mintrl_benchmark_sr: float = 0.0
    #: random-entry simulations
    random_trials: int = 1000
    #: the random-entry p-value must be at most this
    max_random_pvalue: float = 0.05
    #: the random-entry simulations' seed (the same seed gives the same p-value)
    seed: int = 0
    #: the risk profile whose strategy drawdown limit the backtest must respect
    risk_profile: str = "conservative"
    #: paper -> live: the share of fills matched by the backtest's fills at least this
    min_trade_match: float = 0.9
    #: paper -> live: the std of per-bar equity return differences at most this
    max_tracking_error: float = 0.001
    #: paper -> live: a fill matches one this many bars away (0: the same bar)
    match_bars: int = 0
    #: refuse a check without a study (its PBO and its number of trials)
    require_study: bool = False

    def __post_init__(self) -> None:
        _fraction("min_dsr", self.min_dsr)
        _fraction("max_pbo", self.max_pbo, open_low=False)
        _fraction("mintrl_confidence", self.mintrl_confidence)
        _fraction("max_random_pvalue", self.max_random_pvalue)
        _fraction("min_trade_match", self.min_trade_match, open_low=False)
        for name in ("mintrl_benchmark_sr", "max_tracking_error"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name}={v!r} is invalid: expected a finite number")
        if self.max_tracking_error < 0:
            raise ValueError(f"max_tracking_error={self.max_tracking_error!r}: expected >= 0")
        for name, low in (("random_trials", 100), ("seed", 0), ("match_bars", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}={v!r} is invalid: expected an integer >= {low}")
        if not isinstance(self.risk_profile, str) or not self.risk_profile:
            raise ValueError(f"risk_profile={self.risk_profile!r}: expected a profile name")
        if not isinstance(self.require_study, bool):
            raise ValueError(f"require_study={self.require_study!r}: expected true or false")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> GateConfig:
        """A config from a mapping; an unknown key is a ValueError listing the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(
                f"unknown gate setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(mapping))

    @classmethod
    def from_yaml(cls, path: str | Path) -> GateConfig:
        """A config from a YAML file of `field: value` lines (missing fields: defaults)."""
        import yaml

        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"gate config file not found: {file}")
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a mapping of gate settings")
        return cls.from_mapping(data)

    def to_mapping(self) -> dict[str, Any]:
        """The thresholds as JSON data (stored with each decision)."""
        return asdict(self)


def min_track_record_length(
    sr: float, sr_benchmark: float, skew: float, kurt: float, confidence: float
) -> float:
    """MinTRL: the bar returns needed before a per-bar Sharpe of `sr` beats `sr_benchmark`
    at `confidence` (Pearson `kurt`); inf when `sr <= sr_benchmark`.

    `1 + (1 - skew SR + (kurt - 1) / 4 SR²) (z / (SR - SR*))²`: the inverse of
    `stats.probabilistic_sharpe`, whose PSR reaches `confidence` at this many returns.
    """
    for name, value in (("sr", sr), ("sr_benchmark", sr_benchmark), ("skew", skew)):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} is invalid: expected a finite number")
    if not (math.isfinite(kurt) and kurt >= 1):
        raise ValueError(f"kurt={kurt!r} is invalid: expected Pearson kurtosis >= 1")
    _fraction("confidence", confidence)
    if sr <= sr_benchmark:
        return math.inf
    z = _NORMAL.inv_cdf(confidence)
    spread = max(1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr, 0.0)
    return 1.0 + spread * (z / (sr - sr_benchmark)) ** 2


def random_entry_test(
    prices: NDArray[np.float64],
    entry_bar: NDArray[np.int64],
    exit_bar: NDArray[np.int64],
    side: NDArray[np.float64],
    *,
    fee: float,
    trials: int,
    seed: int,
) -> tuple[float, float, NDArray[np.float64]]:
    """The strategy's summed trade return against random entries: (statistic, p-value,
    the random statistics).

    Every trade is valued alike, at `prices` (the bars' opens) of its entry and exit bar:
    `side * (p[exit] / p[entry] - 1) - 2 fee`, summed. Each of `trials` simulations keeps
    the trades' count, holding times (in bars) and sides and draws each entry bar
    uniformly where the trade fits in the bars. p = (1 + #random >= statistic) /
    (1 + trials): the chance that luck alone does as well.
    """
    px = np.asarray(prices, dtype=np.float64)
    entry = np.asarray(entry_bar, dtype=np.int64)
    exit_ = np.asarray(exit_bar, dtype=np.int64)
    sides = np.asarray(side, dtype=np.float64)
    n = int(px.shape[0])
    if not (entry.shape == exit_.shape == sides.shape) or entry.ndim != 1:
        raise ValueError("entry_bar, exit_bar and side must be 1-D arrays of one length")
    if entry.size == 0:
        raise ValueError("the random-entry test needs at least one trade")
    if (entry < 0).any() or (exit_ >= n).any() or (exit_ < entry).any():
        raise ValueError(f"trade bars must satisfy 0 <= entry <= exit < {n}")
    if not (np.isfinite(px).all() and (px > 0).all()):
        raise ValueError("prices must be finite and positive")
    cost = 2.0 * float(fee)
    stat = float(np.sum(sides * (px[exit_] / px[entry] - 1.0) - cost))
    hold = exit_ - entry
    rng = np.random.default_rng(seed)
    starts = np.floor(rng.random((int(trials), entry.size)) * (n - hold)).astype(np.int64)
    sims = np.sum(sides * (px[starts + hold] / px[starts] - 1.0) - cost, axis=1)
    p = (1.0 + float(np.sum(sims >= stat))) / (1.0 + float(trials))
    return stat, p, np.asarray(sims, dtype=np.float64)
