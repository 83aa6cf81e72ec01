"""Whole CLI flows: `sapphire walkforward` and `sapphire optimize report` of its result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app

runner = CliRunner()

# Four days of the bundled month, 2-day train and 1-day test windows: two folds.
SMALL = ["walkforward", "--strategy", "sma_cross", "--end", "2022-01-04 23:01", "--train", "2d",
         "--test", "1d", "--trials", "6", "--sampler", "random", "--seed", "3"]  # fmt: skip


def test_walkforward_json_prints_one_object(tmp_path: Path) -> None:
    report = tmp_path / "wf.html"
    result = runner.invoke(
        app,
        [*SMALL, "--fee", "0.0005", "--size", "0.5", "--size-mode", "equity",
         "--study", "wf-e2e", "--report", str(report), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # progress went to stderr: stdout is the object
    assert payload["study"] == "wf-e2e"
    assert payload["n_folds"] == 2 and payload["n_trials"] == 12
    assert payload["best_params"] == payload["folds"][-1]["best_params"]
    assert set(payload["best_params"]) == {"fast", "slow", "short"}
    for key in ("best_value", "dsr", "pbo", "efficiency", "elapsed_s", "out_of_sample"):
        assert key in payload
    fold = payload["folds"][0]
    assert fold["study"] == "wf-e2e-fold1"
    assert fold["test_start"] == fold["train_end"]
    assert {"sharpe", "total_return", "max_drawdown", "n_trades"} <= set(fold["out_of_sample"])
    assert {"sharpe", "total_return", "max_drawdown", "n_trades"} <= set(fold["in_sample"])
    growth = 1.0
    for f in payload["folds"]:
        growth *= 1.0 + f["out_of_sample"]["total_return"]
    assert payload["out_of_sample"]["total_return"] == pytest.approx(growth - 1.0)
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    assert payload["report"] == str(report) and 'id="wf-equity"' in report.read_text("utf-8")

    # The folds are stored studies and the walk-forward is saved: report on it by name.
    out = tmp_path / "study.html"
    shown = runner.invoke(app, ["optimize", "report", "wf-e2e", "--html", str(out)])
    assert shown.exit_code == 0, shown.output
    html = out.read_text(encoding="utf-8")
    assert 'id="wf-equity"' in html and 'id="trial-history"' in html
    listed = runner.invoke(app, ["optimize", "list", "--json"])
    assert "wf-e2e-fold2" in listed.stdout


def test_walkforward_prints_the_folds_and_the_stitched_metrics() -> None:
    result = runner.invoke(
        app, [*SMALL, "--anchored", "--param", "short=true", "--space", "fast=5:40"]
    )
    assert result.exit_code == 0, result.output
    assert "Walk-forward" in result.stdout and "Stitched out-of-sample" in result.stdout
    assert "walk-forward efficiency" in result.stdout
    assert "short=True" in result.stdout
    assert "size 95% of equity · leverage 1× · intrabar path" in result.stdout
    assert "fold 2/2" in result.stderr  # progress lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "1min"], "train='1min' is not longer than one bar"),
        (["--train", "40d"], "no walk-forward fold fits"),
        (["--test", "1d", "--step", "6h"], "step='6h' is shorter than test='1d'"),
        (["--space", "fast"], "--space 'fast' is not of the form"),
        (["--param", "fast=abc"], "SmaCross.fast: 'abc' is not a valid int"),
        (["--strategy", "nope"], "unknown strategy 'nope'"),
    ],
)
def test_walkforward_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(
        app, ["walkforward", "--trials", "2", "--train", "2d", "--test", "1d", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
