"""The `ml` strategy: trade a registry model's predictions, in every engine unchanged.

```python
Backtest(df, "ml", model="btc-tb@champion", threshold=0.1).run()
Backtest(df, "ml", model="btc-tb@champion", retrain="sliding").run()  # walk-forward retraining
```

The signal rule, on the model's score (P(up) - P(down) for a classifier, the predicted
return for a regressor, P(profitable) for a meta model):

- enter long when score > `threshold`; exit it when score < `exit_threshold`;
- with `short`, enter short when score < -`threshold`; exit it when score > -`exit_threshold`;
- a bar with no score (feature warm-up, or a row the model's out-of-distribution gate
  flags) opens nothing and closes what is open: the strategy does not trade on rows
  the model cannot judge.

A meta model (label `meta`) filters a primary strategy instead: the primary's entries
(the strategy recorded in the meta model's lineage) are taken only where the meta model's
P(profitable) >= `meta_threshold`; the primary's exits are kept. `meta_model=` adds such a
filter on top of this strategy's own entries.

Walk-forward retraining (`retrain="sliding"` or `"expanding"`): the registered model
supplies the recipe (features, label, estimator); the bars are cut into blocks of
`retrain_every` bars and each block is scored by a model trained only on labels that
end before the block starts (label start <= block start - 1 - horizon: a purge gap of
at least the label horizon), on the last `train_bars` bars (sliding) or all earlier
bars (expanding). Bars before the first block have no score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.strategy.base import Bars, Param, Signals, Strategy

__all__ = [
    "LivePredictor",
    "MLStrategy",
    "ResolvedModel",
    "in_sample_warning",
    "in_sample_window",
    "resolve_model",
    "scores_strategy",
    "signals_from_scores",
]

# loaded models by (registry url, root, name, version), and the default registries: a
# study, a CV or a walk-forward runs signals() many times
_CACHE: dict[tuple[str, str, str, int], ResolvedModel] = {}
_REGISTRIES: dict[tuple[str, str], Any] = {}


def default_registry(url: str | None = None) -> Any:
    """The registry at `url` (default: the default database) with its artefacts under
    `$SAPPHIRE_HOME/models`, opened once per process."""
    from sapphire.config import sapphire_home
    from sapphire.ml.registry import ModelRegistry
    from sapphire.store import default_url

    key = (url or default_url(), str(sapphire_home() / "models"))
    reg = _REGISTRIES.get(key)
    if reg is None:
        reg = _REGISTRIES[key] = ModelRegistry(key[0])
    return reg


def signals_from_scores(
    score: NDArray[np.float64],
    *,
    threshold: float,
    exit_threshold: float,
    short: bool,
    allow: NDArray[np.bool_] | None = None,
) -> Signals:
    """The ml signal rule on a score array (NaN: no score, so no entry and flat)."""
    with np.errstate(invalid="ignore"):
        known = np.isfinite(score)
        enter_long = known & (score > threshold)
        exit_long = ~known | (score < exit_threshold)
        enter_short = known & (score < -threshold) if short else np.zeros_like(known)
        exit_short = ~known | (score > -exit_threshold)
    if allow is not None:
        enter_long &= allow
        enter_short &= allow
    if not short:
        return Signals(enter_long=enter_long, exit_long=exit_long)
    return Signals(
        enter_long=enter_long, exit_long=exit_long, enter_short=enter_short, exit_short=exit_short
    )


class _ScoreRule(Strategy):
    """Trades a fixed array of scores (out-of-sample CV paths)."""

    name: ClassVar[str] = "ml_scores"
    scores: ClassVar[NDArray[np.float64]] = np.empty(0)
    threshold = Param(0.1, low=0.0, doc="enter when |score| exceeds it")
    exit_threshold = Param(0.0, doc="exit when the score falls back below it")
    short = Param(True, doc="also trade the short side")

    primary: ClassVar[Signals | None] = None

    def signals(self, bars: Bars) -> Signals:
        """The ml rule on the stored scores (or the primary's entries the scores allow)."""
        if len(self.scores) != len(bars):
            raise ValueError(f"{len(self.scores)} scores for {len(bars)} bars")
        if self.primary is not None:
            with np.errstate(invalid="ignore"):
                allow = self.scores >= self.threshold
            return meta_filter(self.primary, allow)
        return signals_from_scores(
            self.scores, threshold=self.threshold, exit_threshold=self.exit_threshold,
            short=self.short,
        )  # fmt: skip


def scores_strategy(scores: NDArray[np.float64], primary: Signals | None = None) -> type[Strategy]:
    """A strategy class that trades `scores` (one per bar) with the ml signal rule, or, given
    a primary's signals, takes the primary's entries where score >= threshold."""
    body = {"scores": np.asarray(scores, dtype=np.float64), "primary": primary}
    return type("ScoreRule", (_ScoreRule,), body)


def meta_filter(primary: Signals, allow: NDArray[np.bool_]) -> Signals:
    """The primary's signals with entries kept only where `allow` (its exits unchanged)."""
    return Signals(
        enter_long=(
            None if primary.enter_long is None
            else np.asarray(primary.enter_long, dtype=bool) & allow
        ),
        exit_long=primary.exit_long,
        enter_short=(
            None if primary.enter_short is None
            else np.asarray(primary.enter_short, dtype=bool) & allow
        ),
        exit_short=primary.exit_short,
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class ResolvedModel:
    """A registry version loaded for trading: the model, its recipe and its other data."""

    ref: str
    version: Any
    model: Any
    recipe: Any  # TrainConfig
    others: dict[str, Bars]

    @property
    def is_meta(self) -> bool:
        """True for a meta-labelling model (it filters a primary strategy)."""
        return bool(self.recipe.label.kind == "meta")


def resolve_model(ref: str, registry: Any = None) -> ResolvedModel:
    """Load a registry reference (NAME, NAME@3, NAME@champion) with its recipe and data."""
    from sapphire.ml.pipeline import TrainConfig, load_bars

    reg = registry if registry is not None else default_registry()
    version = reg.get(ref)
    key = (str(reg.url), str(reg.root), version.name, int(version.version))
    hit = _CACHE.get(key)
    if hit is not None and hit.version.sha256 == version.sha256:
        return hit
    model = reg.load(f"{version.name}@{version.version}")
    recipe = TrainConfig.from_mapping(version.lineage["recipe"])
    sources = version.lineage.get("sources", {})
    others = {name: load_bars(src) for name, src in sources.items()}
    resolved = ResolvedModel(ref=ref, version=version, model=model, recipe=recipe, others=others)
    _CACHE[key] = resolved
    return resolved


def in_sample_window(
    version: Any, times: NDArray[np.int64], scored: NDArray[np.bool_]
) -> dict[str, Any] | None:
    """Which scored bars (open times `times`, `scored` mask) lie inside the training window
    of a registry `version`: {model, bars, of, first, last, train_start, train_end}, or
    None when none does. A fixed model scoring these bars is scored in-sample."""
    data = version.lineage.get("data", {})
    if not data.get("start") or not data.get("end"):
        return None
    lo, hi = pd.Timestamp(data["start"]), pd.Timestamp(data["end"])
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(times, dtype=np.int64), utc=True))
    scored = np.asarray(scored, dtype=bool)
    inside = scored & np.asarray((t >= lo) & (t <= hi))
    if not inside.any():
        return None
    return {
        "model": f"{version.name}@{version.version}",
        "bars": int(inside.sum()),
        "of": int(scored.sum()),
        "first": t[inside][0].isoformat(),
        "last": t[inside][-1].isoformat(),
        "train_start": lo.isoformat(),
        "train_end": hi.isoformat(),
    }


