"""docs/strategies.md: its examples run and do what the guide says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

DOC = Path(__file__).resolve().parents[3] / "docs" / "strategies.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_both_examples_are_short_and_run_in_backtest() -> None:
    vector, event, usage = _blocks("python")
    for code in (vector, event):
        body = [line for line in code.splitlines() if line.strip()]
        assert len(body) <= 16  # about ten lines of strategy, imports included
    namespace: dict[str, Any] = {}
    exec(compile(vector + event, str(DOC), "exec"), namespace)
    calls = [line.split("=", 1)[1].split("#")[0] for line in usage.splitlines() if "=" in line]
    exec(usage.splitlines()[0], namespace)  # the import
    vector_result, event_result = (eval(call, namespace) for call in calls)
    assert vector_result.params == {"fast": 12, "slow": 30}
    assert vector_result.metrics["n_trades"] > 10
    assert event_result.config["engine"] == "event"
    assert event_result.params == {"qty": 0.05}
    trades = event_result.trades
    assert len(trades) > 10
    assert set(trades["side"]) == {"long"}
    assert (trades["size"] == 0.05).all()


def test_the_cli_example_runs_an_event_strategy_from_a_file(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from sapphire.cli.main import app

    _vector, event, _usage = _blocks("python")
    (tmp_path / "my_strategies.py").write_text(event, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (command,) = _blocks("bash")
    args = [*command.split()[1:], "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"n_trades"' in result.stdout
