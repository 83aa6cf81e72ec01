"""`sapphire check lookahead`: exit 0 when clean, 1 on look-ahead, 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app

runner = CliRunner()

PEEKING = '''
import numpy as np
import pandas as pd

from sapphire import Signals, Strategy


class Peeking(Strategy):
    """Buys when tomorrow's close is higher."""

    def signals(self, bars):
        close = pd.Series(bars.close)
        up = (close.shift(-1) > close).to_numpy()
        return Signals(enter_long=up, exit_long=~up)


class Centred(Strategy):
    def signals(self, bars):
        mid = pd.Series(bars.close).rolling(31, center=True).mean().to_numpy()
        with np.errstate(invalid="ignore"):
            return Signals(enter_long=bars.close > mid, exit_long=bars.close < mid)
'''


@pytest.fixture
def peeking_file(tmp_path: Path) -> Path:
    path = tmp_path / "peeking.py"
    path.write_text(PEEKING)
    return path


@pytest.mark.parametrize("name", ["sma_cross", "momentum", "mean_reversion", "volatility_breakout"])
def test_builtins_exit_zero(name: str) -> None:
    result = runner.invoke(app, ["check", "lookahead", name, "--checkpoints", "6"])
    assert result.exit_code == 0, result.output
    assert "no look-ahead found" in result.stdout


def test_peeking_strategy_exits_one_with_a_table(peeking_file: Path) -> None:
    result = runner.invoke(app, ["check", "lookahead", f"{peeking_file}:Peeking"])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "first offending bars" in out
    assert "enter_long" in out and "look-ahead in" in out
    assert "2022-01-" in out  # bar times of the bundled sample


def test_json_output_and_exit_code(peeking_file: Path) -> None:
    result = runner.invoke(
        app, ["check", "lookahead", f"{peeking_file}:Centred", "--json", "--checkpoints", "5"]
    )
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["lookahead"] is True
    assert payload["strategy"] == "centred"
    assert payload["checkpoints"] == 5 == len(payload["cuts"])
    assert 1 <= payload["horizon"] <= 15
    assert payload["violations"] and all(v["ahead"] <= 15 for v in payload["violations"])

    clean = runner.invoke(
        app, ["check", "lookahead", "sma_cross", "-p", "fast=5", "--param", "slow=60", "--json"]
    )
    assert clean.exit_code == 0, clean.output
    payload = json.loads(clean.stdout)
    assert payload["clean"] is True and payload["violations"] == []
    assert payload["params"] == {"fast": 5, "slow": 60, "short": False}


def test_data_file_and_time_range(tmp_path: Path, btc_df: pd.DataFrame) -> None:
    path = tmp_path / "bars.csv"
    btc_df.head(5_000).to_csv(path, index=False)
    result = runner.invoke(
        app,
        ["check", "lookahead", "momentum", "--data", str(path), "--start", "2022-01-02",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    head = btc_df.head(5_000)
    assert payload["n_bars"] == int((head["timestamp"] >= "2022-01-02").sum()) < 5_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown strategy 'nope'"),
        (["sma_cross", "-p", "fast"], "not of the form name=value"),
        (["sma_cross", "-p", "fast=500"], "above the maximum"),
        (["sma_cross", "--checkpoints", "0"], "checkpoints=0"),
        (["sma_cross", "--data", "missing.csv"], "missing.csv"),
    ],
)
def test_bad_input_exits_two(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["check", "lookahead", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_the_installed_command_exits_one_on_lookahead(peeking_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sapphire", "check", "lookahead", f"{peeking_file}:Peeking",
         "--checkpoints", "3", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["n_violations"] >= 1
