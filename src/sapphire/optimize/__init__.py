"""Optimisation you can trust: parameter search, walk-forward, overfitting statistics.

```python
from sapphire.optimize import optimize, resume, load_study, list_studies

study = optimize("sample", "sma_cross", objectives=["sharpe"], trials=200, jobs=2, seed=1)
study.best_params, study.best_value, study.dsr, study.pbo
```

Names are imported on first use, so `import sapphire.optimize` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sapphire.optimize.objectives import (
        OBJECTIVES,
        Constraint,
        Objective,
        resolve_constraint,
        resolve_objective,
    )
    from sapphire.optimize.samplers import SAMPLERS
    from sapphire.optimize.space import Dimension, SearchSpace
    from sapphire.optimize.storage import StudyStorage, TrialRecord
    from sapphire.optimize.study import delete_study, list_studies, load_study, optimize, resume
    from sapphire.optimize.study_result import StudyResult
    from sapphire.optimize.trial import evaluate_trial
    from sapphire.optimize.walkforward import walk_forward
    from sapphire.optimize.walkforward_result import WalkForwardResult, load_walkforward

_LAZY = {
    "OBJECTIVES": "sapphire.optimize.objectives",
    "Constraint": "sapphire.optimize.objectives",
    "Objective": "sapphire.optimize.objectives",
    "resolve_constraint": "sapphire.optimize.objectives",
    "resolve_objective": "sapphire.optimize.objectives",
    "Dimension": "sapphire.optimize.space",
    "SearchSpace": "sapphire.optimize.space",
    "StudyStorage": "sapphire.optimize.storage",
    "TrialRecord": "sapphire.optimize.storage",
    "SAMPLERS": "sapphire.optimize.samplers",
    "StudyResult": "sapphire.optimize.study_result",
    "delete_study": "sapphire.optimize.study",
    "evaluate_trial": "sapphire.optimize.trial",
    "list_studies": "sapphire.optimize.study",
    "load_study": "sapphire.optimize.study",
    "optimize": "sapphire.optimize.study",
    "resume": "sapphire.optimize.study",
    "walk_forward": "sapphire.optimize.walkforward",
    "WalkForwardResult": "sapphire.optimize.walkforward_result",
    "load_walkforward": "sapphire.optimize.walkforward_result",
    "deflated_sharpe": "sapphire.optimize.stats",
    "overfitting_report": "sapphire.optimize.stats",
    "pbo_cscv": "sapphire.optimize.stats",
    "return_moments": "sapphire.optimize.stats",
    "monte_carlo": "sapphire.optimize.robustness",
    "stability_grid": "sapphire.optimize.robustness",
    "study_report": "sapphire.optimize.report",
    "make_executor": "sapphire.optimize.executor",
    "SharedBars": "sapphire.optimize.shared",
}

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "Constraint",
    "Dimension",
    "Objective",
    "SearchSpace",
    "SharedBars",
    "StudyResult",
    "StudyStorage",
    "TrialRecord",
    "WalkForwardResult",
    "deflated_sharpe",
    "delete_study",
    "evaluate_trial",
    "list_studies",
    "load_study",
    "load_walkforward",
    "make_executor",
    "monte_carlo",
    "optimize",
    "overfitting_report",
    "pbo_cscv",
    "resolve_constraint",
    "resolve_objective",
    "resume",
    "return_moments",
    "stability_grid",
    "study_report",
    "walk_forward",
]


def __getattr__(name: str) -> Any:
    """Import the public names lazily."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sapphire.optimize' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
