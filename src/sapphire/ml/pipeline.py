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
from dataclasses import dataclass, field, fields, replace
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
    #: choose `features.frac_diff` by ADF on each training window: every CV split's training
    #: bars, the final fit's, every walk-forward block's (never on bars a split tests)
    frac_diff_auto: bool = False
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
    warmup: int = 0  # feature warm-up bars before the first row

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
    warmup = features.warmup(bars.timeframe_ns)
    keep = (labels.t0 >= warmup) & np.isfinite(labels.y)
    if not keep.any():
        raise ValueError(
            f"too little data to train: no labelled rows after the feature warm-up of {warmup} "
            f"bars and the label horizon of {label.horizon}: the data has {len(bars)} bars; "
            "use more data or a shorter --horizon"
        )
    kept = Labels(
        t0=labels.t0[keep], t1=labels.t1[keep], y=labels.y[keep],
        weight=labels.weight[keep], ret=labels.ret[keep], task=labels.task,
    )  # fmt: skip
    X = X_all.iloc[kept.t0]
    return Dataset(X=X, labels=kept, n_bars=len(bars), warmup=warmup)


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


#: the fewest training rows a CV split (or a walk-forward block) fits a model on
MIN_TRAIN_ROWS = 50


def _class_counts(y: NDArray[np.float64]) -> str:
    values, counts = np.unique(y, return_counts=True)
    return ", ".join(f"{v:g} ({c} rows)" for v, c in zip(values, counts, strict=True)) or "none"


def check_trainable(dataset: Dataset, config: TrainConfig, splits: list[Any]) -> None:
    """Refuse, with the counts and what to change, data too short for the recipe: too few
    labelled rows, a single label class, or a CV split whose training rows have either."""
    lab = dataset.labels
    label = config.label
    context = (
        f"{dataset.n_bars} bars gave {len(dataset)} labelled rows (label {label.kind}, "
        f"horizon {label.horizon}, after a feature warm-up of {dataset.warmup} bars)"
    )
    classification = lab.task == "classification"
    advice = "Use more data (an earlier --start or a longer file), a shorter --horizon"
    if classification:
        advice += " or, for barrier labels, narrower --pt/--sl barriers (more touches)"
    if len(dataset) < MIN_TRAIN_ROWS * 2:
        raise ValueError(
            f"too little data to train: {context}; at least {MIN_TRAIN_ROWS * 2} are needed. "
            f"{advice}"
        )
    if classification and np.unique(lab.y).size < 2:
        raise ValueError(
            f"too little data to train: {context}, all of one label class: "
            f"{_class_counts(lab.y)}; a classifier needs at least 2 classes. "
            f"{advice}"
        )
    every_class = np.unique(lab.y) if classification else np.empty(0)
    for k, (train_pos, _test_pos) in enumerate(splits):
        y = lab.y[train_pos]
        missing = np.setdiff1d(every_class, y)
        if len(train_pos) < MIN_TRAIN_ROWS or missing.size:
            raise ValueError(
                f"too little data to train: {context}, label classes {_class_counts(lab.y)}; "
                f"CV split {k} of {len(splits)} keeps {len(train_pos)} training rows after "
                f"purging (label classes: {_class_counts(y)}), and each needs at least "
                f"{MIN_TRAIN_ROWS} rows"
                + (" holding every label class" if classification else "")
                + f". {advice}"
            )


def training_segments(t0: NDArray[np.int64], train_pos: NDArray[np.int64]) -> list[tuple[int, int]]:
    """The bar ranges (first, last) of a split's training rows: one per run of consecutive
    rows, so that no range holds a bar of a test or purged row."""
    pos = np.sort(np.asarray(train_pos, dtype=np.int64))
    if pos.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(pos) != 1) + 1
    return [(int(t0[run[0]]), int(t0[run[-1]])) for run in np.split(pos, breaks)]


def cross_validate(
    dataset: Dataset,
    config: TrainConfig,
    progress: Progress | None = None,
    *,
    bars: Bars | None = None,
) -> CvResult:
    """Purged (CPCV or k-fold) cross-validation: out-of-sample scores, per fold and per path.

    With `config.frac_diff_auto` each split chooses its fractional-differentiation order on
    its own training bars (`bars`, the dataset's bars, are then required)."""
    lab = dataset.labels
    n = len(dataset)
    splitter = _splitter(config)
    splits = list(splitter.split(lab.t0, lab.t1))
    check_trainable(dataset, config, splits)
    if config.frac_diff_auto and bars is None:
        raise ValueError("cross_validate: frac_diff_auto needs the bars (bars=...)")
    predictions: list[Any] = []
    total = np.zeros(n)
    count = np.zeros(n)
    rows: list[dict[str, Any]] = []
    for k, (train_pos, test_pos) in enumerate(splits):
        if progress is not None:
            progress("cv", k, len(splits))
        X, chosen = dataset.X, None
        if config.frac_diff_auto and bars is not None:
            segments = training_segments(lab.t0, train_pos)
            X, chosen = config.features.refit_frac_diff(X, bars, lab.t0, segments)
        model = _fit(config, X.iloc[train_pos], lab, train_pos)
        X_test = X.iloc[test_pos]
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
        if config.frac_diff_auto:
            row["frac_diff"] = "off" if chosen is None else f"{chosen:g}"
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
        result = Backtest(
            bars, cls, fee=config.fee, size=1.0, size_mode="equity", leverage=None, **rule
        ).run()  # all of equity on each signal, no margin limit, whatever the run defaults
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
    if config.frac_diff_auto:  # the final model's order, chosen on all its training bars
        config = replace(config, features=config.features.with_frac_diff(bars))
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
    cv = cross_validate(dataset, config, progress, bars=bars)
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
