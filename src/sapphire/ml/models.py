"""One model interface for LightGBM, XGBoost and any scikit-learn estimator.

A `Model` holds the preprocessing (fitted on training rows only), the estimator and an
out-of-distribution gate, and saves to one pickled artefact identified by its sha256.

Conventions:
- Classes are the sorted distinct training targets; estimators see them encoded 0..K-1 and
  `predict_proba` columns follow `Model.classes`.
- `predict` returns the score a strategy trades: the prediction for regression, and for
  classification the expected class value sum_k P(class_k) * class_k, i.e. P(+1) - P(-1)
  for classes {-1, 0, 1} or {-1, 1} and P(1) for {0, 1} (meta-labels).
- Tree models see NaN as missing; scikit-learn models get a median imputer and a standard
  scaler (a `Pipeline`).
- `ood` flags a row when any feature's robust z-score |x - median| / (IQR / 1.349) exceeds
  `ood_threshold` (default 10; the standard deviation stands in when the IQR is 0, and a
  feature constant in training is not checked), when it is +-inf, or when it is NaN but
  was never NaN in training.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from numpy.typing import ArrayLike, NDArray

Task = Literal["classification", "regression"]
TASKS = ("classification", "regression")
FORMAT = "sapphire.ml.Model/1"
DEFAULT_OOD_THRESHOLD = 10.0


@cache
def _sklearn_estimators() -> dict[str, tuple[type | None, type | None]]:
    """Every scikit-learn classifier and regressor by class name: (classifier, regressor)."""
    from sklearn.utils.discovery import all_estimators

    found: dict[str, tuple[type | None, type | None]] = {}
    for name, cls in all_estimators(type_filter="regressor"):
        found[name] = (None, cls)
    for name, cls in all_estimators(type_filter="classifier"):
        found[name] = (cls, None)
    return found


def _param_names(cls: type) -> set[str]:
    """Constructor parameter names of a scikit-learn estimator class."""
    return set(cls._get_param_names())  # type: ignore[attr-defined]


def _estimator_classes(kind: str) -> tuple[type | None, type | None]:
    """(classifier class, regressor class) for a model kind; None where it has none."""
    if kind == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier, lightgbm.LGBMRegressor
    if kind == "xgboost":
        import xgboost

        return xgboost.XGBClassifier, xgboost.XGBRegressor
    if kind.startswith("sklearn:"):
        name = kind.removeprefix("sklearn:")
        classes = _sklearn_estimators().get(name)
        if classes is None:
            raise ValueError(
                f"model kind {kind!r}: {name!r} is not a scikit-learn classifier or regressor "
                "(e.g. sklearn:LogisticRegression, sklearn:RandomForestClassifier, sklearn:Ridge)"
            )
        return classes
    raise ValueError(
        f"model kind {kind!r} is unknown: expected 'lightgbm', 'xgboost' or 'sklearn:<Estimator>'"
    )


@cache
def _allowed_params(kind: str) -> frozenset[str]:
    """Parameter names a model kind accepts."""
    names: set[str] = set()
    for cls in _estimator_classes(kind):
        if cls is not None:
            sk = kind.startswith("sklearn:")
            names.update(_param_names(cls) if sk else cls().get_params())
    if kind == "lightgbm":  # LightGBM also takes its native parameter names and aliases
        import lightgbm.basic

        aliases = getattr(lightgbm.basic, "_ConfigAliases", None)
        if aliases is not None and hasattr(aliases, "_get_all_param_aliases"):
            for name, alias_set in aliases._get_all_param_aliases().items():
                names.add(name)
                names.update(alias_set)
    return frozenset(names)


def _parse_value(text: str) -> Any:
    """A parameter value from text: YAML scalars and lists (200, 0.1, true, null, [64, 32])."""
    for number in (int, float):  # YAML 1.1 would read 1e-3 as a string
        try:
            return number(text)
        except ValueError:
            pass
    value = yaml.safe_load(text)
    return text if isinstance(value, dict) else value


def _split_params(text: str) -> list[str]:
    """Split 'a=1,b=[2,3]' on the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class ModelSpec:
    """Which estimator to train and its parameters (unknown names are rejected)."""

    kind: str = "lightgbm"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str):
            raise ValueError(f"model kind {self.kind!r} is invalid: expected a string")
        if not isinstance(self.params, Mapping):
            raise ValueError(f"model params {self.params!r} are invalid: expected a mapping")
        allowed = _allowed_params(self.kind)
        for name in self.params:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else "see the estimator's docs"
                raise ValueError(f"model {self.kind!r}: unknown parameter {name!r}; {hint}")
        object.__setattr__(self, "params", dict(self.params))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ModelSpec:
        """Build from {"kind": ..., "params": {...}}; unknown keys are rejected."""
        unknown = set(m) - {"kind", "params"}
        if unknown:
            raise ValueError(f"model spec: unknown keys {sorted(unknown)}; expected kind, params")
        return cls(m.get("kind", "lightgbm"), dict(m.get("params") or {}))

    def to_mapping(self) -> dict[str, Any]:
        """JSON-able form that `from_mapping` reads back."""
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse 'lightgbm', 'xgboost:n_estimators=200,max_depth=4', 'sklearn:Ridge:alpha=2'."""
        text = text.strip()
        head, _, rest = text.partition(":")
        if head == "sklearn":
            name, _, rest = rest.partition(":")
            head = f"sklearn:{name}"
        params: dict[str, Any] = {}
        for part in _split_params(rest):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"model spec {text!r}: {part!r} is not name=value")
            params[key.strip()] = _parse_value(value.strip())
        return cls(head, params)

    def __str__(self) -> str:
        args = ",".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in sorted(self.params.items())
        )
        return f"{self.kind}:{args}" if args else self.kind


def _as_spec(spec: ModelSpec | str) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)


class Model:
    """One fitted model: preprocessing (fitted on training rows only) + estimator + OOD gate."""

    def __init__(
        self,
        spec: ModelSpec | str = "lightgbm",
        task: str = "classification",
        *,
        seed: int = 0,
        n_jobs: int = 1,
        ood_threshold: float = DEFAULT_OOD_THRESHOLD,
    ) -> None:
        self.spec = _as_spec(spec)
        if task not in TASKS:
            raise ValueError(f"task={task!r} is invalid: expected one of {TASKS}")
        classifier, regressor = _estimator_classes(self.spec.kind)
        if (classifier if task == "classification" else regressor) is None:
            raise ValueError(f"model {self.spec.kind!r} cannot do task={task!r}")
        if classifier is not None and task == "classification":
            try:
                probe = classifier(**self.spec.params)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"model {str(self.spec)!r} cannot be built: {exc}") from None
            if not hasattr(probe, "predict_proba"):
                raise ValueError(
                    f"model {self.spec.kind!r} has no predict_proba: pick a probabilistic "
                    "classifier (e.g. sklearn:LogisticRegression)"
                )
        self.task: Task = "classification" if task == "classification" else "regression"
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.ood_threshold = float(ood_threshold)
        self.features: list[str] = []
        self.classes: NDArray[np.float64] = np.empty(0)
        self.n_train = 0
        self._estimator: Any = None
        self._row: _LightGBMRow | None = None
        self._median = self._scale = np.empty(0)
        self._nan_ok = np.empty(0, dtype=np.bool_)
        #: a sample of training feature rows, saved with the model (drift checks compare with it)
        self.reference: pd.DataFrame | None = None

    def __repr__(self) -> str:
        state = f"{len(self.features)} features" if self.is_fitted else "unfitted"
        return f"Model({str(self.spec)!r}, task={self.task!r}, {state})"

    @property
    def is_fitted(self) -> bool:
        """True once `fit` has run."""
        return self._estimator is not None

    @property
    def estimator(self) -> Any:
        """The fitted estimator (a scikit-learn Pipeline for sklearn kinds)."""
        self._require_fitted()
        return self._estimator

    # --- training -----------------------------------------------------------------

    def _build(self) -> Any:
        cls = _estimator_classes(self.spec.kind)[0 if self.task == "classification" else 1]
        assert cls is not None
        params = dict(self.spec.params)
        defaults: dict[str, Any] = {"random_state": self.seed, "n_jobs": self.n_jobs}
        if self.spec.kind == "lightgbm":
            return cls(**{**defaults, "verbose": -1, "deterministic": True, **params})
        if self.spec.kind == "xgboost":
            return cls(**{**defaults, "tree_method": "hist", **params})
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        names = _param_names(cls)
        # n_jobs=None already means one job in scikit-learn, and some estimators deprecate it
        defaults = {k: v for k, v in defaults.items() if k in names and (k, v) != ("n_jobs", 1)}
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("estimator", cls(**{**defaults, **params})),
            ]
        )

    def fit(self, X: pd.DataFrame, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Model:
        """Fit preprocessing, estimator and OOD statistics on these rows; returns self."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError(f"X must be a DataFrame with feature names, got {type(X).__name__}")
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"X has duplicate feature columns: {dup}")
        bad = [
            c for c, t in zip(names, X.dtypes, strict=True) if not pd.api.types.is_numeric_dtype(t)
        ]
        if bad:
            raise ValueError(f"X columns {bad} are not numeric")
        A = X.to_numpy(dtype=np.float64)
        _check_finite_or_nan(A, names)
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        if target.size != A.shape[0]:
            raise ValueError(f"y holds {target.size} values for {A.shape[0]} rows of X")
        if A.shape[0] < 2:
            raise ValueError(f"cannot fit on {A.shape[0]} row(s)")
        if not np.isfinite(target).all():
            i = int(np.argmax(~np.isfinite(target)))
            raise ValueError(f"y[{i}] = {target[i]} is not finite: drop unlabelled rows first")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if w.size != target.size or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError(
                    f"sample_weight must be {target.size} finite values >= 0 with a positive sum"
                )
        if self.task == "classification":
            classes = np.unique(target)
            if classes.size < 2:
                raise ValueError(f"classification needs at least 2 classes, y holds only {classes}")
            fit_target: NDArray[Any] = np.searchsorted(classes, target).astype(np.int64)
        else:
            classes = np.empty(0)
            fit_target = target
        estimator = self._build()
        if w is None:
            estimator.fit(A, fit_target)
        elif self.spec.kind.startswith("sklearn:"):
            from sklearn.utils.validation import has_fit_parameter

            if not has_fit_parameter(estimator.steps[-1][1], "sample_weight"):
                raise ValueError(f"model {self.spec.kind!r} does not accept sample_weight")
            estimator.fit(A, fit_target, estimator__sample_weight=w)
        else:
            estimator.fit(A, fit_target, sample_weight=w)
        self._estimator, self.features, self.classes = estimator, names, classes
        self._row = None  # the single-row predictor of the previous fit, if any
        self.n_train = A.shape[0]
        self._fit_ood(A)
        return self

    def _fit_ood(self, A: NDArray[np.float64]) -> None:
        self._nan_ok = np.asarray(np.isnan(A).any(axis=0), dtype=np.bool_)
        median = np.zeros(A.shape[1])
        scale = np.full(A.shape[1], np.inf)
        for j in range(A.shape[1]):
            col = A[:, j][~np.isnan(A[:, j])]
            if col.size == 0:
                continue
            q1, q2, q3 = np.percentile(col, [25, 50, 75])
            s = (q3 - q1) / 1.349
            s = s if s > 0 else float(np.std(col))
            median[j], scale[j] = q2, (s if s > 0 else np.inf)
        self._median, self._scale = median, scale

    # --- prediction ---------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self._estimator is None:
            raise ValueError("the model is not fitted: call fit() first")

    def to_matrix(self, X: pd.DataFrame | NDArray[np.float64]) -> NDArray[np.float64]:
        """X as a float64 matrix with the training feature columns, in training order."""
        self._require_fitted()
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.features if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks feature columns {missing[:10]} the model was fitted on")
            return X[self.features].to_numpy(dtype=np.float64)
        A = np.asarray(X, dtype=np.float64)
        if A.ndim == 1:
            A = A.reshape(1, -1)
        if A.ndim != 2 or A.shape[1] != len(self.features):
            raise ValueError(f"X has shape {A.shape}, expected (rows, {len(self.features)})")
        return A

    def _raw_proba(self, A: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities for a float matrix (columns follow `classes`)."""
        kind = self.spec.kind
        if kind == "lightgbm":
            p = self._lightgbm_predict(A)
        elif kind == "xgboost":
            p = self._estimator.get_booster().inplace_predict(A)
        else:
            return np.asarray(self._estimator.predict_proba(A), dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def _lightgbm_predict(self, A: NDArray[np.float64]) -> NDArray[np.float64]:
        # One row (live inference, `predict_row`): LightGBM's single-row fast path on one
        # thread. `Booster.predict` starts an OpenMP team for the row, which costs more
        # than the trees, and on a loaded machine a team thread that is not scheduled
        # stalls the predict for a time slice (p99 of several ms); it also rebuilds its
        # predictor on every call (~40 us). Batches keep the estimator's threads.
        booster = self._estimator.booster_
        if A.shape[0] == 1:
            if self._row is None:
                self._row = _LightGBMRow(booster, A.shape[1])
            return self._row.predict(A[0])
        return np.asarray(booster.predict(A), dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_row"] = None  # a handle into this process's LightGBM: made again on use
        return state

    def _score(self, A: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.task == "regression":
            kind = self.spec.kind
            if kind == "lightgbm":
                out = self._lightgbm_predict(A)
            elif kind == "xgboost":
                out = self._estimator.get_booster().inplace_predict(A)
            else:
                out = self._estimator.predict(A)
            return np.asarray(out, dtype=np.float64).reshape(-1)
        p = self._raw_proba(A)
        score = np.zeros(A.shape[0])
        for k, c in enumerate(self.classes):  # column by column: identical for 1 row or many
            score += p[:, k] * c
        return score

    def predict(self, X: pd.DataFrame | NDArray[np.float64]) -> NDArray[np.float64]:
        """The score a strategy trades (see the module docstring), one per row."""
        return self._score(self.to_matrix(X))

    def predict_proba(self, X: pd.DataFrame | NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities, shape (rows, len(classes)); classification only."""
        if self.task != "classification":
            raise ValueError("predict_proba needs a classification model, this one regresses")
        return self._raw_proba(self.to_matrix(X))

    def predict_row(self, row: NDArray[np.float64]) -> float:
        """The score of one feature row (in `features` order): the live-inference path."""
        r = np.asarray(row, dtype=np.float64)
        if r.shape != (len(self.features),):
            self._require_fitted()
            raise ValueError(f"row has shape {r.shape}, expected ({len(self.features)},)")
        return float(self._score(r.reshape(1, -1))[0])

    def ood(self, X: pd.DataFrame | NDArray[np.float64]) -> NDArray[np.bool_]:
        """True where a row is far outside the training distribution (module docstring)."""
        A = self.to_matrix(X)
        with np.errstate(invalid="ignore"):
            far = np.abs(A - self._median) / self._scale > self.ood_threshold
        flagged = far | np.isinf(A) | (np.isnan(A) & ~self._nan_ok)
        return np.asarray(flagged.any(axis=1), dtype=np.bool_)

    def exempt_from_ood(self, names: list[str] | tuple[str, ...]) -> None:
        """Never flag these features (e.g. bounded, cyclic calendar features that a short
        training window cannot cover)."""
        self._require_fitted()
        unknown = [n for n in names if n not in self.features]
        if unknown:
            raise ValueError(f"exempt_from_ood: {unknown} are not features of this model")
        for name in names:
            j = self.features.index(name)
            self._scale[j] = np.inf
            self._nan_ok[j] = True

    def ood_row(self, row: NDArray[np.float64]) -> bool:
        """`ood` for one feature row (in `features` order)."""
        return bool(self.ood(np.asarray(row, dtype=np.float64).reshape(1, -1))[0])

    # --- persistence --------------------------------------------------------------

    def save(self, path: str | Path) -> str:
        """Write the model to `path` (atomically) and return the file's sha256."""
        self._require_fitted()
        payload = {
            "format": FORMAT,
            "spec": self.spec.to_mapping(),
            "task": self.task,
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "ood_threshold": self.ood_threshold,
            "features": list(self.features),
            "classes": self.classes,
            "n_train": self.n_train,
            "estimator": self._estimator,
            "ood": {"median": self._median, "scale": self._scale, "nan_ok": self._nan_ok},
            "reference": self.reference,
        }
        data = pickle.dumps(payload, protocol=5)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path, sha256: str | None = None) -> Model:
        """Read a saved model; refuse a file whose sha256 differs from `sha256`."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"model file {path} does not exist") from None
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(f"model file {path}: sha256 {digest} differs from expected {sha256}")
        payload = pickle.loads(data)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"model file {path} is not a saved sapphire model ({FORMAT})")
        model = cls(
            ModelSpec.from_mapping(payload["spec"]),
            payload["task"],
            seed=payload["seed"],
            n_jobs=payload["n_jobs"],
            ood_threshold=payload["ood_threshold"],
        )
        model.features = list(payload["features"])
        model.classes = np.asarray(payload["classes"], dtype=np.float64)
        model.n_train = int(payload["n_train"])
        model._estimator = payload["estimator"]
        ood = payload["ood"]
        model._median, model._scale, model._nan_ok = ood["median"], ood["scale"], ood["nan_ok"]
        model.reference = payload.get("reference")
        return model


class _LightGBMRow:
    """LightGBM's single-row fast predict (`LGBM_BoosterPredictForMatSingleRowFast`, one
    thread) for `booster`: the same values as `Booster.predict` on a one-row matrix
    (shape (1,), or (1, classes) for a multiclass model). Not for concurrent use: the
    fast configuration holds the row's buffers."""

    def __init__(self, booster: Any, n_features: int) -> None:
        import ctypes

        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._ctypes, self._lib, self._check = ctypes, _LIB, _safe_call
        self._booster = booster  # kept alive while the configuration points into it
        self.config = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_int(1), ctypes.c_int32(n_features), _c_str("num_threads=1"),
            ctypes.byref(self.config),
        ))  # fmt: skip
        self.n_features = n_features
        self.n_out = int(booster.num_model_per_iteration())
        self._out = np.zeros(self.n_out, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._len = ctypes.c_int64(0)
        self._len_ref = ctypes.byref(self._len)

    def predict(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        r = np.ascontiguousarray(row, dtype=np.float64)
        if r.shape != (self.n_features,):
            raise ValueError(f"row has shape {r.shape}, expected ({self.n_features},)")
        self._check(self._lib.LGBM_BoosterPredictForMatSingleRowFast(
            self.config, r.ctypes.data_as(self._ctypes.c_void_p), self._len_ref,
            self._out_ptr,
        ))  # fmt: skip
        out = self._out.copy()
        return out.reshape(1, -1) if self.n_out > 1 else out

    def __del__(self) -> None:
        config = getattr(self, "config", None)
        if config is not None and config.value:
            self._lib.LGBM_FastConfigFree(config)


def _check_finite_or_nan(A: NDArray[np.float64], names: list[str]) -> None:
    """Raise naming the first column holding +-inf (NaN is allowed: missing)."""
    inf = np.isinf(A)
    if inf.any():
        i, j = np.argwhere(inf)[0]
        raise ValueError(f"X column {names[j]!r} row {i} is {A[i, j]}: expected finite or NaN")


def make_model(spec: ModelSpec | str, task: str, *, seed: int = 0, n_jobs: int = 1) -> Model:
    """An unfitted `Model` for a spec ("lightgbm", "xgboost:max_depth=4", ...) and task."""
    return Model(spec, task, seed=seed, n_jobs=n_jobs)
