"""`Store`: the trading ledger's repository (orders, fills, positions, balances, equity,
risk events, runs) on SQLite or PostgreSQL.

Crash safety: every `record_*`/`save_*`/`start_run`/`finish_run` call is one transaction,
committed (and, on SQLite, fsynced) before it returns, so the node may act on a state
change as soon as the call returns. `with store.atomic(): ...` groups several calls into
one transaction (e.g. a fill, the position it moved and the new balances).

This module holds the runs; the connection and transactions are `StoreBase`
(store/base.py) and each kind of record has its repository: instruments_repo.py,
orders_repo.py (orders, their events and fills), positions_repo.py, accounts_repo.py
(balances and equity snapshots) and risk_repo.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from sapphire.domain.events import check_ts
from sapphire.domain.identifiers import StrategyId
from sapphire.store.accounts_repo import AccountsRepo
from sapphire.store.base import StoreIntegrityError, run_text
from sapphire.store.codec import dump_json, load_json
from sapphire.store.instruments_repo import InstrumentsRepo
from sapphire.store.models import StrategyRunRow
from sapphire.store.orders_repo import OrdersRepo
from sapphire.store.positions_repo import PositionsRepo
from sapphire.store.records import RunInfo, RunMode, RunStatus
from sapphire.store.risk_repo import RiskRepo

__all__ = ["Store", "StoreIntegrityError"]


class Store(InstrumentsRepo, OrdersRepo, PositionsRepo, AccountsRepo, RiskRepo):
    """The ledger at one database URL (default `$SAPPHIRE_HOME/sapphire.db`).

    `upgrade=True` (the default) runs the migrations first; with `upgrade=False` a database
    that is not at the newest revision is refused with a ValueError.
    """

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        mode: RunMode | str,
        ts_ns: int,
        strategy_ids: Iterable[StrategyId | str] = (),
        config: Mapping[str, Any] | None = None,
    ) -> RunInfo:
        """Record a new RUNNING run and make it the current one (`Store.run_id`); a ValueError
        if `run_id` exists (resume it instead)."""
        run = run_text(run_id)
        try:
            run_mode = RunMode(str(mode).upper())
        except ValueError:
            modes = ", ".join(m.value for m in RunMode)
            raise ValueError(f"run mode must be one of {modes}, got {mode!r}") from None
        strategies = tuple(StrategyId(str(s)) for s in strategy_ids)
        stored_config = dump_json(dict(config or {}))
        values = {
            "run_id": run,
            "mode": run_mode.value,
            "status": RunStatus.RUNNING.value,
            "strategy_ids": [str(s) for s in strategies],
            "config": stored_config,
            "ts_started": check_ts(ts_ns),
            "ts_finished": None,
            "reason": None,
        }
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(StrategyRunRow.run_id).where(StrategyRunRow.run_id == run)
            ).first()
            if exists is not None:
                raise ValueError(f"run {run!r} already exists")
            conn.execute(sa.insert(StrategyRunRow).values(**values))
        self.run_id = run
        return self.run(run)

    def resume_run(self, run_id: str) -> RunInfo:
        """Make `run_id` (which must exist and still be RUNNING) the current run again,
        e.g. after a crash; load its state with `open_orders`, `positions`, `balances`."""
        info = self.run(run_id)
        if info.status is not RunStatus.RUNNING:
            raise ValueError(f"run {run_id!r} is {info.status}, it cannot be resumed")
        self.run_id = info.run_id
        return info

    def finish_run(
        self,
        run_id: str,
        ts_ns: int,
        status: RunStatus | str = RunStatus.FINISHED,
        reason: str | None = None,
    ) -> RunInfo:
        """Mark a run FINISHED (or FAILED, with a `reason`)."""
        run = run_text(run_id)
        try:
            final = RunStatus(str(status).upper())
        except ValueError:
            final = None
        if final not in (RunStatus.FINISHED, RunStatus.FAILED):
            raise ValueError(f"a run finishes as FINISHED or FAILED, got {status!r}")
        with self._tx() as conn:
            result = conn.execute(
                sa.update(StrategyRunRow)
                .where(StrategyRunRow.run_id == run)
                .values(status=final.value, ts_finished=check_ts(ts_ns), reason=reason)
            )
            if result.rowcount == 0:
                raise ValueError(f"no run {run!r}")
        return self.run(run)

    def run(self, run_id: str) -> RunInfo:
        """The run `run_id` (ValueError if unknown)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(StrategyRunRow).where(StrategyRunRow.run_id == run_id)
            ).first()
        if row is None:
            raise ValueError(f"no run {run_id!r}")
        return _run_info(row)

    def runs(self, status: RunStatus | str | None = None) -> list[RunInfo]:
        """Every run, oldest first (only those in `status` if given)."""
        query = sa.select(StrategyRunRow).order_by(StrategyRunRow.ts_started, StrategyRunRow.run_id)
        if status is not None:
            try:
                wanted = RunStatus(str(status).upper())
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise ValueError(f"run status {status!r} is unknown: expected {known}") from None
            query = query.where(StrategyRunRow.status == wanted.value)
        with self._read() as conn:
            return [_run_info(row) for row in conn.execute(query)]


def _run_info(row: Any) -> RunInfo:
    return RunInfo(
        run_id=row.run_id,
        mode=RunMode(row.mode),
        status=RunStatus(row.status),
        strategy_ids=tuple(StrategyId(s) for s in row.strategy_ids),
        config=load_json(row.config),
        ts_started=row.ts_started,
        ts_finished=row.ts_finished,
        reason=row.reason,
    )
