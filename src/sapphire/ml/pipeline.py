"""Train and evaluate a model: features -> labels -> purged cross-validation -> final fit.

```python
from sapphire.ml.pipeline import TrainConfig, train

result = train(bars, TrainConfig())  # default features, triple-barrier labels, LightGBM, CPCV
result.cv_metrics  # mean fold scores, IC, and the trading metrics of the CPCV paths
version = result.register("btc-tb")  # an immutable registry version, alias `candidate`
```

Every score here is out of sample: each CV split fits a fresh model (preprocessing
included) on its purged, embargoed training rows only and predicts its test rows. The
trading metrics come from backtesting the out-of-sample scores through the `ml` strategy's
signal rule, net of fees: one backtest per CPCV path (each path is a full,
non-overlapping out-of-sample history), so they come as a distribution.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.encoding import jsonable
from sapphire.ml.cv import CombinatorialPurgedCV, PurgedKFold
from sapphire.ml.features import CALENDAR_COLUMNS, FeatureSpec, build_features
from sapphire.ml.labels import Labels, LabelSpec
from sapphire.ml.models import Model, ModelSpec, make_model
from sapphire.ml.scores import classification_scores, information_coefficient, regression_scores
from sapphire.strategy.base import Bars

CvKind = Literal["cpcv", "purged_kfold"]
Progress = Callable[[str, int, int], None]

__all__ = [
    "CvResult",
    "Dataset",
    "TrainConfig",
    "TrainResult",
    "code_version",
    "cross_validate",
    "data_fingerprint",
    "load_bars",
    "make_dataset",
    "path_metrics",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """The whole recipe of a model: features, label, estimator, validation and costs."""

    features: FeatureSpec = field(default_factory=FeatureSpec)
    label: LabelSpec = field(default_factory=LabelSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    cv: CvKind = "cpcv"
    n_groups: int = 6
    n_test_groups: int = 2
    embargo: float = 0.01
    seed: int = 0
    importance: bool = True
    #: the signal rule and costs used for the CV trading metrics (see MLStrategy)
    threshold: float = 0.1
    exit_threshold: float = 0.0
    short: bool = True
    fee: float = 0.0005

    def __post_init__(self) -> None:
        if self.cv not in ("cpcv", "purged_kfold"):
            raise ValueError(f"cv={self.cv!r} is invalid: expected 'cpcv' or 'purged_kfold'")
        if self.cv == "cpcv" and not 1 <= self.n_test_groups < self.n_groups:
            raise ValueError(
                f"n_test_groups={self.n_test_groups} is invalid: expected 1 <= it < "
                f"n_groups ({self.n_groups})"
            )
        if self.n_groups < 2:
            raise ValueError(f"n_groups={self.n_groups} is invalid: expected at least 2")
        if not 0 <= self.embargo < 0.5:
            raise ValueError(f"embargo={self.embargo} is invalid: expected a fraction in [0, 0.5)")
        if not self.fee >= 0:
            raise ValueError(f"fee={self.fee} is invalid: expected >= 0")
        if self.threshold < 0 or self.exit_threshold > self.threshold:
            raise ValueError(
                f"threshold={self.threshold}, exit_threshold={self.exit_threshold} are invalid: "
                "expected 0 <= threshold and exit_threshold <= threshold"
            )

    def to_mapping(self) -> dict[str, Any]:
        """Return the recipe as plain JSON-able data (round-trips through from_mapping)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_mapping() if hasattr(value, "to_mapping") else value
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a recipe from plain data; unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown training option {unknown[0]!r}; expected one of "
                f"{', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = dict(data)
        if isinstance(kw.get("features"), Mapping):
            kw["features"] = FeatureSpec.from_mapping(kw["features"])
        if isinstance(kw.get("label"), Mapping):
            kw["label"] = LabelSpec.from_mapping(kw["label"])
        if isinstance(kw.get("model"), Mapping):
            kw["model"] = ModelSpec.from_mapping(kw["model"])
        elif isinstance(kw.get("model"), str):
            kw["model"] = ModelSpec.parse(kw["model"])
        return cls(**kw)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Feature rows and their labels, row i of `X` belonging to label i (bar `labels.t0[i]`)."""

    X: pd.DataFrame
    labels: Labels
    n_bars: int

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True, eq=False)
class CvResult:
    """Out-of-sample predictions and scores of one cross-validation."""

    folds: pd.DataFrame  # one row per split: sizes and scores
    oos: NDArray[np.float64]  # per dataset row: mean out-of-sample score (NaN: never tested)
    paths: list[NDArray[np.float64]]  # per backtest path: per dataset row score
    metrics: dict[str, float]


@dataclass(eq=False)
class TrainResult:
    """A fitted model with its recipe, lineage and out-of-sample evidence."""

    model: Model
    config: TrainConfig
    cv: CvResult
    importance: pd.DataFrame | None
    lineage: dict[str, Any]
    metrics: dict[str, Any]
    dataset: Dataset
    version: Any = None  # the registry ModelVersion once registered

    def register(self, name: str, registry: Any = None, *, alias: str | None = "candidate") -> Any:
        """Store the model as a new immutable registry version (alias `candidate`)."""
        from sapphire.ml.strategy import default_registry

        reg = registry if registry is not None else default_registry()
        self.version = reg.register(
            name, self.model, lineage=self.lineage, metrics=self.metrics, alias=alias
        )
        return self.version


def load_bars(source: Any, *, start: Any = None, end: Any = None) -> Bars:
    """Bars from `Bars`, a DataFrame, a file, a catalog symbol or "sample" (the bundled month)."""
    if isinstance(source, Bars):
        return source
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.data import load_ohlcv

    frame, _report = load_ohlcv(source, start=start, end=end)
    if len(frame) < 2:
        raise ValueError(f"{source}: need at least 2 bars, got {len(frame)}")
    return bars_from_frame(frame)


def data_fingerprint(bars: Bars) -> dict[str, Any]:
    """The data range and a SHA-256 over the bars' times and OHLCV (lineage)."""
    h = hashlib.sha256()
    for arr in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return {
        "start": pd.Timestamp(int(bars.time[0]), tz="UTC").isoformat(),
        "end": pd.Timestamp(int(bars.time[-1]), tz="UTC").isoformat(),
        "rows": len(bars),
        "timeframe_ns": int(bars.timeframe_ns),
        "sha256": h.hexdigest(),
    }


