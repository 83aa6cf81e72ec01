"""Persistence: the trading ledger in SQLite (default) or PostgreSQL.

```python
from sapphire.store import Store

store = Store()  # $SAPPHIRE_HOME/sapphire.db, migrated to the newest schema
store.start_run("run-1", "paper", ts_ns, strategy_ids=["sma-1"])
order.apply(event)
store.record_order_event(order, event)  # committed before it returns
...
store.resume_run("run-1")  # after a crash
orders = store.open_orders("run-1")  # rebuilt by replaying their events
```

The optimiser's studies and the model registry live in the same database (default
`default_url()`), and one set of Alembic migrations creates every table.

Money is exact (`Decimal` in, the same `Decimal` out, on both backends); timestamps are
int nanoseconds. See docs/engine.md, "Persistence".
"""

from __future__ import annotations

from sapphire.store.records import (
    EquityRecord,
    EquitySnapshotLike,
    FillRecord,
    PositionLike,
    PositionState,
    RunInfo,
    RunMode,
    RunStatus,
    StrategyPnlLike,
    StrategyPnlRecord,
)
from sapphire.store.schema import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    upgrade_engine,
)
from sapphire.store.store import Store, StoreIntegrityError
from sapphire.store.url import default_url

__all__ = [
    "EquityRecord",
    "EquitySnapshotLike",
    "FillRecord",
    "PositionLike",
    "PositionState",
    "RunInfo",
    "RunMode",
    "RunStatus",
    "Store",
    "StoreIntegrityError",
    "StrategyPnlLike",
    "StrategyPnlRecord",
    "alembic_config",
    "current_revision",
    "default_url",
    "downgrade",
    "head_revision",
    "migrate",
    "upgrade_engine",
]
