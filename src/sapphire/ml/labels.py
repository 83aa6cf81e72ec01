"""Training targets: forward returns, direction, triple-barrier and meta-labels, and their weights.

Labels follow Lopez de Prado, *Advances in Financial Machine Learning* (ch. 3-4). Every label
covers an interval of bars [t0, t1]: it is known at the close of bar t1, so cross-validation
must purge training rows whose interval overlaps a test row's (see `sapphire.ml.cv`), and
overlapping labels share weight through their average uniqueness.

Returns are log returns. `ret` is always the return of a long position in the instrument over
the label (at the barrier price when a barrier is touched); a short earns `-ret`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from numba import njit
from numpy.typing import ArrayLike, NDArray

from sapphire.indicators.statistics import rolling_mean_std
from sapphire.strategy.base import Bars

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
LabelKind = Literal["forward_return", "direction", "triple_barrier", "meta"]
NAT = np.iinfo(np.int64).min  # pandas' NaT: touch_ns when the bar times are unknown


def _series(func: str, name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{func}: {name} must be one-dimensional, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _whole(func: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _nonnegative(func: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{func}: {name} must be a number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{func}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def forward_return(close: ArrayLike, horizon: int) -> FloatArray:
    """log(close[t + horizon] / close[t]); NaN on the last `horizon` bars."""
    c = _series("forward_return", "close", close)
    h = _whole("forward_return", "horizon", horizon, 1)
    out = np.full_like(c, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(c[h:] / c[:-h], out=out[: max(c.shape[0] - h, 0)])
    return out


def direction(close: ArrayLike, horizon: int, dead_zone: float = 0.0) -> FloatArray:
    """Sign of the forward return: 1, -1, or 0 where |return| <= dead_zone; NaN on the last bars."""
    zone = _nonnegative("direction", "dead_zone", dead_zone)
    r = forward_return(close, horizon)
    out = np.sign(r)
    out[np.abs(r) <= zone] = 0.0
    return out


def rolling_volatility(close: ArrayLike, window: int) -> FloatArray:
    """Population std of the last `window` 1-bar log returns (causal; NaN for the first bars)."""
    c = _series("rolling_volatility", "close", close)
    window = _whole("rolling_volatility", "window", window, 2)
    r = np.full_like(c, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(c[1:] / c[:-1], out=r[1:])
    return rolling_mean_std(r, window)[1]


@njit(cache=True)
def _first_touch(
    high: FloatArray,
    low: FloatArray,
    events: IntArray,
    upper: FloatArray,
    lower: FloatArray,
    stop_is_upper: NDArray[np.bool_],
    horizon: int,
) -> tuple[IntArray, NDArray[np.int8]]:
    """Per event: the bar of the first touch (or t + horizon) and 1 upper, -1 lower, 0 none."""
    m = events.shape[0]
    t1 = np.empty(m, np.int64)
    hit = np.zeros(m, np.int8)
    for i in range(m):
        t = events[i]
        t1[i] = t + horizon
        for j in range(t + 1, t + horizon + 1):
            up = high[j] >= upper[i]
            down = low[j] <= lower[i]
            if up or down:
                t1[i] = j
                if up and down:  # which came first is unknown: assume the stop
                    hit[i] = 1 if stop_is_upper[i] else -1
                else:
                    hit[i] = 1 if up else -1
                break
    return t1, hit


def triple_barrier(
    close: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    *,
    horizon: int,
    pt: float = 2.0,
    sl: float = 1.0,
    vol_window: int = 100,
    side: ArrayLike | None = None,
    events: ArrayLike | None = None,
    time: ArrayLike | None = None,
) -> pd.DataFrame:
    """Triple-barrier labels: which of profit-take, stop-loss or time comes first after bar t.

    Barriers of event bar t sit at close[t] * exp(+-k * vol[t]) with
    vol = rolling_volatility(close, vol_window) * sqrt(horizon) and k = `pt` on the profit
    side, `sl` on the stop side (0 disables that barrier). Without `side` (or side +1) the
    upper barrier is the profit-take; for side -1 the lower one. The path is checked with
    the high and low of bars t+1 .. t+horizon; a bar touching both barriers counts as the
    stop (conservative: the order inside a bar is unknown).

    Events: every bar in `events` (indices or a boolean mask; default all bars) that has a
    positive volatility, a full horizon of later bars and, with `side`, a side of +1/-1;
    other events are dropped. Columns: t0, t1 (bar of the touch, or t0 + horizon), touch_ns
    (open time of bar t1 from `time` or the index of a Series `close`; NaT if unknown),
    label, ret (log return from close[t0] to the barrier price, or to close[t1] at time-out),
    barrier ("pt", "sl", "time"), and side when given. label: without side +1 pt, -1 sl,
    0 time-out; with side the sign of the bet's return side * ret (+1 pt, -1 sl, at
    time-out the sign of the bet's result).
    """
    func = "triple_barrier"
    if time is None and isinstance(close, pd.Series) and isinstance(close.index, pd.DatetimeIndex):
        time = close.index.as_unit("ns").asi8
    c = _series(func, "close", close)
    h = _series(func, "high", high)
    lo = _series(func, "low", low)
    n = c.shape[0]
    if h.shape[0] != n or lo.shape[0] != n:
        raise ValueError(
            f"{func}: close, high, low lengths differ: {n}, {h.shape[0]}, {lo.shape[0]}"
        )
    horizon = _whole(func, "horizon", horizon, 1)
    pt = _nonnegative(func, "pt", pt)
    sl = _nonnegative(func, "sl", sl)
    vol = rolling_volatility(c, vol_window) * math.sqrt(horizon)
    ok = np.isfinite(vol) & (vol > 0.0) & np.isfinite(c)
    ok[max(n - horizon, 0) :] = False
    sides = np.ones(n)
    if side is not None:
        sides = _series(func, "side", side)
        if sides.shape[0] != n:
            raise ValueError(f"{func}: side has {sides.shape[0]} values for {n} bars")
        bad = np.isfinite(sides) & ~np.isin(sides, (-1.0, 0.0, 1.0))
        if bad.any():
            raise ValueError(f"{func}: side must be -1, 0 or +1, got {float(sides[bad][0])!r}")
        ok &= np.abs(sides) == 1.0
    if events is not None:
        ok &= _event_mask(func, events, n)
    t0 = np.flatnonzero(ok).astype(np.int64)
    s = sides[t0]
    width = vol[t0]
    up_k = np.where(s > 0, pt, sl)
    down_k = np.where(s > 0, sl, pt)
    c0 = c[t0]
    upper = np.where(up_k > 0, c0 * np.exp(up_k * width), np.inf)
    lower = np.where(down_k > 0, c0 * np.exp(-down_k * width), -np.inf)
    t1, hit = _first_touch(h, lo, t0, upper, lower, s < 0, horizon)
    exit_price = np.where(hit > 0, upper, np.where(hit < 0, lower, c[t1]))
    ret = np.log(exit_price / c0)
    if side is None:
        label = hit.astype(np.int64)
        barrier = np.where(hit > 0, "pt", np.where(hit < 0, "sl", "time"))
    else:
        label = np.sign(s * ret).astype(np.int64)
        win = hit.astype(np.float64) * s
        barrier = np.where(win > 0, "pt", np.where(win < 0, "sl", "time"))
    times = np.full(t1.shape[0], NAT) if time is None else np.asarray(time, np.int64)[t1]
    out = pd.DataFrame(
        {"t0": t0, "t1": t1, "touch_ns": times, "label": label, "ret": ret, "barrier": barrier}
    )
    if side is not None:
        out["side"] = s.astype(np.int64)
    return out


def _event_mask(func: str, events: ArrayLike, n: int) -> NDArray[np.bool_]:
    arr = np.asarray(events)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError(f"{func}: a boolean events mask needs {n} values, got {arr.shape}")
        return arr
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{func}: events must be bar indices or a boolean mask, got {arr.dtype}")
    out_of_range = arr[(arr < 0) | (arr >= n)]
    if out_of_range.size:
        raise ValueError(f"{func}: event bar {out_of_range[0]} is outside 0..{n - 1}")
    mask = np.zeros(n, dtype=np.bool_)
    mask[arr.astype(np.intp)] = True
    return mask


def meta_labels(
    close: ArrayLike, high: ArrayLike, low: ArrayLike, side: ArrayLike, **barrier_kwargs: Any
) -> pd.DataFrame:
    """Meta-labels of a primary model's bets: label 1 where side * ret > 0 at the touch, else 0.

    Events are the bars where side is +1 or -1 (and in `events` if given); barriers and
    columns as `triple_barrier` with `side`.
    """
    out = triple_barrier(close, high, low, side=side, **barrier_kwargs)
    out["label"] = (out["side"] * out["ret"] > 0.0).astype(np.int64)
    return out


def uniqueness_weights(t0: ArrayLike, t1: ArrayLike, n_bars: int) -> FloatArray:
    """Average uniqueness of each label over its bars [t0, t1], mean-normalised to 1.

    A bar's uniqueness is 1 / (number of labels covering it); a label's average uniqueness
    is the mean over its bars (Lopez de Prado, AFML ch. 4.4).
    """
    func = "uniqueness_weights"
    n_bars = _whole(func, "n_bars", n_bars, 0)
    a = np.asarray(t0, dtype=np.int64)
    b = np.asarray(t1, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{func}: t0 and t1 must be 1-D of equal length, got {a.shape}, {b.shape}")
    if a.size == 0:
        return np.empty(0)
    bad = np.flatnonzero((a < 0) | (b < a) | (b >= n_bars))
    if bad.size:
        i = bad[0]
        raise ValueError(
            f"{func}: label {i} has [t0, t1] = [{a[i]}, {b[i]}], not in 0..{n_bars - 1}"
        )
    starts = np.bincount(a, minlength=n_bars + 1)
    stops = np.bincount(b + 1, minlength=n_bars + 1)
    concurrency = np.cumsum(starts - stops)[:n_bars]
    with np.errstate(divide="ignore"):
        inverse = np.where(concurrency > 0, 1.0 / concurrency, 0.0)
    cumulative = np.concatenate(([0.0], np.cumsum(inverse)))
    uniqueness = (cumulative[b + 1] - cumulative[a]) / (b - a + 1)
    return np.asarray(uniqueness / uniqueness.mean(), dtype=np.float64)


@dataclass(frozen=True)
class Labels:
    """Targets of a training set: one row per label, with its bar interval, weight and return."""

    t0: IntArray  # first bar of the label (the row's features are those of bar t0)
    t1: IntArray  # bar at which the label is known (t1 >= t0)
    y: FloatArray  # class -1/0/1, 0/1 for meta, or the return for regression
    weight: FloatArray  # average-uniqueness weights, mean 1
    ret: FloatArray  # realised log return of a long position over the label
    task: Literal["classification", "regression"]

    def __post_init__(self) -> None:
        sizes = {len(self.t0), len(self.t1), len(self.y), len(self.weight), len(self.ret)}
        if len(sizes) != 1:
            raise ValueError(f"Labels: t0, t1, y, weight, ret lengths differ: {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.t0)


@dataclass(frozen=True)
class LabelSpec:
    """What to predict: the label kind and its horizon and barrier settings."""

    kind: LabelKind = "triple_barrier"
    horizon: int = 30
    pt: float = 2.0
    sl: float = 1.0
    vol_window: int = 100
    dead_zone: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in get_args(LabelKind):
            raise ValueError(
                f"LabelSpec.kind: unknown kind {self.kind!r}; expected one of "
                f"{', '.join(get_args(LabelKind))}"
            )
        _whole("LabelSpec", "horizon", self.horizon, 1)
        _whole("LabelSpec", "vol_window", self.vol_window, 2)
        for name in ("pt", "sl", "dead_zone"):
            object.__setattr__(self, name, _nonnegative("LabelSpec", name, getattr(self, name)))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> LabelSpec:
        """Build a spec from a dict; unknown keys and bad values are named."""
        if not isinstance(m, Mapping):
            raise ValueError(f"LabelSpec: expected a mapping, got {type(m).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in m if k not in known)
        if unknown:
            raise ValueError(
                f"LabelSpec: unknown key(s) {', '.join(unknown)}; expected {', '.join(known)}"
            )
        return cls(**dict(m))

    def to_mapping(self) -> dict[str, Any]:
        """The spec as a JSON-able dict; `from_mapping` rebuilds an equal spec."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def make(self, bars: Bars, side: ArrayLike | None = None) -> Labels:
        """The labels of `bars` (`side`: the primary model's bets, needed for kind "meta")."""
        task: Literal["classification", "regression"] = "classification"
        if self.kind in ("forward_return", "direction"):
            r = forward_return(bars.close, self.horizon)
            t0 = np.flatnonzero(np.isfinite(r)).astype(np.int64)
            t1 = t0 + self.horizon
            ret = r[t0]
            if self.kind == "forward_return":
                y, task = ret, "regression"
            else:
                y = direction(bars.close, self.horizon, self.dead_zone)[t0]
        else:
            barriers: dict[str, Any] = {
                "horizon": self.horizon,
                "pt": self.pt,
                "sl": self.sl,
                "vol_window": self.vol_window,
                "time": bars.time,
            }
            if self.kind == "meta":
                if side is None:
                    raise ValueError("LabelSpec.make: kind 'meta' needs the primary model's side")
                frame = meta_labels(bars.close, bars.high, bars.low, side, **barriers)
            else:
                frame = triple_barrier(bars.close, bars.high, bars.low, side=side, **barriers)
            t0 = frame["t0"].to_numpy(np.int64)
            t1 = frame["t1"].to_numpy(np.int64)
            y = frame["label"].to_numpy(np.float64)
            ret = frame["ret"].to_numpy(np.float64)
        weight = uniqueness_weights(t0, t1, len(bars))
        return Labels(t0, t1, y, weight, ret, task)