def code_version() -> str:
    """Sapphire's version, plus the git commit when running from a checkout."""
    from sapphire import __version__

    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return __version__
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return f"{__version__}+{commit}" if commit else __version__


def make_dataset(
    bars: Bars,
    features: FeatureSpec,
    label: LabelSpec,
    others: Mapping[str, Bars] | None = None,
    *,
    side: NDArray[np.float64] | None = None,
) -> Dataset:
    """Features and labels on the same rows: label events after the feature warm-up."""
    X_all = build_features(features, bars, others)
    labels = label.make(bars, side=side)
    keep = (labels.t0 >= features.warmup(bars.timeframe_ns)) & np.isfinite(labels.y)
    if not keep.any():
        raise ValueError(
            f"no labelled rows after the feature warm-up of {features.warmup(bars.timeframe_ns)} "
            f"bars: the data has {len(bars)} bars"
        )
    kept = Labels(
        t0=labels.t0[keep], t1=labels.t1[keep], y=labels.y[keep],
        weight=labels.weight[keep], ret=labels.ret[keep], task=labels.task,
    )  # fmt: skip
    X = X_all.iloc[kept.t0]
    return Dataset(X=X, labels=kept, n_bars=len(bars))


def fit_model(
    spec: ModelSpec, X: pd.DataFrame, labels: Labels, rows: NDArray[np.int64], seed: int = 0
) -> Model:
    """Fit a fresh model on `rows` (weighted by uniqueness); calendar features are exempt
    from its out-of-distribution gate (a short window cannot cover every hour and day)."""
    model = make_model(spec, labels.task, seed=seed)
    model.fit(X, labels.y[rows], sample_weight=labels.weight[rows])
    calendar = [c for c in CALENDAR_COLUMNS if c in model.features]
    if calendar:
        model.exempt_from_ood(calendar)
    return model


