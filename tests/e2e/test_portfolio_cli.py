"""`sapphire portfolio` backtest, sweep and allocate, end to end on the bundled pairs."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sapphire.cli.portfolio import portfolio_app

DATA = Path(__file__).parents[1] / "data"
FILES = [str(DATA / f"binance-{s}_BTC-5m.feather") for s in ("ETH", "ADA", "XMR")]
ARGS = [a for f in FILES for a in ("--data", f)]
runner = CliRunner()


def test_backtest_two_strategies(tmp_path: Path) -> None:
    report = tmp_path / "p.html"
    args = ["backtest", "--strategy", "sma_cross", "--strategy", "momentum", *ARGS]
    res = runner.invoke(portfolio_app, [*args, "--weights", "2", "--weights", "1", "--json",
                                        "--report", str(report), "--cash", "10"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[0])
    assert out["trades"] > 0 and abs(out["weights"]["sma_cross"] - 2 / 3) < 1e-12
    assert report.exists()


def test_sweep_and_heatmap(tmp_path: Path) -> None:
    report = tmp_path / "s.html"
    res = runner.invoke(
        portfolio_app,
        ["sweep", "--strategy", "sma_cross", *ARGS, "--grid", "fast=5,10", "--grid",
         "slow=30,60", "--cash", "10", "--report", str(report)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "best by sharpe" in res.output and report.exists()


def test_allocate_hrp() -> None:
    res = runner.invoke(portfolio_app, ["allocate", "--method", "hrp", *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert abs(sum(out["weights"].values()) - 1) < 1e-9
    assert set(out["walk_forward"]) == {"hrp", "equal"}


def test_bad_input_is_a_clear_error() -> None:
    res = runner.invoke(portfolio_app, ["allocate", "--method", "magic", *ARGS])
    assert res.exit_code == 2 and "method='magic'" in res.output