def in_sample_warning(window: Mapping[str, Any]) -> str:
    """The caveat for an `in_sample_window` result, as commands print it."""
    return (
        f"{window['bars']} of {window['of']} scored bars (from {window['first']} to "
        f"{window['last']}) are inside the training window of model {window['model']} "
        f"({window['train_start']} → {window['train_end']}): these results are in-sample; "
        "score later data or use retrain=sliding"
    )


def model_scores(
    resolved: ResolvedModel, bars: Bars, *, gate: bool = True
) -> tuple[NDArray[np.float64], int]:
    """The model's score on every bar (NaN in the feature warm-up and, with `gate`, where
    the out-of-distribution gate flags the row), and how many rows the gate flagged."""
    from sapphire.ml.features import build_features

    spec = resolved.recipe.features
    warm = min(spec.warmup(bars.timeframe_ns), len(bars))
    X = build_features(spec, bars, resolved.others)
    score = np.asarray(resolved.model.predict(X), dtype=np.float64)
    score[:warm] = np.nan
    if not gate:
        return score, 0
    flagged = np.asarray(resolved.model.ood(X), dtype=np.bool_)
    flagged[:warm] = False
    score[flagged] = np.nan
    return score, int(flagged.sum())


class MLStrategy(Strategy):
    """Trades a registry model's predictions (thresholds, OOD gate, optional meta filter)."""

    name: ClassVar[str] = "ml"
    model = Param("", doc="registry model: NAME, NAME@VERSION or NAME@ALIAS (e.g. @champion)")
    registry = Param("", doc="registry database URL (default: the default database)")
    threshold = Param(0.1, low=0.0, doc="enter long above it, short below minus it")
    exit_threshold = Param(0.0, doc="exit long below it, short above minus it")
    short = Param(True, doc="also trade the short side")
    meta_model = Param("", doc="optional meta model filtering the entries")
    meta_threshold = Param(0.5, low=0.0, high=1.0, doc="minimum P(profitable) of the meta model")
    ood_gate = Param(True, doc="do not trade rows far outside the training data")
    retrain = Param("none", choices=("none", "sliding", "expanding"), doc="walk-forward retraining")
    train_bars = Param(20_000, low=100, doc="training window of walk-forward retraining (bars)")
    retrain_every = Param(5_000, low=10, doc="bars between walk-forward retrains")
    constraints = (("exit_threshold", "<=", "threshold"),)

    def check(self) -> None:
        """A model reference is required."""
        if not self.model:
            raise ValueError(
                "the ml strategy needs model=NAME[@VERSION|@ALIAS] (see `sapphire ml models list`)"
            )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        #: what the last signals() call did: OOD rows, retraining schedule, model versions
        self.info: dict[str, Any] = {}
        #: the score per bar of the last signals() call (NaN: no score)
        self.last_scores: NDArray[np.float64] = np.empty(0)
        #: the scored bars inside the fixed model's training window (`in_sample_window`)
        self.in_sample: dict[str, Any] | None = None
        #: caveats of the last signals() call, for the backtest result's warnings
        self.caveats: list[str] = []

    def signals(self, bars: Bars) -> Signals:
        """Score every bar with the model (or walk-forward retrained models) and apply the rule."""
        registry = default_registry(self.registry or None)
        resolved = resolve_model(self.model, registry)
        self.info = {"model": f"{resolved.version.name}@{resolved.version.version}"}
        if self.retrain != "none":
            score, schedule = walkforward_scores(
                resolved, bars, mode=self.retrain, train_bars=self.train_bars,
                every=self.retrain_every, gate=self.ood_gate,
            )  # fmt: skip
            self.info["retrain"] = schedule
            flagged = int(sum(block["ood_rows"] for block in schedule))
        else:
            score, flagged = model_scores(resolved, bars, gate=self.ood_gate)
        self.info["ood_rows"] = flagged
        self.last_scores = score
        # walk-forward retraining never scores a bar with a model that saw it
        self.in_sample = None
        if self.retrain == "none":
            self.in_sample = in_sample_window(resolved.version, bars.time, np.isfinite(score))
        self.caveats = [] if self.in_sample is None else [in_sample_warning(self.in_sample)]
        if resolved.is_meta:
            return self._meta_filtered(resolved, bars, score)
        allow = None
        if self.meta_model:
            meta = resolve_model(self.meta_model, registry)
            meta_score, _ = model_scores(meta, bars)
            with np.errstate(invalid="ignore"):
                allow = meta_score >= self.meta_threshold
        return signals_from_scores(
            score, threshold=self.threshold, exit_threshold=self.exit_threshold,
            short=self.short, allow=allow,
        )  # fmt: skip

    def _meta_filtered(self, resolved: ResolvedModel, bars: Bars, score: NDArray) -> Signals:
        primary = primary_signals(resolved.version.lineage, bars)
        with np.errstate(invalid="ignore"):
            allow = score >= self.meta_threshold
        return meta_filter(primary, allow)


