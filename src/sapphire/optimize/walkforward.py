"""Walk-forward analysis: optimise on each train window, trade the next test window.

The data is cut into folds. Each fold optimises the strategy's parameters on its train
window (`sapphire.optimize.optimize`, one stored study per fold named
`<name>-fold<k>`), then backtests the best parameters out of sample on the test window
that follows. The test windows' equity curves are chained into one out-of-sample
equity curve and their trades into one trade list; in-sample and out-of-sample metrics
are kept per fold, with the walk-forward efficiency.

Warm-up rule (docs/optimize.md, "Walk-forward"): the out-of-sample backtest of fold k
runs on the bars of its train window followed by its test window, so indicators are
warmed up on data the optimiser already saw, but entry signals on bars before the test
window are dropped. The position is therefore flat when the test window opens, every
trade is entered on a signal inside the test window, a position still open at the end
of the test window is closed at its last close (exit reason `end`), and only the test
window's bars count for equity and metrics.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.engine import Backtest, bars_from_frame
from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.strategy.base import Bars, Signals, Strategy
from sapphire.strategy.registry import get_strategy

if TYPE_CHECKING:
    from sapphire.optimize.study import StudyResult

WindowSpec = str | int | pd.Timedelta

# Keyword arguments of `Backtest` that choose the bars rather than simulate them: the
# walk-forward loads the data once with them and cuts the folds from that frame.
DATA_OPTIONS = ("symbol", "start", "end", "venue", "timeframe", "resample", "gaps")

FOLD_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")


# --- windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """One fold's windows as bar indices into the walk-forward's bars (ends exclusive).

    `number` counts from 1; the train window is `[train_start, train_end)` and the test
    window `[test_start, test_end)` with `test_start == train_end`.
    """

    number: int
    train_start: int
    train_end: int
    test_end: int

    @property
    def test_start(self) -> int:
        """First bar of the test window (the bar after the train window)."""
        return self.train_end


def _parse_window(name: str, value: Any) -> int | pd.Timedelta:
    """Return a bar count (int) or a positive duration, or raise naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid: expected a duration like '7d' or bars")
    if isinstance(value, int | np.integer):
        if value <= 0:
            raise ValueError(f"{name}={value!r} is invalid: a bar count must be positive")
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return _parse_window(name, int(value.strip()))
    try:
        if isinstance(value, str):  # pandas deprecates the unit "d" in favour of "D"
            value_str = re.sub(r"(?<=[\d.\s])d\b", "D", value.strip())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                delta = pd.Timedelta(value_str)
        else:
            delta = pd.Timedelta(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}={value!r} is invalid: expected a duration like '30d', '12h', '90min' "
            "or a whole number of bars"
        ) from None
    if pd.isna(delta) or delta <= pd.Timedelta(0):
        raise ValueError(f"{name}={value!r} is invalid: the duration must be positive")
    return delta


def _describe_window(value: int | pd.Timedelta) -> str:
    return f"{value} bars" if isinstance(value, int) else str(value)


