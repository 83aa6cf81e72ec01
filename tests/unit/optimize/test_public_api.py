"""The optimiser's public names: `sapphire.optimize`, and the names `study` and
`walkforward` exported before they were split, still there and the same objects."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sapphire.optimize as optimize_package
from sapphire.optimize import (
    folds,
    out_of_sample,
    samplers,
    study,
    study_result,
    trial,
    walkforward,
    walkforward_result,
)


@pytest.mark.parametrize("name", optimize_package.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(optimize_package, name) is not None


@pytest.mark.parametrize(
    ("old_home", "name", "new_home"),
    [
        (study, "SAMPLERS", samplers),
        (study, "StudyResult", study_result),
        (study, "TrialContext", trial),
        (study, "evaluate_trial", trial),
        (walkforward, "Fold", folds),
        (walkforward, "WindowSpec", folds),
        (walkforward, "make_folds", folds),
        (walkforward, "OutOfSample", out_of_sample),
        (walkforward, "out_of_sample_backtest", out_of_sample),
        (walkforward, "stitch_equity", out_of_sample),
        (walkforward, "annualised_return", out_of_sample),
        (walkforward, "efficiency", out_of_sample),
        (walkforward, "FOLD_METRICS", walkforward_result),
        (walkforward, "FoldResult", walkforward_result),
        (walkforward, "WalkForwardResult", walkforward_result),
        (walkforward, "load_walkforward", walkforward_result),
        (walkforward, "walkforward_path", walkforward_result),
    ],
)
def test_moved_names_are_still_where_they_were(
    old_home: object, name: str, new_home: object
) -> None:
    moved = name.removeprefix("_")
    assert getattr(old_home, name) is getattr(new_home, moved)


def test_a_worker_imports_neither_storage_nor_optuna() -> None:
    """The executor's workers import `trial` (evaluate_trial's module): keep it light."""
    code = (
        "import sys, sapphire.optimize.trial\n"
        "print(' '.join(m for m in ('sqlalchemy', 'alembic', 'optuna', 'sapphire.store')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
