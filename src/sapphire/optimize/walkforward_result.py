"""What a walk-forward produced (per fold and stitched), saved as JSON under
`$SAPPHIRE_HOME/walkforward/` and loaded back for `sapphire optimize report`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sapphire.encoding import to_json

__all__ = [
    "FOLD_METRICS",
    "FoldResult",
    "WalkForwardResult",
    "load_walkforward",
    "walkforward_path",
]

FOLD_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")


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
    #: a fixed model's training window against this fold's windows: {model, train_start,
    #: train_end (the model's), train_window_bars, test_window_bars (bars of the fold's
    #: train and test windows inside it)}; None when the strategy scores no fitted model
    #: or no bar of the fold lies inside its training window
    model_overlap: dict[str, Any] | None = None
    #: what a reader must know about this fold (its test window is in-sample for the model)
    warnings: list[str] = field(default_factory=list)

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
            "model_overlap": self.model_overlap,
            "warnings": list(self.warnings),
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
    #: the out-of-sample backtests' fees, size mode and size, leverage and intrabar model
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """The folds' caveats (an out-of-sample window scored by a model trained on it)."""
        return [w for f in self.folds for w in f.warnings]

    def caption(self) -> str | None:
        """`settings_caption` of the out-of-sample backtests (None when not stored)."""
        from sapphire.backtest.result import settings_caption

        return settings_caption(self.settings) if self.settings else None

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
            "warnings": self.warnings,
            "settings": dict(self.settings),
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
        target.write_text(to_json(payload), encoding="utf-8")
        return target


def _times_as_ns(trades: pd.DataFrame) -> pd.DataFrame:
    out = trades.copy()
    for col in ("entry_time", "exit_time"):
        if col in out and len(out):
            out[col] = pd.DatetimeIndex(out[col]).as_unit("ns").asi8
    return out


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
            model_overlap=f.get("model_overlap"),
            warnings=list(f.get("warnings") or []),
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
        settings=raw.get("settings") or {},
    )