def _fit(config: TrainConfig, X: pd.DataFrame, labels: Labels, rows: NDArray[np.int64]) -> Model:
    return fit_model(config.model, X, labels, rows, config.seed)


def _splitter(config: TrainConfig) -> CombinatorialPurgedCV | PurgedKFold:
    if config.cv == "cpcv":
        return CombinatorialPurgedCV(config.n_groups, config.n_test_groups, config.embargo)
    return PurgedKFold(config.n_groups, config.embargo)


def _fold_scores(
    model: Model, X: pd.DataFrame, y: NDArray[np.float64], score: NDArray[np.float64], ret: Any
) -> dict[str, float]:
    out: dict[str, float] = {}
    if model.task == "classification":
        out.update(
            classification_scores(y, score, proba=model.predict_proba(X), classes=model.classes)
        )
    else:
        out.update(regression_scores(y, score))
    ic = information_coefficient(score, ret)
    out["ic"], out["rank_ic"] = ic["ic"], ic["rank_ic"]
    return out


def cross_validate(
    dataset: Dataset, config: TrainConfig, progress: Progress | None = None
) -> CvResult:
    """Purged (CPCV or k-fold) cross-validation: out-of-sample scores, per fold and per path."""
    lab = dataset.labels
    n = len(dataset)
    splitter = _splitter(config)
    splits = list(splitter.split(lab.t0, lab.t1))
    predictions: list[Any] = []
    total = np.zeros(n)
    count = np.zeros(n)
    rows: list[dict[str, Any]] = []
    for k, (train_pos, test_pos) in enumerate(splits):
        if progress is not None:
            progress("cv", k, len(splits))
        model = _fit(config, dataset.X.iloc[train_pos], lab, train_pos)
        X_test = dataset.X.iloc[test_pos]
        score = model.predict(X_test)
        predictions.append(score)
        total[test_pos] += score
        count[test_pos] += 1
        row: dict[str, Any] = {
            "split": k,
            "train_rows": len(train_pos),
            "test_rows": len(test_pos),
            "test_start": dataset.X.index[test_pos[0]],
            "test_end": dataset.X.index[test_pos[-1]],
        }
        if isinstance(splitter, CombinatorialPurgedCV):
            row["test_groups"] = ",".join(map(str, splitter.combinations[k]))
        row.update(_fold_scores(model, X_test, lab.y[test_pos], score, lab.ret[test_pos]))
        rows.append(row)
    if progress is not None:
        progress("cv", len(splits), len(splits))
    oos = np.full(n, np.nan)
    tested = count > 0
    oos[tested] = total[tested] / count[tested]
    if isinstance(splitter, CombinatorialPurgedCV):
        paths = list(splitter.assemble_paths(lab.t0, list(predictions)))
    else:
        paths = [oos.copy()]  # k-fold: each row is tested exactly once, one path
    folds = pd.DataFrame(rows)
    metric_cols = [c for c in folds.columns if folds[c].dtype.kind == "f"]
    metrics = {c: float(folds[c].mean()) for c in metric_cols}
    metrics["n_splits"] = float(len(splits))
    metrics["n_paths"] = float(len(paths))
    return CvResult(folds=folds, oos=oos, paths=paths, metrics=metrics)


def path_metrics(
    bars: Bars,
    rows: NDArray[np.int64],
    scores: list[NDArray[np.float64]],
    config: TrainConfig,
    *,
    primary: Any = None,
) -> pd.DataFrame:
    """Backtest each out-of-sample score path through the ml signal rule, net of fees (for
    a meta model: the primary's entries where P(profitable) >= 0.5)."""
    from sapphire.backtest import Backtest
    from sapphire.ml.strategy import scores_strategy

    out = []
    for k, path in enumerate(scores):
        full = np.full(len(bars), np.nan)
        full[rows] = path
        if primary is not None:
            cls = scores_strategy(full, primary=primary)
            rule: dict[str, Any] = {"threshold": 0.5}
        else:
            cls = scores_strategy(full)
            rule = {"threshold": config.threshold, "exit_threshold": config.exit_threshold,
                    "short": config.short}  # fmt: skip
        result = Backtest(bars, cls, fee=config.fee, size=1.0, size_mode="equity", **rule).run()
        m = result.metrics
        out.append({
            "path": k,
            "sharpe": m["sharpe"],
            "total_return": m["total_return"],
            "max_drawdown": m["max_drawdown"],
            "n_trades": m["n_trades"],
            "win_rate": m["win_rate"],
            "fees": m["fees"],
        })  # fmt: skip
    return pd.DataFrame(out)


