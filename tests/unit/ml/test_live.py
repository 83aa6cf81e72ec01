"""The ml strategy in paper trading: lockstep paper equals the event backtest; drift checks
raise events on a shifted regime, write the run's drift files and retrain a challenger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest import Backtest
from sapphire.backtest.runner import bars_from_frame
from sapphire.data.samples import SAMPLE_PATH
from sapphire.ml.drift import DriftEvent
from sapphire.ml.labels import LabelSpec
from sapphire.ml.live import DRIFT_LOG, DRIFT_REPORT, DriftWatch, read_drift
from sapphire.ml.models import ModelSpec
from sapphire.ml.pipeline import TrainConfig, train
from sapphire.ml.registry import ModelRegistry
from sapphire.ml.strategy import MLStrategy
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

CONFIG = TrainConfig(
    model=ModelSpec.parse("lightgbm:n_estimators=30,num_leaves=15"), n_groups=4,
    n_test_groups=1, importance=False, threshold=0.05,
    label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(btc_df: pd.DataFrame) -> Any:
    # trained on the first days of the month; the paper range below comes after
    return train(bars_from_frame(btc_df.iloc[:3000].reset_index(drop=True)), CONFIG)


@pytest.fixture
def model(trained: Any) -> str:
    v = trained.register("live")
    ModelRegistry().promote(f"live@{v.version}", "champion")
    return "live@champion"


def test_lockstep_paper_session_of_the_ml_strategy_equals_the_event_backtest(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    rng = {"start": "2022-01-04", "end": "2022-01-04 08:00"}
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = PaperConfig(
        **rng, strategy="ml", params={"model": model}, speed="max", size=0.01,
        maker_fee=0.0005, taker_fee=0.0005, drift_every=100, drift_window=300,
    )  # fmt: skip
    session = PaperSession.start(config, store=store, home=tmp_path)
    view = session.run()
    assert view.status == "finished"
    bt = Backtest(SAMPLE_PATH, "ml", **rng, engine="event", size=0.01, fee=0.0005, model=model)
    trades = bt.run().trades
    fills = store.fills(session.run_id)
    assert len(fills) == 2 * len(trades) > 0
    assert [float(f.last_px) for f in fills[::2]] == pytest.approx(trades["entry_price"].tolist())
    assert float(view.balance) == pytest.approx(float(bt.run().equity.iloc[-1]), abs=1e-9)
    assert (session.run_dir / DRIFT_REPORT).exists()  # drift was checked on schedule


def _synthetic(n: int, at: int | None, seed: int) -> pd.DataFrame:
    """A stationary random walk of 1m bars; from bar `at` on, returns and ranges are 8 times
    larger (a new regime)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.0008, n)
    spread = np.abs(rng.normal(0.0, 0.0004, n))
    if at is not None:
        r[at:] *= 8.0
        spread[at:] *= 8.0
    close = 40_000.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([close[0]], close[:-1]))
    time = pd.date_range("2022-03-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({
        "timestamp": time, "open": open_, "high": np.maximum(open_, close) * (1 + spread),
        "low": np.minimum(open_, close) * (1 - spread), "close": close,
        "volume": rng.uniform(1, 10, n),
    })  # fmt: skip


def test_drift_watch_detects_a_regime_shift_and_retrains_a_challenger(tmp_path: Path) -> None:
    history = _synthetic(6500, at=None, seed=1)
    train(bars_from_frame(history.iloc[:3000]), CONFIG).register("syn")
    ModelRegistry().promote("syn@1", "champion")
    at = 1500
    later = _synthetic(3500, at=at, seed=2)
    later["timestamp"] = history["timestamp"].iloc[3000:].to_numpy()
    bars = bars_from_frame(later)
    strategy = MLStrategy(model="syn@champion")
    strategy.signals(bars)  # what the adapter does at start: scores for every bar
    published: list[DriftEvent] = []
    watch = DriftWatch(
        strategy, bars, tmp_path, every=100, window=300, retrain=True, train_bars=1500,
        publish=published.append,
    )  # fmt: skip
    raised = [e for i in range(len(bars)) for e in watch.on_bar(i)]
    feature = [e for e in raised if e.kind == "feature"]
    assert feature, "the shift must be detected"
    first = min(e.ts_ns for e in feature)
    detected_bar = int(np.searchsorted(bars.time, first - bars.timeframe_ns))
    assert at <= detected_bar <= at + 200  # no alarm before it, found within two checks
    assert {e.feature for e in feature} & {"natr_14_1x", "natr_50_1x", "ret_1", "ret_5"}
    assert published == raised
    # the events are in the run's log, the latest report in drift.json
    drift = read_drift(tmp_path)
    assert len([e for e in drift["events"] if e.get("kind") == "feature"]) == len(feature)
    assert drift["report"]["bar"] >= detected_bar
    assert "hour_sin" not in drift["report"]["features"]
    # a challenger was trained on the latest bars and registered; the champion stays
    assert watch.retrained[0]["bar"] == detected_bar and watch.retrained[0]["version"] == 2
    assert len(watch.retrained) == 2  # not again before a whole new training window
    assert watch.retrained[1]["bar"] - detected_bar >= 1500
    assert ModelRegistry().get("syn@challenger").version == 3
    assert ModelRegistry().get("syn@champion").version == 1  # promotion stays a human call
    assert any(json.loads(line).get("kind") == "retrained" for line in
               (tmp_path / DRIFT_LOG).read_text().splitlines())  # fmt: skip


