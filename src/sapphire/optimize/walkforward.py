"""Walk-forward analysis: optimise on each train window, trade the next test window.

The data is cut into folds (`folds.make_folds`). Each fold optimises the strategy's
parameters on its train window (`sapphire.optimize.optimize`, one stored study per fold
named `<name>-fold<k>`), then backtests the best parameters out of sample on the test
window that follows (`out_of_sample`, which states the warm-up rule). The test windows'
equity curves are chained into one out-of-sample equity curve and their trades into one
trade list; in-sample and out-of-sample metrics are kept per fold, with the walk-forward
efficiency (`walkforward_result`).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.backtest.runner import Backtest, bars_from_frame
from sapphire.engine.config import READ_FIELDS
from sapphire.optimize.folds import Fold, WindowSpec, make_folds, window_spec
from sapphire.optimize.out_of_sample import (
    OutOfSample,
    annualised_return,
    efficiency,
    oos_metrics,
    out_of_sample_backtest,
    stitch_equity,
)
from sapphire.optimize.walkforward_result import (
    FOLD_METRICS,
    FoldResult,
    WalkForwardResult,
    load_walkforward,
    walkforward_path,
)
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.registry import get_strategy

if TYPE_CHECKING:
    from sapphire.optimize.study_result import StudyResult

__all__ = [
    "DATA_OPTIONS",
    "FOLD_METRICS",
    "Fold",
    "FoldResult",
    "OutOfSample",
    "WalkForwardResult",
    "WindowSpec",
    "annualised_return",
    "efficiency",
    "load_walkforward",
    "make_folds",
    "out_of_sample_backtest",
    "stitch_equity",
    "walk_forward",
    "walkforward_path",
]

# Keyword arguments of `Backtest` that choose the bars rather than simulate them: the
# walk-forward loads the data once with them and cuts the folds from that frame.
DATA_OPTIONS = ("symbol", "start", "end", "venue", "timeframe", "resample", "gaps", *READ_FIELDS)


def _load_frame(data: Any, options: dict[str, Any]) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """Load the bars once (as `Backtest` would) and return frame, symbol, instrument meta."""
    from sapphire.data import Catalog, ReadOptions, load_ohlcv, resample_ohlcv
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
        read=ReadOptions(**{name: options.get(name) for name in READ_FIELDS}),
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
            else _in_sample(train_frame, strategy, params, backtest_options)
        )
        # the fixed strategy parameters too: a flat fold (no feasible trial) still runs
        # the strategy (an `ml` strategy needs its model to say what it scored)
        oos = out_of_sample_backtest(frame, strategy, params, fold, backtest_options)
        oos_runs.append(oos)
        n_train, n_test = fold.train_end - fold.train_start, fold.test_end - fold.test_start
        overlap, fold_warnings = model_overlap(oos.in_sample or fold_study.in_sample, times, fold)
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
                model_overlap=overlap,
                warnings=fold_warnings,
            )
        )
        for warning in fold_warnings:
            say(f"[yellow]warning:[/] {warning}")
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
    metrics = oos_metrics(
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
        train=window_spec(train),
        test=window_spec(test),
        step=window_spec(test if step is None else step),
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
        settings=next((o.settings for o in oos_runs if o.settings), {}),
    )
    if save:
        result.save()
    return result


def model_overlap(
    window: Mapping[str, Any] | None, times: pd.DatetimeIndex, fold: Fold
) -> tuple[dict[str, Any] | None, list[str]]:
    """The bars of `fold`'s train and test windows (open times `times`) inside a fixed
    model's training window (`window`: a backtest's `in_sample`, which names the model
    and its window), and the fold's warning when its test window has any: a fold scored
    by a model trained on its test bars is not out of sample."""
    if window is None:
        return None, []
    lo, hi = pd.Timestamp(window["train_start"]), pd.Timestamp(window["train_end"])
    inside = np.asarray((times >= lo) & (times <= hi))
    train_n = int(inside[fold.train_start : fold.train_end].sum())
    test = inside[fold.test_start : fold.test_end]
    test_n = int(test.sum())
    if not train_n and not test_n:
        return None, []
    overlap = {
        "model": window["model"], "train_start": window["train_start"],
        "train_end": window["train_end"], "train_window_bars": train_n,
        "test_window_bars": test_n,
    }  # fmt: skip
    if not test_n:
        return overlap, []
    hits = times[fold.test_start : fold.test_end][test]
    warning = (
        f"fold {fold.number}: {test_n} of {len(test)} out-of-sample bars (from "
        f"{hits[0].isoformat()} to {hits[-1].isoformat()}) are inside the training window of "
        f"model {window['model']} ({window['train_start']} → {window['train_end']}): this "
        "fold is in-sample for the model, not out of sample"
    )
    return overlap, [warning]


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
        return oos_metrics(flat, float(flat[0]), tf, empty, empty, 0.0, 0.0, 0)
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