def make_folds(
    time_ns: NDArray[np.int64],
    timeframe_ns: int,
    *,
    train: WindowSpec,
    test: WindowSpec,
    step: WindowSpec | None = None,
    anchored: bool = False,
) -> list[Fold]:
    """Cut bars (open times `time_ns`) into walk-forward folds.

    `train`, `test` and `step` are durations ("30d", "12h", a `Timedelta`) or bar counts
    (ints); `step` defaults to `test`. Fold k (from 0) trains on
    `[start + k*step, start + train + k*step)` (rolling) or `[start, start + train +
    k*step)` (anchored) and tests on the `test` that follows; durations are measured on
    bar open times from the first bar, bar counts on positions. A fold is kept only if
    its whole test window lies inside the data.
    """
    n = int(time_ns.shape[0])
    tr = _parse_window("train", train)
    te = _parse_window("test", test)
    st = te if step is None else _parse_window("step", step)
    kinds = {type(v) is int for v in (tr, te, st)}
    if len(kinds) > 1:
        raise ValueError(
            f"train={train!r}, test={test!r}, step={step!r}: give all as durations "
            "('7d') or all as bar counts (ints), not a mix"
        )
    bar = pd.Timedelta(int(timeframe_ns), unit="ns")
    for name, value, raw in (("train", tr, train), ("test", te, test)):
        if isinstance(value, int) and value < 2:
            raise ValueError(f"{name}={raw!r} is not longer than one bar: give at least 2 bars")
        if isinstance(value, pd.Timedelta) and value <= bar:
            raise ValueError(
                f"{name}={raw!r} is not longer than one bar ({bar}): give a longer window"
            )
    if isinstance(st, int) and isinstance(te, int):
        overlap = st < te
    else:
        overlap = pd.Timedelta(st) < pd.Timedelta(te)
    if overlap:
        raise ValueError(
            f"step={step!r} is shorter than test={test!r}: the test windows would overlap "
            "and could not be stitched into one out-of-sample curve"
        )

    folds: list[Fold] = []
    if isinstance(tr, int):
        assert isinstance(te, int) and isinstance(st, int)
        k = 0
        while True:
            train_end = tr + k * st
            test_end = train_end + te
            if test_end > n:
                break
            folds.append(Fold(k + 1, 0 if anchored else k * st, train_end, test_end))
            k += 1
    elif n:
        assert isinstance(te, pd.Timedelta) and isinstance(st, pd.Timedelta)
        t0 = int(time_ns[0])
        data_end = int(time_ns[-1]) + int(timeframe_ns)
        tr_ns, te_ns, st_ns = tr.value, te.value, st.value
        k = 0
        while True:
            train_end_ns = t0 + tr_ns + k * st_ns
            test_end_ns = train_end_ns + te_ns
            if test_end_ns > data_end:
                break
            train_start_ns = t0 if anchored else t0 + k * st_ns
            a, b, c = np.searchsorted(time_ns, [train_start_ns, train_end_ns, test_end_ns])
            folds.append(Fold(k + 1, int(a), int(b), int(c)))
            k += 1
    if not folds:
        span = (
            f"{n} bars"
            if not n
            else f"{n} bars from {_iso(time_ns[0])} to {_iso(time_ns[-1] + timeframe_ns)} "
            f"({pd.Timedelta(int(time_ns[-1] - time_ns[0] + timeframe_ns), unit='ns')})"
        )
        raise ValueError(
            f"no walk-forward fold fits: train={_describe_window(tr)} + "
            f"test={_describe_window(te)} is longer than the data, {span}"
        )
    for fold in folds:
        for what, lo, hi in (
            ("train", fold.train_start, fold.train_end),
            ("test", fold.test_start, fold.test_end),
        ):
            if hi - lo < 2:
                raise ValueError(
                    f"fold {fold.number}: the {what} window holds {hi - lo} bar(s) "
                    f"(bars {lo}..{hi}); a gap in the data? give longer windows"
                )
    return folds


def _iso(ns: Any) -> str:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


# --- the out-of-sample backtest ----------------------------------------------------


def _mask_entries(value: Any, before: NDArray[np.bool_]) -> Any:
    """Return an entry signal with every bar flagged in `before` set to False."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.shape != before.shape or arr.dtype.kind not in "biuf":
        return value  # the engine rejects it with its own message
    if arr.dtype == np.bool_:
        out = arr.copy()
    else:
        with np.errstate(invalid="ignore"):
            out = np.nan_to_num(arr.astype(np.float64)) != 0.0
    out[before] = False
    return out


class _TestWindowBacktest(Backtest):
    """A backtest whose entry signals before `first_entry_ns` are dropped (warm-up bars)."""

    first_entry_ns: int = 0

    def signals(self) -> Signals:
        sig = super().signals()
        if not isinstance(sig, Signals):
            return sig  # run() raises the usual TypeError
        before = self.bars.time < self.first_entry_ns
        return replace(
            sig,
            enter_long=_mask_entries(sig.enter_long, before),
            enter_short=_mask_entries(sig.enter_short, before),
        )


@dataclass
class OutOfSample:
    """A fold's out-of-sample run: test-window equity, trades and metrics."""

    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    bars_in_market: int


