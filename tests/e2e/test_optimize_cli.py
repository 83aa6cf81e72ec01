"""Whole CLI flows: `sapphire optimize`, `optimize resume NAME`, `optimize list`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app
from sapphire.cli.optimize import parse_space

runner = CliRunner()
BASE = ["optimize", "--strategy", "sma_cross", "--data", "sample", "--start", "2022-01-03",
        "--end", "2022-01-06", "--space", "fast=2:30", "--space", "slow=10:120",
        "--size", "0.95", "--size-mode", "equity", "--fee", "0.0005", "--seed", "3"]  # fmt: skip


def test_optimize_json_resume_and_list() -> None:
    # the default --jobs 0 runs these few quick trials in this process
    result = runner.invoke(app, [*BASE, "--trials", "12", "--study", "cli", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for key in ("study", "n_trials", "best_params", "best_value", "dsr", "pbo", "elapsed_s"):
        assert key in payload
    assert payload["study"] == "cli" and payload["n_trials"] == 12
    assert set(payload["best_params"]) == {"fast", "slow", "short"}
    assert 2 <= payload["best_params"]["fast"] <= 30
    assert isinstance(payload["best_value"], float)
    assert payload["settings"] == {
        "maker_fee": 0.0005, "taker_fee": 0.0005, "size_mode": "equity", "size": 0.95,
        "leverage": 1.0, "intrabar": "path", "risk_profile": None,
    }  # fmt: skip
    assert payload["warnings"] == [] and payload["in_sample"] is None

    resumed = runner.invoke(
        app, ["optimize", "resume", "cli", "--trials", "18", "--jobs", "1", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    again = json.loads(resumed.stdout)
    assert again["n_trials"] == 18 and again["best_value"] >= payload["best_value"]

    listed = runner.invoke(app, ["optimize", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    studies = json.loads(listed.stdout)
    assert [(s["name"], s["n_trials"], s["target_trials"]) for s in studies] == [("cli", 18, 18)]
    table = runner.invoke(app, ["optimize", "list"])
    assert table.exit_code == 0 and "cli" in table.stdout and "18/18" in table.stdout


def test_optimize_rich_summary_and_fixed_params() -> None:
    result = runner.invoke(
        app,
        [*BASE, "--trials", "8", "--jobs", "1", "--param", "short=true", "--sampler", "random",
         "--objective", "sharpe", "--objective", "max_drawdown", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Best trial" in out and "DSR" in out and "PBO" in out and "Pareto front" in out
    assert "'short': True" in out
    # the settings every trial ran with, as `sapphire backtest` states them
    assert "fee 0.05% · size 95% of equity · leverage 1× · intrabar path" in out


def test_summary_counts_trials_by_state_and_lists_each_parameter_set_once() -> None:
    # 6 valid sets of 9 grid points (fast < slow), 20 TPE trials: sets repeat
    space = ["--space", "fast=2:12:5", "--space", "slow=5:15:5", "--param", "short=false"]
    args = [*BASE[:9], *space, "--seed", "3", "--trials", "20", "--no-progress"]
    result = runner.invoke(app, [*args, "--study", "dups", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["space_size"] == 6
    assert payload["states"]["infeasible"] == 0 and sum(payload["states"].values()) == 20
    assert {"ruined", "failed", "pruned", "complete"} <= set(payload["states"])
    sets = [(t["params"]["fast"], t["params"]["slow"]) for t in payload["top_trials"]]
    assert len(sets) == len(set(sets)) and all(f < s for f, s in sets)
    assert payload["top_trials"][0]["params"] == payload["best_params"]
    text = runner.invoke(app, [*args, "--study", "dups"])  # the same study, shown again
    assert text.exit_code == 0, text.output
    assert "20 trials of 6 valid parameter sets (20 complete, 0 infeasible, 0 ruined)" in (
        text.stdout
    )
    assert f"Top {len(sets)} parameter sets" in text.stdout


def test_optimize_errors_exit_2_with_a_message() -> None:
    result = runner.invoke(app, [*BASE, "--space", "nope=1:2", "--trials", "3", "--jobs", "1"])
    assert result.exit_code == 2
    assert "'nope' is not a parameter of strategy 'sma_cross'" in result.output
    missing = runner.invoke(app, ["optimize", "resume", "ghost"])
    assert missing.exit_code == 2 and "no study named 'ghost'" in missing.output
    nostrat = runner.invoke(app, ["optimize", "--trials", "3"])
    assert nostrat.exit_code == 2 and "--strategy is required" in nostrat.output


def test_parse_space_forms() -> None:
    assert parse_space(["fast=5:50", "slow=10:100:10", "rate=0.001:0.1:log", "mode=a,b"]) == {
        "fast": (5, 50),
        "slow": (10, 100, 10),
        "rate": (0.001, 0.1, None, True),
        "mode": ["a", "b"],
    }
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_space(["fast=x:5"])
    with pytest.raises(ValueError, match="is not of the form"):
        parse_space(["fast"])
