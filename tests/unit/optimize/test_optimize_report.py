"""The study report: sections present, importance, verdicts, and `optimize report NAME`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from sapphire.cli.optimize_report import report_command
from sapphire.optimize.report import (
    IDS,
    dsr_verdict,
    param_importance,
    pbo_verdict,
    rerun_best_trial,
    study_report,
)
from sapphire.optimize.study import load_study, optimize
from sapphire.optimize.study_result import StudyResult
from sapphire.optimize.walkforward import walk_forward
from sapphire.optimize.walkforward_result import WalkForwardResult

END = "2022-01-04"  # three days of the bundled month keep every study quick


def _divs(html: str) -> set[str]:
    return set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', html))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('report') / 'studies.db'}"


@pytest.fixture(scope="module")
def single(db: str) -> StudyResult:
    return optimize(
        "sample", "sma_cross", trials=24, sampler="random", seed=11, study="rep-single",
        storage=db, progress=False, end=END, fee=0.0005, size=0.5, size_mode="equity",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pareto(db: str) -> StudyResult:
    return optimize(
        "sample", "sma_cross", objectives=("sharpe", "max_drawdown"), trials=16,
        sampler="nsga2", seed=5, study="rep-pareto", storage=db, progress=False, end=END,
    )  # fmt: skip


@pytest.fixture(scope="module")
def walk(db: str) -> WalkForwardResult:
    return walk_forward(
        "sample", "sma_cross", train="1d", test="12h", trials=5, sampler="random", seed=2,
        study="rep-wf", storage=db, progress=False, save=False, end=END,
    )  # fmt: skip


def test_study_report_has_every_section(single: StudyResult, tmp_path: Path) -> None:
    path = study_report(single, tmp_path / "sub" / "study.html")
    html = path.read_text(encoding="utf-8")
    assert _divs(html) == {IDS["history"], IDS["importance"], IDS["stability"],
                           IDS["monte_carlo"]}  # fmt: skip
    assert f'id="{IDS["overfitting"]}"' in html
    assert 'id="dsr-verdict"' in html and 'id="pbo-verdict"' in html
    assert IDS["pareto"] not in html and IDS["wf_equity"] not in html
    # plotly.js is embedded once, so the page works offline and stays small
    assert html.count("window.PlotlyConfig") == 1
    assert "rep-single" in html and "best sharpe so far" in html
    for key, value in single.best_params.items():
        assert f"<th>{key}</th><td>{value}</td>" in html


def test_two_objectives_draw_the_pareto_front(pareto: StudyResult, tmp_path: Path) -> None:
    html = study_report(pareto, tmp_path / "pareto.html").read_text(encoding="utf-8")
    assert IDS["pareto"] in _divs(html)
    assert "Pareto front" in html
    assert len(pareto.best_trials) >= 1


def test_walk_forward_equity_is_added_when_given(
    single: StudyResult, walk: WalkForwardResult, tmp_path: Path
) -> None:
    html = study_report(single, tmp_path / "wf.html", walkforward=walk).read_text("utf-8")
    assert {IDS["wf_equity"], IDS["monte_carlo"]} <= _divs(html)
    assert html.count('class="fold-row"') == len(walk.folds) == 4
    assert "the walk-forward&#x27;s out-of-sample trades" in html


def test_param_importance_covers_the_varied_parameters(single: StudyResult) -> None:
    importance = param_importance(single)
    assert set(importance) == {"fast", "slow", "short"}
    assert sum(importance.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in importance.values())


def test_param_importance_of_each_objective(pareto: StudyResult) -> None:
    for objective in (0, 1):
        importance = param_importance(pareto, objective)
        assert set(importance) <= {"fast", "slow", "short"} and importance
        assert sum(importance.values()) == pytest.approx(1.0)


def test_param_importance_needs_two_complete_trials(db: str) -> None:
    one = optimize("sample", "sma_cross", trials=1, seed=1, study="rep-one", storage=db,
                   progress=False, end=END)  # fmt: skip
    assert param_importance(one) == {}


def test_rerun_of_the_best_trial_reproduces_its_metrics(single: StudyResult) -> None:
    result = rerun_best_trial(single)
    assert result is not None and single.best_trial is not None
    assert result.params == single.best_params
    assert result.metrics["sharpe"] == pytest.approx(single.best_trial.metrics["sharpe"])
    assert len(result.trades) == single.best_trial.metrics["n_trades"]


def test_in_memory_data_cannot_be_rerun(db: str, btc_df: pd.DataFrame) -> None:
    study = optimize(btc_df.iloc[:3_000], "sma_cross", trials=3, seed=1, study="rep-mem",
                     storage=db, progress=False)  # fmt: skip
    assert rerun_best_trial(study) is None


@pytest.mark.parametrize(
    ("dsr", "expected"),
    [(0.99, "≥ 0.95: the best trial"), (0.3, "< 0.95: a Sharpe ratio this high"),
     (None, "not computable")],
)  # fmt: skip
def test_dsr_verdict(dsr: float | None, expected: str) -> None:
    assert expected in dsr_verdict(dsr, 100)


@pytest.mark.parametrize(
    ("pbo", "expected"),
    [(0.02, "low"), (0.3, "moderate"), (0.8, "high"), (None, "not computable")],
)
def test_pbo_verdict(pbo: float | None, expected: str) -> None:
    assert expected in pbo_verdict(pbo)


# --- `sapphire optimize report NAME` ------------------------------------------------

app = typer.Typer()
app.command()(report_command)
runner = CliRunner()


def test_report_command_writes_a_study_report(single: StudyResult, db: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["rep-single", "--html", str(out), "--storage", db])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert IDS["history"] in _divs(out.read_text(encoding="utf-8"))


def test_report_command_finds_a_saved_walk_forward(walk: WalkForwardResult, tmp_path: Path) -> None:
    walk.save()
    out = tmp_path / "wf.html"
    result = runner.invoke(app, ["rep-wf", "--html", str(out)])  # storage from the saved run
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert IDS["wf_equity"] in _divs(html)
    assert "Study rep-wf-fold4" in html


def test_report_command_names_an_unknown_study(
    single: StudyResult, db: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["nope", "--html", str(tmp_path / "x.html"), "--storage", db])
    assert result.exit_code == 2
    assert "no study named 'nope'" in result.output
    assert load_study("rep-single", db).name == "rep-single"  # the storage is intact


def test_top_table_shows_each_parameter_set_once_and_the_counts(db: str, tmp_path: Path) -> None:
    # two parameter sets, twelve random trials: every set is tried several times
    study = optimize(
        "sample", "sma_cross", trials=12, sampler="random", seed=3, study="rep-dup",
        storage=db, progress=False, end=END, space={"fast": [2, 3], "slow": [10]}, short=False,
    )  # fmt: skip
    assert len({(t.params["fast"]) for t in study.trials}) == 2
    html = study_report(study, tmp_path / "dup.html").read_text(encoding="utf-8")
    table = re.search(rf'<table id="{IDS["top"]}">(.*?)</table>', html, re.S)
    assert table is not None
    rows = re.findall(r"<tr><td>(\d+)</td>", table.group(1))
    assert len(rows) == 2  # one row per set, its best trial
    best = {t.number for t in study.top_trials()}
    assert {int(r) for r in rows} == best and study.best_trial.number in best  # type: ignore[union-attr]
    assert "<th>complete trials</th><td>12</td>" in html
    assert "<th>ruined trials</th><td>0</td>" in html
    assert "<th>space size</th><td>2 valid parameter sets</td>" in html