def out_of_sample_backtest(
    frame: pd.DataFrame,
    strategy: str | type[Strategy],
    params: dict[str, Any] | None,
    fold: Fold,
    backtest_options: dict[str, Any],
) -> OutOfSample:
    """Backtest `params` on the fold's train + test bars, trading the test window only.

    With `params=None` (no feasible trial in the train window) the fold stays flat.
    Trade `entry_bar`/`exit_bar` are positions in `frame`.
    """
    window = frame.iloc[fold.train_start : fold.test_end]
    offset = fold.test_start - fold.train_start
    bt = _TestWindowBacktest(window, strategy, **{**backtest_options, **(params or {})})
    bt.first_entry_ns = (
        int(bt.bars.time[offset]) if params is not None else int(bt.bars.time[-1]) + 1
    )
    result = bt.run()
    cash = float(bt.config.cash)
    warmup = result.equity.to_numpy()[:offset]
    if warmup.size and not np.all(warmup == cash):  # pragma: no cover - engine invariant
        raise RuntimeError(f"fold {fold.number}: equity moved during the warm-up bars")
    equity = result.equity.iloc[offset:]
    trades = result.trades.copy()
    trades["entry_bar"] += fold.train_start
    trades["exit_bar"] += fold.train_start
    bars_in_market = round(float(result.metrics["exposure"]) * len(result.equity))
    metrics = _metrics(
        equity.to_numpy(),
        cash,
        bt.bars.timeframe_ns,
        trades["pnl"].to_numpy(),
        trades["return"].to_numpy(),
        float(result.metrics["fees"]),
        float(result.metrics["funding"]),
        bars_in_market,
    )
    return OutOfSample(equity, trades, metrics, bars_in_market)


def _metrics(
    equity: NDArray[np.float64],
    cash: float,
    timeframe_ns: int,
    pnl: NDArray[np.float64],
    returns: NDArray[np.float64],
    fees: float,
    funding: float,
    bars_in_market: int,
) -> dict[str, float]:
    return compute_metrics(
        equity,
        initial_cash=cash,
        periods_per_year=periods_per_year(timeframe_ns),
        timeframe_ns=timeframe_ns,
        trade_pnl=pnl,
        trade_returns=returns,
        fees=fees,
        funding=funding,
        bars_in_market=bars_in_market,
    )


def stitch_equity(curves: Sequence[pd.Series], cash: float) -> tuple[pd.Series, list[float]]:
    """Chain test-window equity curves that each start from `cash` into one curve.

    Fold k's curve is scaled by `scale_k` = (stitched equity before fold k) / cash, so
    the stitched final equity is `cash * prod(1 + fold return)`. Returns the curve and
    the scales.
    """
    level, scales, parts = float(cash), [], []
    for curve in curves:
        scale = level / cash
        scales.append(scale)
        parts.append(curve * scale)
        if len(curve):
            level = float(curve.iloc[-1]) * scale
    if not parts:
        return pd.Series(dtype=np.float64, name="equity"), scales
    return pd.concat(parts).rename("equity"), scales


def annualised_return(total_return: float, n_bars: int, timeframe_ns: int) -> float:
    """Simple (not compounded) annualisation: total return x bars per year / bars."""
    if n_bars <= 0 or not math.isfinite(total_return):
        return math.nan
    return total_return * periods_per_year(timeframe_ns) / n_bars


def efficiency(oos_annual: float, is_annual: float) -> float | None:
    """Walk-forward efficiency OOS / IS annualised return; None unless IS return > 0."""
    if not (math.isfinite(oos_annual) and math.isfinite(is_annual)) or is_annual <= 0:
        return None
    return oos_annual / is_annual


# --- results -----------------------------------------------------------------------


