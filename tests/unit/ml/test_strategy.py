"""The `ml` strategy: same trades in both engines, live scores equal batch scores,
walk-forward retraining never uses a model on bars it was trained on, OOD gate, meta filter."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest
from sapphire.backtest.runner import bars_from_frame
from sapphire.ml.labels import LabelSpec
from sapphire.ml.models import ModelSpec
from sapphire.ml.pipeline import TrainConfig, train
from sapphire.ml.registry import ModelRegistry
from sapphire.ml.strategy import (
    LivePredictor,
    MLStrategy,
    model_scores,
    resolve_model,
    signals_from_scores,
)
from sapphire.strategy import get_strategy

TRAIN, TEST = 8000, 4000
CONFIG = TrainConfig(
    model=ModelSpec.parse("lightgbm:n_estimators=40,num_leaves=15"), n_groups=4,
    n_test_groups=1, importance=False, threshold=0.05,
    label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
)  # fmt: skip


@pytest.fixture(scope="module")
def frames(btc_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = btc_df.iloc[: TRAIN + TEST].reset_index(drop=True)
    return df.iloc[:TRAIN].reset_index(drop=True), df.iloc[TRAIN:].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(frames: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    return train(bars_from_frame(frames[0]), CONFIG)


@pytest.fixture
def model(trained: Any) -> str:
    v = trained.register("tb")
    ModelRegistry().promote(f"tb@{v.version}", "champion")
    return "tb@champion"


def test_ml_is_found_by_name_and_needs_a_model() -> None:
    assert get_strategy("ml") is MLStrategy
    with pytest.raises(ValueError, match="needs model="):
        MLStrategy()
    with pytest.raises(ValueError, match="exit_threshold"):
        MLStrategy(model="x", threshold=0.1, exit_threshold=0.3)


def test_unknown_model_is_named(frames: Any) -> None:
    with pytest.raises((ValueError, KeyError), match="nosuch"):
        Backtest(frames[1], "ml", model="nosuch@champion").run()


def test_signal_rule() -> None:
    score = np.array([np.nan, 0.2, 0.05, -0.01, -0.3, 0.0, np.nan])
    sig = signals_from_scores(score, threshold=0.1, exit_threshold=0.0, short=True)
    assert np.asarray(sig.enter_long).tolist() == [False, True, False, False, False, False, False]
    assert np.asarray(sig.exit_long).tolist() == [True, False, False, True, True, False, True]
    assert np.asarray(sig.enter_short).tolist() == [False, False, False, False, True, False, False]
    assert np.asarray(sig.exit_short).tolist() == [True, True, True, False, False, False, True]
    long_only = signals_from_scores(score, threshold=0.1, exit_threshold=0.0, short=False)
    assert long_only.enter_short is None


def test_vector_and_event_engines_trade_the_model_identically(frames: Any, model: str) -> None:
    kw = {"model": model, "fee": 0.0005, "size": 0.5, "size_mode": "equity"}
    vec = Backtest(frames[1], "ml", engine="vector", **kw).run()
    evt = Backtest(frames[1], "ml", engine="event", **kw).run()
    a, b = vec.trades, evt.trades
    assert len(a) > 5, "the model should trade on the held-out bars"
    assert len(a) == len(b)
    for col in ("entry_bar", "exit_bar", "side", "exit_reason"):
        assert a[col].tolist() == b[col].tolist(), col
    np.testing.assert_allclose(b["pnl"], a["pnl"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(evt.equity.values, vec.equity.values, rtol=1e-9)


def test_live_predictor_gives_the_batch_scores(frames: Any, model: str) -> None:
    bars = bars_from_frame(frames[1].iloc[:2500].reset_index(drop=True))
    resolved = resolve_model(model)
    batch, _ = model_scores(resolved, bars)
    live = LivePredictor(resolved, bars.timeframe_ns)
    streamed = np.array([
        live.update(int(bars.time[i]), bars.open[i], bars.high[i], bars.low[i], bars.close[i],
                    bars.volume[i])
        for i in range(len(bars))
    ])  # fmt: skip
    assert np.isnan(streamed[: live.warmup]).all()
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(batch))
    ok = np.isfinite(batch)
    assert ok.sum() > 1000
    np.testing.assert_allclose(streamed[ok], batch[ok], rtol=1e-9, atol=1e-12)


def test_walkforward_models_only_score_bars_after_their_training_labels(
    frames: Any, model: str
) -> None:
    df = pd.concat(frames, ignore_index=True)
    bt = Backtest(df, "ml", model=model, retrain="sliding", train_bars=3000, retrain_every=2000)
    result = bt.run()
    strategy = bt.strategy
    assert isinstance(strategy, MLStrategy)
    schedule = strategy.info["retrain"]
    assert len(schedule) >= 4
    horizon = CONFIG.label.horizon
    for block in schedule:
        assert block["train_last_label_end"] < block["test_first_bar"]
        assert block["test_first_bar"] - block["train_first_bar"] <= 3000 + horizon + 1
    first = schedule[0]["test_first_bar"]
    assert np.isnan(strategy.last_scores[:first]).all()
    assert np.isfinite(strategy.last_scores[first:]).mean() > 0.8  # the rest: OOD-gated rows
    assert (result.trades["entry_bar"] > first).all()


def test_ood_gate_keeps_the_strategy_flat_on_unseen_rows(frames: Any, model: str) -> None:
    df = frames[1].copy()
    crazy = slice(2000, 2600)  # a violent regime: 30x the bar ranges of the training data
    mid = df.loc[crazy, "close"].to_numpy()
    noise = np.random.default_rng(0).normal(0.0, 0.05, len(mid))
    close = mid[0] * np.exp(np.cumsum(noise))
    df.loc[crazy, "open"] = np.concatenate(([close[0]], close[:-1]))
    df.loc[crazy, "close"] = close
    df.loc[crazy, "high"] = np.maximum(df.loc[crazy, "open"], close) * 1.03
    df.loc[crazy, "low"] = np.minimum(df.loc[crazy, "open"], close) * 0.97
    gated = Backtest(df, "ml", model=model)
    gated_trades = gated.run().trades
    strategy = gated.strategy
    assert isinstance(strategy, MLStrategy)
    assert strategy.info["ood_rows"] > 100
    # every entry was signalled on a row the model could judge
    signal_bars = gated_trades["entry_bar"].to_numpy() - 1
    assert np.isfinite(strategy.last_scores[signal_bars]).all()
    ungated = Backtest(df, "ml", model=model, ood_gate=False)
    ungated_trades = ungated.run().trades
    assert isinstance(ungated.strategy, MLStrategy)
    assert ungated.strategy.info["ood_rows"] == 0
    in_zone = ungated_trades["entry_bar"].between(2000, 2600).sum()
    assert in_zone > gated_trades["entry_bar"].between(2000, 2600).sum()


def test_meta_model_filters_the_primary_entries(frames: Any) -> None:
    train_bars = bars_from_frame(frames[0])
    meta_cfg = replace(CONFIG, label=replace(CONFIG.label, kind="meta"))
    primary = {"strategy": "sma_cross", "params": {"short": True}}
    result = train(train_bars, meta_cfg, primary=primary)
    v = result.register("meta")
    test_bars = bars_from_frame(frames[1])
    primary_sig = get_strategy("sma_cross")(short=True).signals(test_bars)
    filtered = MLStrategy(model=f"meta@{v.version}", meta_threshold=0.5).signals(test_bars)
    p_long, f_long = np.asarray(primary_sig.enter_long), np.asarray(filtered.enter_long)
    assert (f_long <= p_long).all()  # only the primary's entries survive
    assert 0 < f_long.sum() < p_long.sum()
    np.testing.assert_array_equal(np.asarray(filtered.exit_long), np.asarray(primary_sig.exit_long))
    anything = MLStrategy(model=f"meta@{v.version}", meta_threshold=0.0)
    everything = np.asarray(anything.signals(test_bars).enter_long)
    judged = np.isfinite(anything.last_scores)
    np.testing.assert_array_equal(everything, p_long & judged)  # all the rows it can judge


def test_rollback_restores_the_previous_champion_bit_for_bit(
    trained: Any, frames: Any, model: str
) -> None:
    bars = bars_from_frame(frames[1])
    before, _ = model_scores(resolve_model("tb@champion"), bars)
    other = train(bars_from_frame(frames[0].iloc[2000:].reset_index(drop=True)), CONFIG)
    v2 = other.register("tb")
    reg = ModelRegistry()
    reg.promote(f"tb@{v2.version}", "champion")
    during, _ = model_scores(resolve_model("tb@champion"), bars)
    assert not np.array_equal(np.nan_to_num(during), np.nan_to_num(before))
    reg.rollback("tb")
    after, _ = model_scores(resolve_model("tb@champion"), bars)
    np.testing.assert_array_equal(after, before)


def test_a_backtest_on_the_training_bars_says_they_are_in_sample(frames: Any, model: str) -> None:
    df = pd.concat(frames, ignore_index=True)  # the training bars, then the held-out ones
    lineage = ModelRegistry().get(model).lineage["data"]
    for engine in ("vector", "event"):
        bt = Backtest(df, "ml", model=model, engine=engine)
        result = bt.run()
        assert isinstance(bt.strategy, MLStrategy)
        scored = np.isfinite(bt.strategy.last_scores)
        window = result.in_sample
        assert window is not None, engine
        assert window["bars"] == scored[:TRAIN].sum() > 0
        assert window["of"] == scored.sum() > window["bars"]
        assert (window["train_start"], window["train_end"]) == (lineage["start"], lineage["end"])
        assert window["last"] == pd.Timestamp(frames[0]["timestamp"].iloc[-1]).isoformat()
        assert result.summary()["in_sample"] == window
        [warning] = result.warnings
        assert f"{window['bars']} of {window['of']} scored bars" in warning
        assert "tb@1" in warning and "in-sample" in warning
    held_out = Backtest(frames[1], "ml", model=model).run()
    assert held_out.in_sample is None and held_out.warnings == []
    assert held_out.summary()["in_sample"] is None


def test_walkforward_retraining_is_never_in_sample(frames: Any, model: str) -> None:
    df = pd.concat(frames, ignore_index=True)
    result = Backtest(
        df, "ml", model=model, retrain="sliding", train_bars=3000, retrain_every=3000
    ).run()
    assert result.in_sample is None and result.warnings == []


def test_walkforward_retraining_chooses_frac_diff_on_each_training_window(
    frames: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapphire.ml.features import FeatureSpec

    config = replace(CONFIG, frac_diff_auto=True, features=FeatureSpec(periods=(14,)))
    v = train(bars_from_frame(frames[0].iloc[:4000]), config).register("fd")
    seen: list[Any] = []
    choose = FeatureSpec.with_frac_diff

    def spy(self: FeatureSpec, b: Any, **kw: Any) -> FeatureSpec:
        seen.append(kw.get("segments"))
        return choose(self, b, **kw)

    monkeypatch.setattr(FeatureSpec, "with_frac_diff", spy)
    bt = Backtest(frames[1], "ml", model=f"fd@{v.version}", retrain="sliding", train_bars=1500,
                  retrain_every=1000)  # fmt: skip
    bt.run()
    assert isinstance(bt.strategy, MLStrategy)
    schedule = bt.strategy.info["retrain"]
    assert len(schedule) >= 2 and len(seen) == len(schedule)
    for block, [(first, last)] in zip(schedule, seen, strict=True):
        assert first == block["train_first_bar"] and last < block["test_first_bar"]
        expected = choose(config.features, bars_from_frame(frames[1]), segments=[(first, last)])
        assert block["frac_diff"] == expected.frac_diff
