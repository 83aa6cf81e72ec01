"""`sapphire paper`, `sapphire paper resume`, `sapphire runs list/show` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app

runner = CliRunner()
ARGS = [
    "paper", "--start", "2022-01-03", "--end", "2022-01-03 02:00", "--speed", "max",
    "--size", "0.01", "--size-mode", "fixed", "-p", "fast=5", "-p", "slow=20", "--fee", "0.0005",
    "--no-live",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAPPHIRE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")  # no stray venue outlives a failure


def test_paper_session_then_runs_list_and_show() -> None:
    result = runner.invoke(app, [*ARGS, "--run-id", "p1", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["run_id"] == "p1" and view["status"] == "finished"
    assert view["bar"] + 1 == view["bars"] == 120
    assert view["fills"] > 0 and view["position"] == "0.00"
    # its logs: every order event and fill a JSON line in the run's run.log
    log = Path(os.environ["SAPPHIRE_HOME"]) / "paper" / "p1" / "run.log"
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    fills = [x for x in lines if x["event"].startswith("fill ")]
    assert len(fills) == view["fills"] and all(x["correlation_id"] for x in fills)

    listed = runner.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (run,) = json.loads(listed.stdout)
    assert (run["run_id"], run["mode"], run["status"]) == ("p1", "PAPER", "FINISHED")
    assert run["config"]["speed"] == "max" and run["config"]["params"] == {
        "fast": "5", "slow": "20",
    }  # fmt: skip

    shown = runner.invoke(app, ["runs", "show", "p1", "--json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["fills"] == view["fills"]
    assert detail["balances"]["paper"]["QUOTE"] == view["balance"]
    assert all(o["status"] == "FILLED" for o in detail["orders"])

    taken = runner.invoke(app, [*ARGS, "--run-id", "p1", "--start", "2022-01-04"])
    assert taken.exit_code == 2 and "run 'p1' already exists" in taken.stderr

    table = runner.invoke(app, ["runs", "show", "p1"])
    assert table.exit_code == 0 and "positions" in table.stdout and "p1" in table.stdout


def test_the_defaults_size_from_equity_and_the_summary_says_so() -> None:
    base = [a for a in ARGS if a not in ("--size", "0.01", "--size-mode", "fixed")]
    result = runner.invoke(app, [*base, "--run-id", "p3", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["fills"] > 0 and view["denied"] == {} and view["stopped"] is None
    assert view["settings"] == {
        "maker_fee": 0.0005, "taker_fee": 0.0005, "size_mode": "equity", "size": 0.95,
        "leverage": 1.0, "intrabar": "path",
    }  # fmt: skip
    table = runner.invoke(app, [*base, "--run-id", "p4"])
    assert table.exit_code == 0, table.output
    caption = "fee 0.05% · size 95% of equity · leverage 1× · intrabar path"
    assert caption in " ".join(table.stdout.split())
    assert caption in " ".join(runner.invoke(app, ["runs", "show", "p4"]).stdout.split())


def test_denied_orders_are_counted_by_reason_at_the_end_and_in_runs_show() -> None:
    # 1 BTC (~46,000) on 10,000 at leverage 1: the risk engine denies every entry
    big = ["--size", "1", "--size-mode", "fixed"]
    base = [a for a in ARGS if a not in ("--size", "0.01", "--size-mode", "fixed")]
    result = runner.invoke(app, [*base, *big, "--run-id", "p5", "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    (reason, count), *_ = view["denied"].items()
    margin = "required margin N QUOTE exceeds free margin N QUOTE"
    assert view["fills"] == 0 and reason == margin and count > 0
    assert f"warning: {count} orders denied ({margin}: {count})" in " ".join(result.stderr.split())
    shown = runner.invoke(app, ["runs", "show", "p5", "--json"])
    assert json.loads(shown.stdout)["denied"] == {margin: count}
    table = runner.invoke(app, ["runs", "show", "p5"])
    assert f"{count} orders denied ({margin}: {count})" in " ".join(table.stderr.split())


def test_stop_and_resume_to_the_end() -> None:
    first = runner.invoke(app, [*ARGS, "--run-id", "p2", "--seconds", "0", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["status"] == "stopped"
    again = runner.invoke(app, ["paper", "resume", "p2", "--no-live", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["status"] == "finished"
    # a finished run cannot be resumed
    late = runner.invoke(app, ["paper", "resume", "p2", "--no-live"])
    assert late.exit_code == 2 and "FINISHED" in late.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--speed", "fast"], "speed='fast'"), (["--size-mode", "kelly"], "size_mode='kelly'"),
     (["--risk-profile", "yolo"], "yolo"), (["--strategy", "nope"], "nope"),
     (["--data", "missing.csv"], "missing.csv"),
     (["--size-mode", "risk"], "gives no stop-loss"),
     (["--funding", "no-funding.csv"], "no-funding.csv"),
     (["--fee", "2"], "fee=2.0 is invalid"), (["--fee", "0.5"], "fee=0.5 is invalid")],
)  # fmt: skip
def test_bad_options_exit_2_naming_the_value(
    extra: list[str], message: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, [*ARGS, "--run-id", "bad", *extra])
    assert result.exit_code == 2
    assert message in result.stderr
    # nothing was started or stored: no run, no run folder
    assert json.loads(runner.invoke(app, ["runs", "list", "--json"]).stdout) == []
    assert not (tmp_path / "home" / "paper" / "bad").exists()


def test_ctrl_c_exits_130_with_the_resume_hint(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "SAPPHIRE_HOME": str(tmp_path / "home2")}
    args = [a if a != "max" else "20x" for a in ARGS]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sapphire", *args, "--run-id", "c1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "home2" / "paper" / "c1" / "venue.db").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    time.sleep(1.5)  # trading by now
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resume with: sapphire paper resume c1" in err


def test_unknown_run() -> None:
    result = runner.invoke(app, ["runs", "show", "nope"])
    assert result.exit_code == 2 and "no run 'nope'" in result.stderr
    result = runner.invoke(app, ["paper", "resume", "nope", "--no-live"])
    assert result.exit_code == 2 and "no run 'nope'" in result.stderr
