"""Look-ahead detector: do a strategy's signals change when future bars are removed?

A strategy without look-ahead computes the signal of bar t from bars <= t only, so
running it on the first `cut` bars must give, bar for bar, the same signals as the
first `cut` values of the run on all bars. `check_lookahead` reruns the strategy on
the data truncated at several cut points (evenly spaced plus random ones, always
including "all but the last bar") and compares every signal array: entries and exits
of both sides, stop-loss, take-profit, trailing stop, entry type and entry price.
Any bar whose value differs is a look-ahead: its signal used a bar at or after the
cut. Floats match when equal within 1e-9 (relative) or both NaN (warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.runner import Backtest
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import BOOL_SIGNALS, FLOAT_SIGNALS, normalize_signals

__all__ = ["ARRAYS", "LookaheadReport", "LookaheadViolation", "check_lookahead"]

ARRAYS = (*BOOL_SIGNALS, *FLOAT_SIGNALS, "entry_type")
RTOL, ATOL = 1e-9, 1e-12


@dataclass(frozen=True)
class LookaheadViolation:
    """One bar of one signal array that changed when the bars from `cut` on were removed."""

    bar: int
    time: str
    array: str
    full: Any
    truncated: Any
    cut: int

    @property
    def ahead(self) -> int:
        """Bars between this bar and the first removed bar: it looked at least this far."""
        return self.cut - self.bar

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "bar": self.bar,
            "time": self.time,
            "array": self.array,
            "full": clean(self.full),
            "truncated": clean(self.truncated),
            "cut": self.cut,
            "ahead": self.ahead,
        }


@dataclass
class LookaheadReport:
    """What `check_lookahead` found.

    `n_violations` counts distinct (array, bar) pairs whose value changed under some
    truncation; `violations` lists the first `max_report` of them by bar (each with
    the first cut that exposed it); `arrays` counts flagged bars per array;
    `horizon` is the largest `cut - bar` seen (the strategy reads at least that many
    bars ahead), 0 when clean.
    """

    strategy: str
    params: dict[str, Any]
    n_bars: int
    cuts: list[int]
    n_violations: int
    violations: list[LookaheadViolation] = field(default_factory=list)
    arrays: dict[str, int] = field(default_factory=dict)
    horizon: int = 0

    @property
    def clean(self) -> bool:
        """True when no signal changed under any truncation."""
        return self.n_violations == 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "strategy": self.strategy,
            "params": dict(self.params),
            "n_bars": self.n_bars,
            "checkpoints": len(self.cuts),
            "cuts": list(self.cuts),
            "clean": self.clean,
            "lookahead": not self.clean,
            "n_violations": self.n_violations,
            "arrays": dict(self.arrays),
            "horizon": self.horizon,
            "violations": [v.to_json() for v in self.violations],
        }

    def summary(self) -> str:
        """One line for people."""
        if self.clean:
            return (
                f"{self.strategy}: no look-ahead found ({len(self.cuts)} truncations of "
                f"{self.n_bars:,} bars)"
            )
        arrays = ", ".join(f"{k} ({v:,})" for k, v in self.arrays.items())
        return (
            f"{self.strategy}: look-ahead in {self.n_violations:,} bar signals ({arrays}); "
            f"signals read at least {self.horizon:,} bar{'s' if self.horizon != 1 else ''} ahead"
        )


def _signal_arrays(sig: Any, n: int, name: str) -> dict[str, NDArray[Any]]:
    """Every signal array of `sig` at full length `n` (scalars broadcast)."""
    arrays = normalize_signals(sig, n, strategy=name)
    out: dict[str, NDArray[Any]] = {}
    for key in ARRAYS:
        arr = getattr(arrays, key)
        out[key] = np.broadcast_to(arr, (n,)) if arr.shape[0] == 1 else arr
    return out


def _truncate(bars: Bars, cut: int) -> Bars:
    return replace(
        bars,
        time=bars.time[:cut],
        open=bars.open[:cut],
        high=bars.high[:cut],
        low=bars.low[:cut],
        close=bars.close[:cut],
        volume=bars.volume[:cut],
    )


def _cut_points(n: int, checkpoints: int, seed: int | None) -> list[int]:
    """Evenly spaced cuts up to n - 1 (all but the last bar) plus random ones."""
    lo = max(2, n // (checkpoints + 1))
    hi = n - 1
    if hi < lo:
        return [hi] if hi >= 1 else []
    n_even = (checkpoints + 1) // 2
    even = np.linspace(hi, lo, n_even).round().astype(np.int64)  # hi first: n_even may be 1
    rng = np.random.default_rng(seed)
    random = rng.integers(lo, hi + 1, size=checkpoints - n_even)
    return sorted({int(c) for c in np.concatenate([even, random])})


def _differs(full: NDArray[Any], trunc: NDArray[Any]) -> NDArray[np.bool_]:
    if full.dtype.kind == "f":
        a = np.asarray(full, dtype=np.float64)
        b = np.asarray(trunc, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=RTOL, atol=ATOL)
        return np.asarray(~same)
    return np.asarray(full != trunc)


def _plain(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def check_lookahead(
    strategy: str | type[Strategy] | Strategy,
    data: pd.DataFrame | str | Path | Bars,
    params: Mapping[str, Any] | None = None,
    checkpoints: int = 20,
    seed: int | None = 0,
    max_report: int = 50,
    **load_options: Any,
) -> LookaheadReport:
    """Recompute `strategy`'s signals on `data` cut at `checkpoints` points and compare.

    `strategy` is a built-in name, an import spec, a Strategy class or an instance
    (its parameter values are used); `data` anything `Backtest` accepts; `params`
    the strategy's parameters; `load_options` are passed to `Backtest` (`start`,
    `end`, `resample`, `venue`, `timeframe`, `gaps`). Random cut points come from
    `seed`. Raises ValueError for bad input or when the strategy fails on a
    truncated series (the message names the cut).
    """
    if isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 1:
        raise ValueError(f"checkpoints={checkpoints!r} is invalid: expected an integer >= 1")
    if isinstance(max_report, bool) or not isinstance(max_report, int) or max_report < 0:
        raise ValueError(f"max_report={max_report!r} is invalid: expected an integer >= 0")
    values = dict(params or {})
    if isinstance(strategy, Strategy):
        values = {**strategy.values, **values}
        strategy = type(strategy)
    bt = Backtest(data, strategy, **load_options, **values)
    bars, strat = bt.bars, bt.strategy
    name, n = strat.name, len(bars)
    full = _signal_arrays(strat.signals(bars), n, name)
    cuts = _cut_points(n, checkpoints, seed)
    flagged = {key: np.zeros(n, dtype=np.bool_) for key in ARRAYS}
    first_cut = {key: np.zeros(n, dtype=np.int64) for key in ARRAYS}
    seen = {key: np.zeros(n, dtype=full[key].dtype) for key in ARRAYS}
    for cut in cuts:
        try:
            sig = strat.signals(_truncate(bars, cut))
            part = _signal_arrays(sig, cut, name)
        except Exception as exc:
            raise ValueError(
                f"strategy {name!r} failed on the first {cut} of {n} bars: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        for key in ARRAYS:
            bad = _differs(full[key][:cut], part[key])
            new = bad & ~flagged[key][:cut]
            if new.any():
                idx = np.flatnonzero(new)
                flagged[key][idx] = True
                first_cut[key][idx] = cut
                seen[key][idx] = part[key][idx]
    counts = {key: int(flagged[key].sum()) for key in ARRAYS if flagged[key].any()}
    rows: list[tuple[int, int, str]] = []
    horizon = 0
    for order, key in enumerate(ARRAYS):
        if key in counts:
            idx = np.flatnonzero(flagged[key])
            horizon = max(horizon, int((first_cut[key][idx] - idx).max()))
            rows.extend((int(i), order, key) for i in idx[:max_report])
    rows.sort()
    times = pd.DatetimeIndex(bars.time.view("datetime64[ns]")).tz_localize("UTC")
    violations = [
        LookaheadViolation(
            bar=bar,
            time=times[bar].isoformat(),
            array=key,
            full=_plain(full[key][bar]),
            truncated=_plain(seen[key][bar]),
            cut=int(first_cut[key][bar]),
        )
        for bar, _, key in rows[:max_report]
    ]
    return LookaheadReport(
        strategy=name,
        params=strat.values,
        n_bars=n,
        cuts=cuts,
        n_violations=sum(counts.values()),
        violations=violations,
        arrays=counts,
        horizon=horizon,
    )