def primary_signals(lineage: Mapping[str, Any], bars: Bars) -> Signals:
    """The signals of the primary strategy a meta model was trained on."""
    from sapphire.strategy.registry import get_strategy

    primary = lineage.get("primary")
    if not primary:
        raise ValueError("this meta model's lineage names no primary strategy")
    strategy = get_strategy(primary["strategy"])(**primary.get("params", {}))
    return strategy.signals(bars)


def primary_side(signals: Signals, n: int) -> NDArray[np.float64]:
    """+1 on the primary's long entries, -1 on its short entries, 0 elsewhere."""
    side = np.zeros(n)
    if signals.enter_long is not None:
        side[np.asarray(signals.enter_long, dtype=bool)] = 1.0
    if signals.enter_short is not None:
        side[np.asarray(signals.enter_short, dtype=bool)] = -1.0
    return side


def walkforward_scores(
    resolved: ResolvedModel,
    bars: Bars,
    *,
    mode: str,
    train_bars: int,
    every: int,
    gate: bool = True,
) -> tuple[NDArray[np.float64], list[dict[str, Any]]]:
    """Scores from models retrained walk-forward on the recipe; each block's model saw only
    labels that end before the block (a purge of at least the label horizon)."""
    from sapphire.ml.features import build_features
    from sapphire.ml.pipeline import fit_model

    recipe = resolved.recipe
    X = build_features(recipe.features, bars, resolved.others)
    side = None
    if recipe.label.kind == "meta":
        side = primary_side(primary_signals(resolved.version.lineage, bars), len(bars))
    labels = recipe.label.make(bars, side=side)
    warm = recipe.features.warmup(bars.timeframe_ns)
    horizon = int(recipe.label.horizon)
    n = len(bars)
    score = np.full(n, np.nan)
    schedule: list[dict[str, Any]] = []
    ok = np.isfinite(labels.y) & (labels.t0 >= warm)
    everything = np.arange(n)
    start = warm + train_bars + horizon + 1
    for block in range(start, n, every):
        last_t0 = block - 1 - horizon
        first_t0 = warm if mode == "expanding" else max(warm, block - horizon - 1 - train_bars)
        rows = ok & (labels.t0 >= first_t0) & (labels.t0 <= last_t0)
        if rows.sum() < 50 or np.unique(labels.y[rows]).size < 2:
            continue
        pos = np.flatnonzero(rows)
        Xb, chosen = X, recipe.features.frac_diff
        if recipe.frac_diff_auto:  # the order is chosen on this block's training bars only
            window = [(int(labels.t0[pos[0]]), int(labels.t0[pos[-1]]))]
            Xb, chosen = recipe.features.refit_frac_diff(X, bars, everything, window)
        model = fit_model(recipe.model, Xb.iloc[labels.t0[pos]], labels, pos, recipe.seed)
        end = min(block + every, n)
        block_score = np.asarray(model.predict(Xb.iloc[block:end]), dtype=np.float64)
        flagged = np.asarray(model.ood(Xb.iloc[block:end]), dtype=bool) if gate else None
        if flagged is not None:
            block_score[flagged] = np.nan
        score[block:end] = block_score
        schedule.append({
            "train_first_bar": int(labels.t0[rows].min()),
            "train_last_label_end": int(labels.t1[rows].max()),
            "test_first_bar": block,
            "test_last_bar": end - 1,
            "ood_rows": 0 if flagged is None else int(flagged.sum()),
            **({"frac_diff": chosen} if recipe.frac_diff_auto else {}),
        })  # fmt: skip
    return score, schedule