REFERENCE_ROWS = 10_000


def _reference_sample(X: pd.DataFrame) -> pd.DataFrame:
    """The last REFERENCE_ROWS training rows, consecutive: drift checks slide windows over
    them to calibrate their alert levels (sapphire.ml.live)."""
    return X.iloc[-REFERENCE_ROWS:].copy()


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-able dicts (times as ISO text, NaN as None)."""
    return list(jsonable(frame.to_dict(orient="records"), "rows"))


def train(
    bars: Bars,
    config: TrainConfig | None = None,
    *,
    others: Mapping[str, Bars] | None = None,
    sources: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    primary: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Cross-validate the recipe on `bars`, then fit the final model on every labelled row.

    `others` are the other instruments the feature set names; `sources` says where they
    came from (file or catalog symbol), recorded in the lineage so the `ml` strategy can
    load them again. Meta labels (`label.kind == "meta"`) need `primary`, the strategy
    whose entries the model learns to filter: `{"strategy": NAME, "params": {...}}`.
    """
    config = config or TrainConfig()
    side = None
    primary_sig = None
    if config.label.kind == "meta":
        if not primary:
            raise ValueError("meta labels need a primary strategy: primary={'strategy': NAME}")
        from sapphire.ml.strategy import primary_side, primary_signals

        primary = {"strategy": str(primary["strategy"]), "params": dict(primary.get("params", {}))}
        primary_sig = primary_signals({"primary": primary}, bars)
        side = primary_side(primary_sig, len(bars))
    missing = [i for i in config.features.instruments if i != "self" and i not in (others or {})]
    if missing:
        raise ValueError(f"the feature set names instrument {missing[0]!r} but no data was given")
    dataset = make_dataset(bars, config.features, config.label, others, side=side)
    cv = cross_validate(dataset, config, progress)
    lab = dataset.labels
    paths = path_metrics(bars, lab.t0, cv.paths, config, primary=primary_sig)
    metrics: dict[str, Any] = {"cv": dict(cv.metrics)}
    for col in ("sharpe", "total_return", "max_drawdown", "n_trades"):
        metrics["cv"][f"path_{col}_mean"] = float(paths[col].mean())
        metrics["cv"][f"path_{col}_std"] = float(paths[col].std(ddof=0))
    importance = None
    if config.importance:
        if progress is not None:
            progress("importance", 0, 1)
        from sapphire.ml.explain import permutation_importance_cv

        importance = permutation_importance_cv(
            config.model, dataset.X, lab, PurgedKFold(3, config.embargo),
            n_repeats=2, seed=config.seed,
        )  # fmt: skip
    if progress is not None:
        progress("fit", 0, 1)
    model = _fit(config, dataset.X, lab, np.arange(len(dataset)))
    # the training distribution drift checks compare live feature rows with (sapphire.ml.live)
    model.reference = _reference_sample(dataset.X)
    if progress is not None:
        progress("fit", 1, 1)
    lineage = {
        "recipe": config.to_mapping(),
        "data": data_fingerprint(bars),
        "rows": len(dataset),
        "sources": dict(sources or {}),
        "code_version": code_version(),
        "features": list(dataset.X.columns),
    }
    if primary is not None:
        lineage["primary"] = primary
    if importance is not None:
        metrics["importance"] = {
            str(f): float(v)
            for f, v in zip(importance["feature"][:20], importance["importance"][:20], strict=True)
        }
    from sapphire.ml.explain import shap_importance

    shap = shap_importance(model, model.reference, seed=config.seed)
    metrics["shap"] = {str(f): float(v) for f, v in shap.head(20).items()}
    metrics["paths"] = _records(paths)
    metrics["folds"] = _records(cv.folds)
    return TrainResult(
        model=model, config=config, cv=cv, importance=importance,
        lineage=lineage, metrics=metrics, dataset=dataset,
    )  # fmt: skip
