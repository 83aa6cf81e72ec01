"""`AccountsRepo`: `Store`'s account balances (the latest state of each account) and equity
snapshots (the run's valuation over time, with each strategy's PnL)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sapphire.domain.events import AccountBalance, AccountState, check_ts
from sapphire.domain.identifiers import AccountId, StrategyId
from sapphire.domain.instrument import to_decimal
from sapphire.store.base import StoreBase, id_text
from sapphire.store.models import BalanceRow, EquitySnapshotRow, EquityStrategyRow
from sapphire.store.records import EquityRecord, EquitySnapshotLike, StrategyPnlRecord

__all__ = ["AccountsRepo"]


class AccountsRepo(StoreBase):
    """The balances, equity_snapshots and equity_snapshot_strategies tables."""

    def save_balances(self, state: AccountState, *, run_id: str | None = None) -> None:
        """Replace the stored balances of `state.account_id` with `state`'s."""
        run = self._run_of(run_id)
        if not isinstance(state, AccountState):
            raise ValueError(f"save_balances takes an AccountState, got {state!r}")
        account = id_text(state.account_id, "account_id", 100)
        rows = [
            {
                "run_id": run,
                "account_id": account,
                "currency": id_text(balance.currency, "currency", 30),
                "seq": seq,
                "total": balance.total,
                "locked": balance.locked,
                "base_currency": state.base_currency,
                "reported": state.reported,
                "event_id": id_text(state.event_id, "event_id", 100),
                "ts_ns": state.ts_ns,
            }
            for seq, balance in enumerate(state.balances)
        ]
        with self._tx() as conn:
            conn.execute(
                sa.delete(BalanceRow).where(
                    BalanceRow.run_id == run, BalanceRow.account_id == account
                )
            )
            if rows:
                conn.execute(sa.insert(BalanceRow), rows)

    def balances(self, run_id: str) -> dict[AccountId, AccountState]:
        """The latest saved `AccountState` of each of the run's accounts."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(BalanceRow)
                .where(BalanceRow.run_id == run_id)
                .order_by(BalanceRow.account_id, BalanceRow.seq)
            ).all()
        grouped: dict[str, list[Any]] = {}
        for row in rows:
            grouped.setdefault(row.account_id, []).append(row)
        out: dict[AccountId, AccountState] = {}
        for account, items in grouped.items():
            first = items[0]
            out[AccountId(account)] = AccountState(
                ts_ns=first.ts_ns,
                event_id=first.event_id,
                account_id=AccountId(account),
                balances=tuple(AccountBalance(r.currency, r.total, r.locked) for r in items),
                base_currency=first.base_currency,
                reported=first.reported,
            )
        return out

    def save_equity_snapshot(
        self, snapshot: EquitySnapshotLike, *, run_id: str | None = None
    ) -> int:
        """Append an equity snapshot (e.g. `Portfolio.snapshot(...)`) with its per-strategy
        PnL, in one transaction; returns the snapshot's id."""
        run = self._run_of(run_id)
        where = type(snapshot).__name__
        values: dict[str, Any] = {
            "run_id": run,
            "ts_ns": check_ts(snapshot.ts_ns, f"{where}.ts_ns"),
            "currency": id_text(snapshot.currency, f"{where}.currency", 30),
        }
        for name in (
            "equity", "balance", "unrealized_pnl", "margin_used", "gross_exposure",
            "net_exposure",
        ):  # fmt: skip
            values[name] = to_decimal(getattr(snapshot, name), f"{where}.{name}")
        strategies = []
        for key, pnl in dict(snapshot.strategies).items():
            if str(pnl.strategy_id) != str(key):
                raise ValueError(f"{where}.strategies[{key!r}] is the PnL of {pnl.strategy_id}")
            strategies.append(
                {
                    "strategy_id": id_text(pnl.strategy_id, "strategy_id", 100),
                    "currency": id_text(pnl.currency, "currency", 30),
                    **{
                        name: to_decimal(getattr(pnl, name), f"StrategyPnl.{name}")
                        for name in ("realized", "unrealized", "fees", "funding")
                    },
                }
            )
        with self._tx() as conn:
            inserted = conn.execute(sa.insert(EquitySnapshotRow).values(**values))
            primary_key = inserted.inserted_primary_key
            assert primary_key is not None
            snapshot_id = int(primary_key[0])
            if strategies:
                conn.execute(
                    sa.insert(EquityStrategyRow),
                    [{"snapshot_id": snapshot_id, **row} for row in strategies],
                )
        return snapshot_id

    def equity_snapshots(
        self,
        run_id: str,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[EquityRecord]:
        """The run's equity snapshots by time (in [start_ns, end_ns) if given), each with
        its per-strategy PnL."""
        query = sa.select(EquitySnapshotRow).where(EquitySnapshotRow.run_id == run_id)
        if start_ns is not None:
            query = query.where(EquitySnapshotRow.ts_ns >= start_ns)
        if end_ns is not None:
            query = query.where(EquitySnapshotRow.ts_ns < end_ns)
        with self._read() as conn:
            rows = conn.execute(query.order_by(EquitySnapshotRow.ts_ns, EquitySnapshotRow.id)).all()
            ids = [row.id for row in rows]
            pnl: dict[int, dict[StrategyId, StrategyPnlRecord]] = {i: {} for i in ids}
            for start in range(0, len(ids), 500):
                for item in conn.execute(
                    sa.select(EquityStrategyRow)
                    .where(EquityStrategyRow.snapshot_id.in_(ids[start : start + 500]))
                    .order_by(EquityStrategyRow.snapshot_id, EquityStrategyRow.strategy_id)
                ):
                    strategy = StrategyId(item.strategy_id)
                    pnl[item.snapshot_id][strategy] = StrategyPnlRecord(
                        strategy_id=strategy,
                        currency=item.currency,
                        realized=item.realized,
                        unrealized=item.unrealized,
                        fees=item.fees,
                        funding=item.funding,
                    )
        return [
            EquityRecord(
                ts_ns=row.ts_ns,
                currency=row.currency,
                equity=row.equity,
                balance=row.balance,
                unrealized_pnl=row.unrealized_pnl,
                margin_used=row.margin_used,
                gross_exposure=row.gross_exposure,
                net_exposure=row.net_exposure,
                strategies=pnl[row.id],
            )
            for row in rows
        ]