class LivePredictor:
    """One bar in, one score out: streaming features + single-row prediction (paper/live).

    Gives the same score as `model_scores` on the same bars (a test checks it).
    """

    def __init__(self, resolved: ResolvedModel, timeframe_ns: int, *, gate: bool = True) -> None:
        from sapphire.ml.features import FeatureStream

        self.resolved = resolved
        self.gate = gate
        spec = resolved.recipe.features
        tfs = {name: b.timeframe_ns for name, b in resolved.others.items()}
        self.stream = FeatureStream(spec, timeframe_ns, tfs)
        self.warmup = spec.warmup(timeframe_ns)
        self.seen = 0
        self.row: NDArray[np.float64] = np.empty(0)

    def push(self, instrument: str, time_ns: int, o: float, h: float, l: float, c: float,
             v: float) -> None:  # fmt: skip
        """Feed another instrument's bar (before the self bar it precedes)."""
        self.stream.push(instrument, time_ns, o, h, l, c, v)

    def update(self, time_ns: int, o: float, h: float, l: float, c: float, v: float) -> float:
        """The score of this bar (NaN during warm-up or when the OOD gate flags the row)."""
        self.row = self.stream.update(time_ns, o, h, l, c, v)
        self.seen += 1
        if self.seen <= self.warmup:
            return float("nan")
        model = self.resolved.model
        if self.gate and model.ood_row(self.row):
            return float("nan")
        return float(model.predict_row(self.row))


def feature_frame(resolved: ResolvedModel, bars: Bars) -> pd.DataFrame:
    """The model's feature rows on `bars` (for drift checks and reports)."""
    from sapphire.ml.features import build_features

    return build_features(resolved.recipe.features, bars, resolved.others)
