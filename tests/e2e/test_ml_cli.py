"""`sapphire ml train/evaluate/models/drift` and `sapphire backtest --strategy ml` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app

runner = CliRunner()
TRAIN = [
    "ml", "train", "--name", "btc", "--end", "2022-01-06", "--horizon", "20",
    "--model", "lightgbm:n_estimators=30,num_leaves=15", "--groups", "4", "--test-groups", "1",
    "--no-importance", "--json",
]  # fmt: skip
LATER = ["--start", "2022-01-06", "--end", "2022-01-08"]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAPPHIRE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_list_promote_evaluate_backtest_rollback(tmp_path: Path) -> None:
    first = _json(TRAIN)
    assert (first["model"], first["version"], first["aliases"]) == ("btc", 1, ["candidate"])
    assert first["cv"]["n_splits"] == 4 and first["rows"] > 5000
    assert {"sharpe_mean", "total_return_mean", "n_trades_mean"} <= set(first["backtest"])
    second = _json(TRAIN)
    assert second["version"] == 2

    listed = _json(["ml", "models", "list", "--json"])["models"]
    assert [(m["model"], m["version"]) for m in listed] == [("btc", 1), ("btc", 2)]
    assert listed[0]["label"] == "triple_barrier" and listed[0]["estimator"] == "lightgbm"

    bare = runner.invoke(app, ["ml", "models", "promote", "btc"])  # which version? say it
    said = " ".join(bare.stderr.split())
    assert bare.exit_code == 2 and "btc@2 or btc@candidate; btc has v1, v2 (candidate)" in said
    assert (
        runner.invoke(app, ["ml", "models", "promote", "btc@1", "--alias", "champion"]).exit_code
        == 0
    )
    promoted = runner.invoke(app, ["ml", "models", "promote", "btc@2", "--alias", "champion"])
    assert promoted.exit_code == 0 and "version 2" in promoted.stdout
    shown = _json(["ml", "models", "show", "btc@champion", "--json"])
    assert shown["version"] == 2 and "champion" in shown["aliases"]
    assert shown["lineage"]["data"]["end"].startswith("2022-01-05")

    html = tmp_path / "eval.html"
    ev = _json(["ml", "evaluate", "btc@champion", *LATER, "--html", str(html), "--json"])
    assert ev["version"] == 2 and ev["in_sample_rows"] == 0
    assert {"ic", "rank_ic", "icir"} <= set(ev["ic"]) and ev["backtest"]["n_trades"] > 0
    page = html.read_text()
    for section in ("cv-folds", "ic-over-time", "feature-importance", "model-equity"):
        assert f'id="{section}"' in page
    # the evaluation's backtest metrics are stored with the version
    assert _json(["ml", "models", "show", "btc@2", "--json"])["metrics"]["backtest"]["n_trades"] > 0

    bt = _json(["backtest", "--strategy", "ml", "--model", "btc@champion", *LATER, "--fee",
                "0.0005", "--json"])  # fmt: skip
    assert bt["metrics"]["n_trades"] == ev["backtest"]["n_trades"]
    assert bt["in_sample"] is None and bt["warnings"] == []

    # on the training bars: every command that scores the model says it is in-sample
    TRAINED = ["--start", "2022-01-03", "--end", "2022-01-06"]
    ev_in = _json(["ml", "evaluate", "btc@champion", *TRAINED, "--json"])
    bt_in = _json(["backtest", "--strategy", "ml", "--model", "btc@champion", *TRAINED,
                   "--fee", "0.0005", "--json"])  # fmt: skip
    assert bt_in["in_sample"] == ev_in["in_sample"]
    assert bt_in["in_sample"]["bars"] == ev_in["in_sample_rows"] > 0
    assert bt_in["in_sample"]["model"] == "btc@2"
    assert [w for w in bt_in["warnings"] if "in-sample" in w]
    text = runner.invoke(app, ["backtest", "--strategy", "ml", "--model", "btc@champion",
                               *TRAINED])  # fmt: skip
    assert text.exit_code == 0
    said = " ".join(text.stderr.split())
    assert f"warning: {bt_in['in_sample']['bars']} of " in said and "btc@2" in said
    assert "in-sample" in said

    rolled = runner.invoke(app, ["ml", "models", "rollback", "btc"])
    assert rolled.exit_code == 0 and "version 1" in rolled.stdout
    assert _json(["ml", "models", "show", "btc@champion", "--json"])["version"] == 1


def test_training_on_too_short_a_file_says_what_is_missing(tmp_path: Path) -> None:
    import pandas as pd

    from sapphire.data.samples import SAMPLE_PATH

    short = tmp_path / "short.csv"
    pd.read_csv(SAMPLE_PATH).iloc[:300].to_csv(short, index=False)
    out = runner.invoke(app, [*TRAIN[:-1], "--data", str(short), "--no-progress"])
    said = " ".join(out.stderr.split())
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "too little data to train: 300 bars gave" in said and "label classes" in said
    assert "a shorter --horizon" in said


def test_bad_input_is_named() -> None:
    bad = runner.invoke(app, [*TRAIN[:-1], "--label", "nonsense"])
    assert bad.exit_code == 2 and "nonsense" in bad.stderr
    missing = runner.invoke(app, ["ml", "models", "show", "ghost@champion"])
    assert missing.exit_code == 2 and "ghost" in missing.stderr
    no_model = runner.invoke(app, ["backtest", "--strategy", "ml"])
    assert no_model.exit_code == 2 and "model=" in no_model.stderr
    meta = runner.invoke(app, [*TRAIN[:-1], "--label", "meta"])
    assert meta.exit_code == 2 and "--primary" in meta.stderr
    no_run = runner.invoke(app, ["ml", "drift", "nope"])
    assert no_run.exit_code == 2 and "nope" in no_run.stderr


@pytest.mark.slow
def test_paper_run_of_the_ml_strategy_checks_drift() -> None:
    _json(TRAIN)
    assert runner.invoke(app, ["ml", "models", "promote", "btc@1"]).exit_code == 0
    view = _json([
        "paper", "--strategy", "ml", "--model", "btc@champion", "--start", "2022-01-06",
        "--end", "2022-01-07", "--speed", "max", "--size", "0.01", "--drift-every", "200",
        "--drift-window", "300", "--no-live", "--run-id", "mlp", "--json",
    ])  # fmt: skip
    assert view["status"] == "finished" and view["fills"] > 0
    drift = _json(["ml", "drift", "mlp", "--json"])
    report = drift["report"]
    assert report["model"] == "btc@1" and report["features"]
    assert all(f["psi"] >= 0.0 for f in report["features"].values())
    shown = runner.invoke(app, ["ml", "drift", "mlp"])
    assert shown.exit_code == 0 and "PSI" in shown.stdout


def test_frac_diff_auto_is_chosen_on_the_training_bars(tmp_path: Path) -> None:
    spec = tmp_path / "features.yaml"
    spec.write_text("indicators: [rsi, natr]\nperiods: [14]\nfrac_diff: auto\n")
    out = _json([*TRAIN, "--features", str(spec)])
    shown = _json(["ml", "models", "show", f"btc@{out['version']}", "--json"])
    d = shown["lineage"]["recipe"]["features"]["frac_diff"]
    assert 0.0 < d < 1.0  # BTC log prices need some differencing, not a full one
    assert f"ffd_{d!r}" in shown["lineage"]["features"]
    bad = runner.invoke(app, [*TRAIN[:-1], "--frac-diff", "lots"])
    assert bad.exit_code == 2 and "lots" in bad.stderr
