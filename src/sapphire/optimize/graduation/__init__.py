"""Strategy graduation: the written-down gates a strategy passes to move backtest ->
paper -> live (docs/governance.md).

```python
from sapphire.optimize.graduation import GateConfig, check_graduation

check = check_graduation("sma_cross", {"fast": 10, "slow": 30}, "sample", to="paper",
                         study="sma-search", gates=GateConfig(min_dsr=0.9))
check.passed, [(g.name, g.figure, g.threshold, g.passed) for g in check.gates]
```

The decisions are stored by `sapphire.compliance.graduation`; `sapphire graduate` does both.
"""

from __future__ import annotations

from sapphire.optimize.graduation.check import (
    GraduationCheck,
    check_challenger,
    check_graduation,
    code_version,
    data_hash,
)
from sapphire.optimize.graduation.gates import (
    GATE_NAMES,
    Gate,
    GateConfig,
    min_track_record_length,
    random_entry_test,
)
from sapphire.optimize.graduation.report import decision_report

__all__ = [
    "GATE_NAMES",
    "Gate",
    "GateConfig",
    "GraduationCheck",
    "check_challenger",
    "check_graduation",
    "code_version",
    "data_hash",
    "decision_report",
    "min_track_record_length",
    "random_entry_test",
]
