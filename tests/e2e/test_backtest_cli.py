"""Whole CLI flows: `sapphire backtest`, `sapphire demo`, `sapphire strategies`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sapphire.backtest import TRADE_COLUMNS
from sapphire.cli.main import app

runner = CliRunner()


def test_backtest_json_prints_one_object_of_metrics(tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    result = runner.invoke(
        app,
        ["backtest", "--data", "sample", "--strategy", "sma_cross", "--param", "fast=12",
         "-p", "slow=48", "--fee", "0.001", "--size", "0.5", "--json",
         "--trades-out", str(trades)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["strategy"] == "sma_cross"
    assert payload["params"] == {"fast": 12, "slow": 48, "short": False}
    assert payload["bars"] == 45_031
    metrics = payload["metrics"]
    for key in ("total_return", "sharpe", "max_drawdown", "n_trades", "fees", "win_rate"):
        assert key in metrics
    frame = pd.read_csv(trades)
    assert list(frame.columns) == TRADE_COLUMNS
    assert len(frame) == metrics["n_trades"] > 50
    assert frame["fees"].sum() == pytest.approx(metrics["fees"], rel=1e-9)
    assert metrics["final_equity"] == pytest.approx(10_000 + frame["pnl"].sum(), rel=1e-9)


def test_backtest_prints_a_table_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.html"
    result = runner.invoke(
        app,
        ["backtest", "--strategy", "mean_reversion", "--stop-loss", "0.01",
         "--take-profit", "0.02", "--intrabar", "worst", "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sharpe" in result.stdout and "max_drawdown" in result.stdout
    assert report.is_file() and report.stat().st_size > 100_000
    assert str(report) in result.stdout.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "fast=abc"], "SmaCross.fast: 'abc' is not a valid int"),
        (["--param", "fast"], "--param 'fast' is not of the form name=value"),
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--size-mode", "lots"], "size_mode='lots' is invalid"),
        (["--fee", "-1"], "error: fee=-1.0 is invalid"),
        (["--maker-fee", "-1"], "error: maker_fee=-1.0 is invalid"),
        (["--taker-fee", "0.2"], "taker_fee=0.2 is invalid"),
        (["--stop-loss", "2"], "stop_loss=2.0 is invalid"),
        (["--data", "NO/SUCH:SYMBOL"], "NO/SUCH:SYMBOL"),
        (["--risk-profile", "conservative"], "risk_profile needs engine='event'"),
        (["--maintenance-margin", "0.005"], "maintenance_margin need engine='event'"),
        (["--engine", "event", "--risk-profile", "careful"], "unknown risk profile 'careful'"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["backtest", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_event_backtest_with_a_risk_profile_and_liquidation() -> None:
    result = runner.invoke(
        app,
        ["backtest", "--engine", "event", "--risk-profile", "conservative",
         "--maintenance-margin", "0.005", "--size", "0.1", "--fee", "0.001", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["n_trades"] > 50
    # 5 BTC on 10,000 cash without leverage: the profile's balance check denies entries
    big = runner.invoke(
        app, ["backtest", "--engine", "event", "--risk-profile", "conservative", "--size", "5"]
    )
    assert big.exit_code == 0, big.output
    # counted by the risk engine's own reason, not a bare "denied by risk"
    margin = "orders denied (required margin N QUOTE exceeds free margin N QUOTE: "
    assert margin in " ".join(big.stderr.split())


def test_the_defaults_do_not_borrow_and_every_summary_states_its_costs() -> None:
    result = runner.invoke(app, ["backtest", "--fee", "0.001"])
    assert result.exit_code == 0, result.output
    caption = "fee 0.1% · size 95% of equity · leverage 1× · intrabar path"
    assert caption in " ".join(result.stdout.split())
    assert "warning" not in result.stderr
    payload = json.loads(runner.invoke(app, ["backtest", "--fee", "0.001", "--json"]).stdout)
    assert payload["settings"] == {
        "maker_fee": 0.001, "taker_fee": 0.001, "size_mode": "equity", "size": 0.95,
        "leverage": 1.0, "intrabar": "path",
    }  # fmt: skip
    assert payload["metrics"]["final_equity"] > 0 and payload["stopped_at"] is None


@pytest.mark.parametrize("engine", ["vector", "event"])
def test_a_run_whose_equity_reaches_zero_stops_and_says_so(engine: str, tmp_path: Path) -> None:
    # the old defaults, asked for: 1 BTC on 10,000 without a margin limit; the fees take
    # the equity to zero on Jan 3 (it used to trade on to -87,137)
    old = ["backtest", "--fee", "0.001", "--size-mode", "fixed", "--size", "1", "--leverage", "0"]
    report = tmp_path / "report.html"
    result = runner.invoke(app, [*old, "--engine", engine, "--report", str(report)])
    assert result.exit_code == 0, result.output
    warning = "equity reached zero at 2022-01-03 18:07 UTC; trading stopped"
    assert f"warning: {warning}" in result.stderr
    assert "size 1 (fixed, base units) · no margin limit" in " ".join(result.stdout.split())
    assert warning in report.read_text(encoding="utf-8")
    payload = json.loads(runner.invoke(app, [*old, "--engine", engine, "--json"]).stdout)
    assert payload["stopped_at"] == "2022-01-03T18:07:00+00:00"
    assert payload["warnings"] == [warning]
    assert payload["settings"]["leverage"] is None
    assert payload["metrics"]["final_equity"] > -1_000  # stopped near zero, not -87,137


def test_backtest_reads_a_file_and_resamples(tmp_path: Path, btc_df: pd.DataFrame) -> None:
    path = tmp_path / "btc.parquet"
    btc_df.to_parquet(path)
    result = runner.invoke(
        app, ["backtest", "--data", str(path), "--resample", "1h", "--strategy", "momentum",
              "--param", "lookback=12", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["bars"] == 751  # 2021-12-31 23:00 .. 2022-02-01 05:00 hourly bins


def test_strategies_lists_the_builtins() -> None:
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0
    for name in ("sma_cross", "momentum", "mean_reversion", "volatility_breakout"):
        assert name in result.stdout


@pytest.mark.slow
def test_demo_runs_from_the_installed_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "sapphire"
    env = {**os.environ, "SAPPHIRE_HOME": str(tmp_path / "home")}
    done = subprocess.run([str(exe), "demo"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("sma_cross", "momentum", "mean_reversion", "volatility_breakout"):
        assert name in done.stdout
    reports = sorted((tmp_path / "home" / "reports").glob("*.html"))
    assert len(reports) == 2  # the best built-in's backtest, and the ML model's evaluation
    out = done.stdout.replace("\n", "")
    assert all(r.name in out for r in reports)
    # the ML step: trained, registered, promoted, traded out of sample
    for text in ("ML: demo-btc v1", "champion, last 40%", "walk-forward retrained", "Sharpe"):
        assert text in done.stdout
    assert (tmp_path / "home" / "models" / "demo-btc" / "v1" / "model.pkl").is_file()


def test_the_funding_option_reaches_the_backtest(tmp_path: Path) -> None:
    """`--funding FILE` is a run setting like the API's `funding=`: same funding paid."""
    from sapphire import Backtest

    path = tmp_path / "funding.csv"
    rows = ["timestamp,funding_rate"]
    rows += [
        f"2022-01-{day:02d} {hour:02d}:00:00,0.0005" for day in range(1, 8) for hour in (0, 8, 16)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["--end", "2022-01-08", "--size", "0.5", "--size-mode", "equity"]
    result = runner.invoke(app, ["backtest", *args, "--funding", str(path), "--json"])
    assert result.exit_code == 0, result.output
    paid = json.loads(result.stdout)["metrics"]["funding"]
    api = Backtest("sample", end="2022-01-08", size=0.5, size_mode="equity", funding=path).run()
    assert paid != 0 and paid == pytest.approx(api.metrics["funding"])


def test_a_command_loads_only_its_own_module() -> None:
    """`sapphire strategies` imports neither the other commands' modules nor the store,
    the live node or the service's settings (cli/main.py loads a command on use)."""
    code = (
        "import sys; from sapphire.cli.main import app\n"
        "try:\n    app(['strategies'], standalone_mode=False)\n"
        "except SystemExit as exc:\n    assert not exc.code, exc\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "sapphire.strategy.builtins" in loaded  # it ran
    lazy = {m for m in loaded if m.startswith("sapphire.cli.")} - {
        "sapphire.cli.main", "sapphire.cli.common", "sapphire.cli.options",
        "sapphire.cli.backtest", "sapphire.cli.demo", "sapphire.cli.serve",
        "sapphire.cli.walkforward",
    }  # fmt: skip
    assert lazy == set()
    heavy = {"sapphire.store", "sapphire.live", "sapphire.ops.config", "sqlalchemy", "alembic"}
    assert heavy & loaded == set()


def test_help_lists_every_command_in_order_and_a_typo_gets_a_suggestion() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    names = [
        "backtest", "demo", "strategies", "walkforward", "serve", "init", "data", "check",
        "optimize", "ml", "paper", "runs", "exchange", "live", "users", "keys", "audit", "db",
        "notify", "config", "tax", "surveil", "portfolio", "graduate",
    ]  # fmt: skip
    listed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert [n for n in listed if n in names] == names
    assert "Check strategies for look-ahead." in result.stdout  # the help main.py gives
    report = runner.invoke(app, ["optimize", "report", "--help"])
    assert report.exit_code == 0 and "--html" in report.stdout, report.output
    typo = runner.invoke(app, ["dat"])
    assert typo.exit_code == 2 and "Did you mean 'data'?" in typo.output