def test_no_drift_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no drift checks"):
        read_drift(tmp_path)


def test_drift_report_and_command_show_one_alert_rule_consistent_with_the_events() -> None:
    from typer.testing import CliRunner

    from sapphire.cli.main import app
    from sapphire.paper.session import paper_dir

    history = _synthetic(4500, at=None, seed=4)
    train(bars_from_frame(history.iloc[:3000]), CONFIG).register("calm")
    later = _synthetic(1500, at=None, seed=5)
    later["timestamp"] = history["timestamp"].iloc[3000:].to_numpy()
    bars = bars_from_frame(later)
    strategy = MLStrategy(model="calm@1")
    strategy.signals(bars)
    run_dir = paper_dir("calm-run")
    run_dir.mkdir(parents=True)
    watch = DriftWatch(strategy, bars, run_dir, every=100, window=300)
    raised = [e for i in range(len(bars)) for e in watch.on_bar(i)]
    report = read_drift(run_dir)["report"]
    features = report["features"]
    # the report's per-feature verdict is the rule that raises events, not a raw PSI/KS test
    assert all("drifted" not in row for row in features.values())
    alerted = {name for name, row in features.items() if row["alert"]}
    last_check = {e.feature for e in raised if e.kind == "feature" and e.ts_ns == report["ts_ns"]}
    assert alerted == last_check
    # calm data: no event, though PSI/KS, which treat persistent rows as independent, flag some
    assert raised == [] and alerted == set()
    assert any(r["psi"] >= 0.2 or r["ks_p"] < 0.01 for r in features.values())
    shown = CliRunner().invoke(app, ["ml", "drift", "calm-run"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "drifted" not in text and "alert" in text
    assert "at least 6 standard errors" in text and "raise nothing" in text
    assert "0 drift event(s) recorded" in text


def test_a_paper_run_on_the_models_training_bars_says_it_is_in_sample(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json as _json

    from typer.testing import CliRunner

    from sapphire.cli.main import app
    from sapphire.paper.session import read_in_sample

    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    rng = {"start": "2022-01-02", "end": "2022-01-02 04:00"}  # inside the training bars
    config = PaperConfig(
        **rng, strategy="ml", params={"model": model}, speed="max", size=0.01,
        maker_fee=0.0005, taker_fee=0.0005, drift_every=100, drift_window=300,
    )  # fmt: skip
    # started, not run: at full speed a run could finish before it is stopped, and a
    # finished run cannot be resumed
    session = PaperSession.start(config, home=tmp_path)  # the default store: `runs show`
    bt = Backtest(SAMPLE_PATH, "ml", **rng, engine="event", size=0.01, fee=0.0005, model=model)
    expected = bt.run()
    assert expected.in_sample is not None and expected.warnings
    view = session.view()
    assert view.in_sample == expected.in_sample and view.warnings == expected.warnings
    assert read_in_sample(session.run_dir) == {
        "in_sample": expected.in_sample,
        "warnings": expected.warnings,
    }
    session.client.close()
    resumed = PaperSession.resume(session.run_id)
    assert resumed.view().warnings == expected.warnings  # the resumed strategy says it too
    final = resumed.run()
    assert final.status == "finished" and final.warnings == expected.warnings
    shown = CliRunner().invoke(app, ["runs", "show", session.run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    payload = _json.loads(shown.stdout)
    assert payload["warnings"] == expected.warnings
    assert payload["in_sample"] == expected.in_sample
    text = CliRunner().invoke(app, ["runs", "show", session.run_id])
    assert "in-sample" in text.stderr
