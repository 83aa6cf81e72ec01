"""`sapphire graduate` end to end on real paper runs: check to paper and to live (the
paper run tracks its replay), history, show with the HTML report, override (audited),
challenger against a champion, and docs/governance.md's gate file.

The commands go through `graduate_app` (what `sapphire graduate` runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sapphire.cli.graduate import graduate_app
from sapphire.compliance.audit import AuditLog
from sapphire.optimize.graduation import GateConfig
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "governance.md"
RANGE = ["--start", "2022-01-03", "--end", "2022-01-03 03:00"]
runner = CliRunner()


def _doc_yaml() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/governance.md shows a gate file"
    return str(blocks[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    home = tmp_path_factory.mktemp("grad")
    url = f"sqlite:///{home / 'store.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    store = Store(url)
    ids = []
    for params in ({"fast": "5", "slow": "20"}, {"fast": "8", "slow": "30"}):
        cfg = PaperConfig(
            start="2022-01-03", end="2022-01-03 03:00", speed="max", size=0.01,
            size_mode="fixed", params=params,
        )  # fmt: skip
        session = PaperSession.start(cfg, store=store, home=home)
        assert session.run().status == "finished"
        ids.append(session.run_id)
    store.close()
    mp.undo()
    return url, ids[0], ids[1]


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(graduate_app, list(args))
    return result.exit_code, result.output


def test_check_history_show_override(runs: tuple[str, str, str], tmp_path: Path) -> None:
    url, champ, _ = runs
    code, out = _invoke("check", "--to", "paper", "-p", "fast=5", "-p", "slow=20", *RANGE,
                        "--storage", url, "--actor", "alice")  # fmt: skip
    assert code == 1, out
    for gate in ("deflated_sharpe", "pbo", "min_track_record", "random_entries", "max_drawdown"):
        assert gate in out
    assert "FAIL" in out and "override" in out
    code, out = _invoke("check", "--to", "live", "--paper-run", champ, "-p", "fast=5",
                        "-p", "slow=20", *RANGE, "--size", "0.01", "--size-mode", "fixed",
                        "--storage", url, "--json")  # fmt: skip
    live = json.loads(out)
    gates = {g["name"]: g for g in live["gates"]}
    assert gates["trade_match"]["figure"] == 1.0 and gates["trade_match"]["passed"]
    assert gates["tracking_error"]["figure"] == pytest.approx(0.0, abs=1e-12)
    assert live["evidence"]["paper_run"] == champ and live["evidence"]["paper_fills"] > 0
    code, out = _invoke("check", "--to", "live", "--paper-run", champ, "-p", "fast=9",
                        *RANGE, "--storage", url)  # fmt: skip
    assert code == 2 and "traded" in out  # the paper run traded other params
    code, out = _invoke("history", "--storage", url, "--json")
    history = json.loads(out)
    assert [d["stage"] for d in history] == ["live", "paper"]
    first = history[-1]["id"]
    report = tmp_path / "decision.html"
    code, out = _invoke("show", str(first), "--report", str(report), "--storage", url)
    assert code == 0 and "FAILED" in out and report.exists()
    assert history[-1]["evidence"]["data_hash"] in report.read_text()
    code, out = _invoke("override", str(first), "--reason", "risk committee 2026-12-09",
                        "--actor", "bob", "--storage", url)  # fmt: skip
    assert code == 0 and "overridden by bob" in out
    code, out = _invoke("show", str(first), "--storage", url, "--json")
    assert json.loads(out)["status"] == "overridden"
    code, out = _invoke("override", str(first), "--reason", "again", "--actor", "eve",
                        "--storage", url)  # fmt: skip
    assert code == 2 and "already" in out
    with Store(url) as store:
        assert AuditLog(store).records(action="graduation.override")[0].actor == "bob"


def test_challenger_and_the_documented_gate_file(
    runs: tuple[str, str, str], tmp_path: Path
) -> None:
    url, champ, challenger = runs
    code, out = _invoke("challenger", "--champion-run", champ, "--challenger-run", challenger,
                        "--storage", url, "--json")  # fmt: skip
    decision = json.loads(out)
    assert decision["kind"] == "challenger" and code == (0 if decision["passed"] else 1)
    beats = [g for g in decision["gates"] if g["name"] == "beats_champion"]
    assert len(beats) == 1 and decision["evidence"]["shared_bars"] > 30
    sr = decision["evidence"]
    assert beats[0]["passed"] == (sr["challenger_sharpe"] > sr["champion_sharpe"])
    gates = tmp_path / "gates.yaml"
    gates.write_text(_doc_yaml())
    assert GateConfig.from_yaml(gates).max_pbo == 0.3
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(
        "min_dsr: 0.000001\nmintrl_benchmark_sr: -1\nmax_random_pvalue: 0.9999\n"
        "risk_profile: aggressive\n"
    )
    code, out = _invoke("check", "--to", "paper", "-p", "fast=5", "-p", "slow=20", *RANGE,
                        "--gates", str(lenient), "--storage", url)  # fmt: skip
    assert "PASS" in out
    assert code == (1 if "FAIL" in out else 0)


def test_the_documented_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith(("True", "False")) and "deflated_sharpe" in out