@dataclass
class FoldResult:
    """One fold: windows, the train study's outcome and in/out-of-sample metrics."""

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_bars: int
    test_bars: int
    study: str
    n_trials: int
    best_params: dict[str, Any] | None
    best_value: float | list[float] | None
    dsr: float | None
    pbo: float | None
    in_sample: dict[str, float]
    out_of_sample: dict[str, float]
    efficiency: float | None
    scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN/inf are left to the caller's encoder)."""
        return {
            "fold": self.number,
            "study": self.study,
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "train_bars": self.train_bars,
            "test_bars": self.test_bars,
            "n_trials": self.n_trials,
            "best_params": self.best_params,
            "best_value": self.best_value,
            "dsr": self.dsr,
            "pbo": self.pbo,
            "in_sample": dict(self.in_sample),
            "out_of_sample": dict(self.out_of_sample),
            "efficiency": self.efficiency,
        }


@dataclass(eq=False)
class WalkForwardResult:
    """Everything a walk-forward produced.

    `equity` is the stitched out-of-sample equity (test windows only, chained), `trades`
    the folds' out-of-sample trades (column `fold` added; `pnl` as simulated from the
    fold's own starting cash), `metrics` the metrics of the stitched curve,
    `efficiency` the aggregate walk-forward efficiency (see docs/optimize.md).
    """

    name: str
    strategy: str
    symbol: str
    objectives: list[str]
    train: str | int
    test: str | int
    step: str | int
    anchored: bool
    folds: list[FoldResult]
    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    efficiency: float | None
    elapsed_s: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The last fold's best parameters: what you would trade next."""
        return self.folds[-1].best_params if self.folds else None

    @property
    def n_trials(self) -> int:
        """Trials run over all folds."""
        return sum(f.n_trials for f in self.folds)

    def to_json(self) -> dict[str, Any]:
        """One JSON-ready dict: names, totals, the last fold's best, per-fold metrics."""
        last = self.folds[-1] if self.folds else None
        return {
            "study": self.name,
            "strategy": self.strategy,
            "symbol": self.symbol,
            "objectives": list(self.objectives),
            "train": self.train,
            "test": self.test,
            "step": self.step,
            "anchored": self.anchored,
            "n_folds": len(self.folds),
            "n_trials": self.n_trials,
            "best_params": self.best_params,
            "best_value": last.best_value if last else None,
            "dsr": last.dsr if last else None,
            "pbo": last.pbo if last else None,
            "efficiency": self.efficiency,
            "out_of_sample": dict(self.metrics),
            "start": self.equity.index[0].isoformat() if len(self.equity) else None,
            "end": self.equity.index[-1].isoformat() if len(self.equity) else None,
            "folds": [f.to_json() for f in self.folds],
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def plot(self, path: str | Path | None = None) -> Path:
        """Write the HTML report (stitched equity, fold boundaries, per-fold table)."""
        from sapphire.optimize.report import walkforward_report

        return walkforward_report(self, path)

    def save(self) -> Path:
        """Store the result under `$SAPPHIRE_HOME/walkforward/<name>.json` and return it."""
        target = walkforward_path(self.name)
        payload = {
            **self.to_json(),
            "config": self.config,
            "equity": {
                "time_ns": pd.DatetimeIndex(self.equity.index).as_unit("ns").asi8.tolist(),
                "value": self.equity.to_numpy().tolist(),
            },
            "trades": json.loads(_times_as_ns(self.trades).to_json(orient="split")),
        }
        target.write_text(json.dumps(_finite(payload)), encoding="utf-8")
        return target


def _times_as_ns(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades.copy()
    for col in ("entry_time", "exit_time"):
        if col in out and len(out):
            out[col] = pd.DatetimeIndex(out[col]).as_unit("ns").asi8
    return out


def _finite(value: Any) -> Any:
    """NaN and infinities become None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def walkforward_path(name: str) -> Path:
    """Where `WalkForwardResult.save()` stores the walk-forward called `name`."""
    from sapphire.config import home_subdir

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"
    return home_subdir("walkforward") / f"{safe}.json"


def load_walkforward(name: str) -> WalkForwardResult | None:
    """Load a walk-forward saved by `walk_forward`, or None if there is none by that name."""
    path = walkforward_path(name)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))

    def nan(metrics: dict[str, Any]) -> dict[str, float]:
        return {k: math.nan if v is None else v for k, v in metrics.items()}

    folds = [
        FoldResult(
            number=f["fold"],
            train_start=pd.Timestamp(f["train_start"]),
            train_end=pd.Timestamp(f["train_end"]),
            test_start=pd.Timestamp(f["test_start"]),
            test_end=pd.Timestamp(f["test_end"]),
            train_bars=f["train_bars"],
            test_bars=f["test_bars"],
            study=f["study"],
            n_trials=f["n_trials"],
            best_params=f["best_params"],
            best_value=f["best_value"],
            dsr=f["dsr"],
            pbo=f["pbo"],
            in_sample=nan(f["in_sample"]),
            out_of_sample=nan(f["out_of_sample"]),
            efficiency=f["efficiency"],
        )
        for f in raw["folds"]
    ]
    index = pd.DatetimeIndex(pd.to_datetime(raw["equity"]["time_ns"], unit="ns", utc=True))
    equity = pd.Series(raw["equity"]["value"], index=index, name="equity", dtype=np.float64)
    trades = pd.DataFrame(**raw["trades"])
    for col in ("entry_time", "exit_time"):
        if col in trades:
            trades[col] = pd.to_datetime(trades[col], unit="ns", utc=True)
    return WalkForwardResult(
        name=raw["study"],
        strategy=raw["strategy"],
        symbol=raw["symbol"],
        objectives=raw["objectives"],
        train=raw["train"],
        test=raw["test"],
        step=raw["step"],
        anchored=raw["anchored"],
        folds=folds,
        equity=equity,
        trades=trades,
        metrics=nan(raw["out_of_sample"]),
        efficiency=raw["efficiency"],
        elapsed_s=raw["elapsed_s"],
        config=raw.get("config", {}),
    )


# --- the driver --------------------------------------------------------------------


def _load_frame(data: Any, options: dict[str, Any]) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """Load the bars once (as `Backtest` would) and return frame, symbol, instrument meta."""
    from sapphire.data import Catalog, load_ohlcv, resample_ohlcv
    from sapphire.data.load import is_file_source

    symbol = options.get("symbol")
    meta: dict[str, Any] = {}
    if isinstance(data, Bars):
        if any(options.get(k) is not None for k in ("start", "end", "resample")):
            raise ValueError("start/end/resample need a DataFrame, file or symbol, not Bars")
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(data.time, unit="ns", utc=True),
                "open": data.open,
                "high": data.high,
                "low": data.low,
                "close": data.close,
                "volume": data.volume,
            }
        )
        return frame, symbol or "bars", meta
    if isinstance(data, str) and data == "sample":
        from sapphire.data.samples import SAMPLE_PATH

        data, symbol = SAMPLE_PATH, symbol or "BTC-PERP (sample)"
    if isinstance(data, pd.DataFrame):
        name = symbol or "data"
    elif is_file_source(data):
        name = symbol or Path(data).name
    elif isinstance(data, str):
        name = symbol or data
        entry = Catalog().entry(
            data, venue=options.get("venue"), timeframe=options.get("timeframe")
        )
        meta = {"tick_size": entry.tick_size, "lot_size": entry.lot_size}
    else:
        raise TypeError(
            "data must be a DataFrame, Bars, a file path or a catalog symbol, "
            f"got {type(data).__name__}"
        )
    frame, _report = load_ohlcv(
        data,
        gaps=options.get("gaps") or "keep",
        start=options.get("start"),
        end=options.get("end"),
        venue=options.get("venue"),
        timeframe=options.get("timeframe"),
    )
    if options.get("resample"):
        frame = resample_ohlcv(frame, options["resample"])
    return frame.reset_index(drop=True), name, meta


def _study_value(study: StudyResult) -> float | list[float] | None:
    value = study.best_value
    if isinstance(value, list | tuple):
        return [float(v) for v in value]
    return None if value is None else float(value)


def walk_forward(
    data: pd.DataFrame | str | Path | Bars,
    strategy: str | type[Strategy],
    *,
    train: WindowSpec = "30d",
    test: WindowSpec = "7d",
    step: WindowSpec | None = None,
    anchored: bool = False,
    objectives: Sequence[str | Callable[..., float]] = ("sharpe",),
    trials: int = 50,
    sampler: str = "tpe",
    seed: int | None = None,
    jobs: int | None = 1,
    ray_address: str | None = None,
    min_trades: int = 1,
    space: dict[str, Any] | None = None,
    progress: bool = True,
    study: str | None = None,
    storage: str | None = None,
    save: bool = True,
    **backtest_options: Any,
) -> WalkForwardResult:
    """Walk-forward optimisation of `strategy` on `data`; see the module docstring.

    `train`/`test`/`step` are durations ("30d", "12h") or bar counts; `step` defaults to
    `test`; `anchored=True` starts every train window at the first bar. Each fold runs
    `optimize(...)` with `trials`, `sampler`, `objectives`, `space`, `min_trades`,
    `jobs`/`ray_address` and seed `seed + k - 1` (fold k, from 1) as study
    `<study>-fold<k>` in `storage`; `study` defaults to `wf-<strategy>-<UTC time>`.
    The remaining keywords are `Backtest` options (cash, fee, size, ..., and the data
    options start, end, symbol, venue, timeframe, resample, gaps). With `save=True` the
    result is stored for `sapphire optimize report <study>`.
    """
    from sapphire.optimize.study import optimize

    started = time.perf_counter()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} is invalid: expected a whole number >= 1")
    strategy_cls = get_strategy(strategy)
    data_options = {k: backtest_options.pop(k) for k in DATA_OPTIONS if k in backtest_options}
    frame, symbol, meta = _load_frame(data, data_options)
    for key in ("tick_size", "lot_size"):
        if backtest_options.get(key) is None and meta.get(key):
            backtest_options[key] = meta[key]
    declared = strategy_cls.params()
    options = {k: v for k, v in backtest_options.items() if k not in declared}
    bars = bars_from_frame(frame)
    folds = make_folds(
        bars.time, bars.timeframe_ns, train=train, test=test, step=step, anchored=anchored
    )
    stamp_now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = study or f"wf-{strategy_cls.name}-{stamp_now}-{uuid.uuid4().hex[:4]}"
    cash = float(options.get("cash", 10_000.0))
    tf = bars.timeframe_ns
    times = pd.DatetimeIndex(pd.to_datetime(bars.time, unit="ns", utc=True))
    data_end = times[-1] + pd.Timedelta(tf, unit="ns")

    def stamp(i: int) -> pd.Timestamp:
        return times[i] if i < len(times) else data_end

    def shown(i: int) -> str:
        return stamp(i).strftime("%Y-%m-%d %H:%M")

    say = _reporter(progress)
    results: list[FoldResult] = []
    oos_runs: list[OutOfSample] = []
    objective_names: list[str] = []
    for fold in folds:
        train_frame = frame.iloc[fold.train_start : fold.train_end].reset_index(drop=True)
        say(
            f"fold {fold.number}/{len(folds)}: train {shown(fold.train_start)} → "
            f"{shown(fold.train_end)} ({fold.train_end - fold.train_start:,} bars), "
            f"test → {shown(fold.test_end)} UTC ({fold.test_end - fold.test_start:,} bars)"
        )
        fold_study = optimize(
            train_frame,
            strategy,
            objectives=objectives,
            trials=trials,
            sampler=sampler,
            jobs=jobs,
            ray_address=ray_address,
            study=f"{name}-fold{fold.number}",
            storage=storage,
            seed=None if seed is None else seed + fold.number - 1,
            min_trades=min_trades,
            space=space,
            progress=progress,
            **backtest_options,
        )
        objective_names = list(fold_study.objectives)
        # A trial's params hold every parameter (searched, fixed and defaults).
        params = dict(fold_study.best_params) if fold_study.best_trial is not None else None
        best = fold_study.best_trial
        in_sample = (
            dict(best.metrics)
            if best is not None and best.metrics
            else _in_sample(train_frame, strategy, params, options)
        )
        oos = out_of_sample_backtest(frame, strategy, params, fold, options)
        oos_runs.append(oos)
        n_train, n_test = fold.train_end - fold.train_start, fold.test_end - fold.test_start
        results.append(
            FoldResult(
                number=fold.number,
                train_start=stamp(fold.train_start),
                train_end=stamp(fold.train_end),
                test_start=stamp(fold.test_start),
                test_end=stamp(fold.test_end),
                train_bars=n_train,
                test_bars=n_test,
                study=fold_study.name,
                n_trials=int(fold_study.n_trials),
                best_params=params,
                best_value=_study_value(fold_study) if params is not None else None,
                dsr=fold_study.dsr,
                pbo=fold_study.pbo,
                in_sample=in_sample,
                out_of_sample=oos.metrics,
                efficiency=efficiency(
                    annualised_return(oos.metrics["total_return"], n_test, tf),
                    annualised_return(in_sample["total_return"], n_train, tf),
                ),
            )
        )
        best_text = "none feasible, flat" if params is None else json.dumps(params, default=str)
        say(
            f"fold {fold.number}: best {best_text}; in-sample return "
            f"{in_sample['total_return']:.2%}, out-of-sample {oos.metrics['total_return']:.2%}"
        )

    equity, scales = stitch_equity([o.equity for o in oos_runs], cash)
    for res, scale in zip(results, scales, strict=True):
        res.scale = scale
    trades = pd.concat(
        [o.trades.assign(fold=r.number) for o, r in zip(oos_runs, results, strict=True)],
        ignore_index=True,
    )
    if trades.empty:
        trades = pd.DataFrame(columns=[*TRADE_COLUMNS, "fold"])
    scale_of = np.repeat(scales, [len(o.trades) for o in oos_runs])
    metrics = _metrics(
        equity.to_numpy(),
        cash,
        tf,
        trades["pnl"].to_numpy(dtype=np.float64) * scale_of,
        trades["return"].to_numpy(dtype=np.float64),
        sum(o.metrics["fees"] * s for o, s in zip(oos_runs, scales, strict=True)),
        sum(o.metrics["funding"] * s for o, s in zip(oos_runs, scales, strict=True)),
        sum(o.bars_in_market for o in oos_runs),
    )
    is_annual = [annualised_return(r.in_sample["total_return"], r.train_bars, tf) for r in results]
    total_eff = efficiency(
        annualised_return(metrics["total_return"], len(equity), tf),
        float(np.mean(is_annual)) if is_annual else math.nan,
    )
    result = WalkForwardResult(
        name=name,
        strategy=strategy_cls.name,
        symbol=symbol,
        objectives=objective_names or [str(o) for o in objectives],
        train=_spec(train),
        test=_spec(test),
        step=_spec(test if step is None else step),
        anchored=anchored,
        folds=results,
        equity=equity,
        trades=trades,
        metrics=metrics,
        efficiency=total_eff,
        elapsed_s=time.perf_counter() - started,
        config={
            "trials": trials,
            "sampler": sampler,
            "seed": seed,
            "min_trades": min_trades,
            "space": _plain(space),
            "backtest": _plain(backtest_options),
            "data": _plain(data_options),
            "storage": storage,
        },
    )
    if save:
        result.save()
    return result


def _spec(value: WindowSpec) -> str | int:
    """A window as the user wrote it: a duration string or a bar count."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    return value if isinstance(value, str) else str(value)


def _in_sample(
    train_frame: pd.DataFrame,
    strategy: str | type[Strategy],
    params: dict[str, Any] | None,
    backtest_options: dict[str, Any],
) -> dict[str, float]:
    """Metrics of the best parameters on the train window (what the optimiser saw)."""
    if params is None:
        flat = np.full(len(train_frame), float(backtest_options.get("cash", 10_000.0)))
        tf = bars_from_frame(train_frame).timeframe_ns
        empty = np.zeros(0)
        return _metrics(flat, float(flat[0]), tf, empty, empty, 0.0, 0.0, 0)
    result: BacktestResult = Backtest(train_frame, strategy, **{**backtest_options, **params}).run()
    return dict(result.metrics)


def _plain(value: Any) -> Any:
    """A JSON-ready copy (strings for anything exotic, e.g. a funding Series)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if not isinstance(value, pd.Series) else f"<series of {len(value)}>"


def _reporter(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda _message: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda message: console.print(message, highlight=False, soft_wrap=True)
