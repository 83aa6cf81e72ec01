"""`Store`: the trading ledger's repository (orders, fills, positions, balances, equity,
risk events, runs) on SQLite or PostgreSQL.

Crash safety: every `record_*`/`save_*`/`start_run`/`finish_run` call is one transaction,
committed (and, on SQLite, fsynced) before it returns, so the node may act on a state
change as soon as the call returns. `with store.atomic(): ...` groups several calls into
one transaction (e.g. a fill, the position it moved and the new balances).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from sapphire.domain.enums import (
    ContractType,
    LiquiditySide,
    OrderSide,
    PositionSide,
    TradingState,
)
from sapphire.domain.events import (
    AccountBalance,
    AccountState,
    OrderEvent,
    OrderFilled,
    RiskEvent,
    TradingStateChanged,
    check_ts,
)
from sapphire.domain.identifiers import (
    AccountId,
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.domain.instrument import Instrument, to_decimal
from sapphire.domain.orders import Order
from sapphire.store.codec import decode_event, dump_json, encode_event, load_json
from sapphire.store.models import (
    BalanceRow,
    EquitySnapshotRow,
    EquityStrategyRow,
    FillRow,
    InstrumentRow,
    OrderEventRow,
    OrderRow,
    PositionRow,
    RiskEventRow,
    StrategyRunRow,
)
from sapphire.store.records import (
    EquityRecord,
    EquitySnapshotLike,
    FillRecord,
    PositionLike,
    PositionState,
    RunInfo,
    RunMode,
    RunStatus,
    StrategyPnlRecord,
)
from sapphire.store.schema import (
    create_engine,
    current_revision,
    head_revision,
    is_memory,
    upgrade_engine,
)
from sapphire.store.schema import migrate as migrate_schema
from sapphire.store.url import default_url

__all__ = ["Store", "StoreIntegrityError"]

_ACCOUNT_WIDE = ""  # positions.strategy_id of a position that belongs to no strategy
_NET_LEG = "NET"  # positions.leg of a netting position


class StoreIntegrityError(ValueError):
    """The stored history disagrees with what is being recorded or rebuilt."""


def _id_text(value: object, name: str, max_len: int) -> str:
    text = str(value)
    if not text or len(text) > max_len:
        raise ValueError(f"{name} must be 1..{max_len} characters, got {text!r}")
    return text


def _run_text(run_id: object) -> str:
    if not isinstance(run_id, str) or not run_id or run_id != run_id.strip():
        raise ValueError(f"run_id must be a non-empty str without padding, got {run_id!r}")
    return _id_text(run_id, "run_id", 100)


def _upsert(conn: Connection, table: sa.Table, values: dict[str, Any], keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE on SQLite and PostgreSQL."""
    dialect = conn.dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert(table)
    elif dialect == "sqlite":
        insert = sqlite.insert(table)
    else:
        raise ValueError(f"the store supports SQLite and PostgreSQL, not {dialect}")
    update = {k: insert.excluded[k] for k in values if k not in keys}
    conn.execute(insert.values(**values).on_conflict_do_update(index_elements=keys, set_=update))


class Store:
    """The ledger at one database URL (default `$SAPPHIRE_HOME/sapphire.db`).

    `upgrade=True` (the default) runs the migrations first; with `upgrade=False` a database
    that is not at the newest revision is refused with a ValueError.
    """

    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        self.url = url or default_url()
        memory = is_memory(self.url)
        if upgrade and not memory:
            migrate_schema(self.url)
        elif not upgrade:
            at, head = current_revision(self.url), head_revision()
            if at != head:
                raise ValueError(
                    f"database {self._safe_url()} is at schema revision {at}, this version "
                    f"needs {head}: run sapphire.store.migrate(url)"
                )
        self.engine: Engine = create_engine(self.url)
        if upgrade and memory:  # a private database that lives as long as this engine
            upgrade_engine(self.engine)
        self._local = threading.local()
        #: The run that `record_*`/`save_*` calls without `run_id=` write to.
        self.run_id: str | None = None
        self._known_runs: set[str] = set()  # runs seen to exist (runs are never deleted)

    def _safe_url(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._safe_url()!r})"

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run the store calls inside the block in one transaction (nested blocks join it);
        an exception rolls all of them back."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with _refused(), self.engine.begin() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with _refused(), self.engine.begin() as new:
            yield new

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as new:
            yield new

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
        run = _run_text(run_id)
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
        run = _run_text(run_id)
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
            query = query.where(StrategyRunRow.status == RunStatus(str(status).upper()).value)
        with self._read() as conn:
            return [_run_info(row) for row in conn.execute(query)]

    # -- instruments ----------------------------------------------------------------------

    def save_instrument(self, instrument: Instrument) -> None:
        """Insert or replace an instrument's specification."""
        if not isinstance(instrument, Instrument):
            raise ValueError(f"save_instrument takes an Instrument, got {instrument!r}")
        values = {
            "instrument_id": _id_text(instrument.id, "instrument_id", 200),
            "symbol": instrument.id.symbol,
            "venue": instrument.id.venue,
            "base": instrument.base,
            "quote": instrument.quote,
            "settlement": instrument.settlement,
            "contract_type": instrument.contract_type.value,
            "tick_size": instrument.tick_size,
            "lot_size": instrument.lot_size,
            "min_qty": instrument.min_qty,
            "max_qty": instrument.max_qty,
            "min_notional": instrument.min_notional,
            "max_notional": instrument.max_notional,
            "maker_fee": instrument.maker_fee,
            "taker_fee": instrument.taker_fee,
            "multiplier": instrument.multiplier,
        }
        with self._tx() as conn:
            _upsert(conn, InstrumentRow.__table__, values, ["instrument_id"])  # type: ignore[arg-type]

    def instruments(self) -> list[Instrument]:
        """Every stored instrument, by id."""
        with self._read() as conn:
            rows = conn.execute(sa.select(InstrumentRow).order_by(InstrumentRow.instrument_id))
            return [_instrument(row) for row in rows]

    def instrument(self, instrument_id: InstrumentId | str) -> Instrument:
        """The stored instrument `instrument_id` (ValueError if unknown)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(InstrumentRow).where(InstrumentRow.instrument_id == str(instrument_id))
            ).first()
        if row is None:
            raise ValueError(f"no instrument {str(instrument_id)!r} in the store")
        return _instrument(row)

    # -- orders ---------------------------------------------------------------------------

    def record_order_event(
        self, order: Order, event: OrderEvent, *, run_id: str | None = None
    ) -> None:
        """Record `event` (already applied: `order.apply(event)`) and the order's new state.

        One transaction: the order row is upserted and every event of `order.events` that is
        not stored yet is appended, with a fill row for each `OrderFilled`, so that the
        store then holds exactly the order's history and state (never a gap). Recording an
        event that is already stored adds nothing for it (safe to retry after a crash). A
        stored history that differs from `order.events` raises StoreIntegrityError.
        """
        run = self._run_of(run_id)
        if not isinstance(order, Order):
            raise ValueError(f"record_order_event takes an Order, got {order!r}")
        if not isinstance(event, OrderEvent):
            raise ValueError(f"record_order_event takes an order event, got {event!r}")
        history = order.events
        if not any(item.event_id == event.event_id and item == event for item in history):
            raise ValueError(
                f"{type(event).__name__} {event.event_id} is not in the history of order "
                f"{order.client_order_id}: apply it to the order before recording it"
            )
        coid = _id_text(order.client_order_id, "client_order_id", 200)
        with self._tx() as conn:
            stored = conn.execute(
                sa.select(OrderEventRow.seq, OrderEventRow.event_id, OrderRow.run_id)
                .join(OrderRow, OrderRow.client_order_id == OrderEventRow.client_order_id)
                .where(OrderEventRow.client_order_id == coid)
                .order_by(OrderEventRow.seq)
            ).all()
            if stored and stored[0].run_id != run:
                raise StoreIntegrityError(
                    f"order {coid} belongs to run {stored[0].run_id!r}, not {run!r}"
                )
            if len(stored) > len(history):
                raise StoreIntegrityError(
                    f"order {coid} has {len(stored)} stored events but only {len(history)} "
                    "in memory: rebuild it from the store (Store.order) before going on"
                )
            for row in stored:
                if row.event_id != history[row.seq].event_id:
                    raise StoreIntegrityError(
                        f"order {coid}: stored event {row.seq} is {row.event_id}, "
                        f"in memory it is {history[row.seq].event_id}"
                    )
            _upsert(conn, OrderRow.__table__, _order_values(run, order), ["client_order_id"])  # type: ignore[arg-type]
            for seq in range(len(stored), len(history)):
                self._insert_event(conn, run, order, seq, history[seq])

    def record_fill(self, order: Order, fill: OrderFilled, *, run_id: str | None = None) -> None:
        """`record_order_event` for a fill: the fill row, its event and the order's state in
        one transaction."""
        if not isinstance(fill, OrderFilled):
            raise ValueError(f"record_fill takes an OrderFilled event, got {fill!r}")
        self.record_order_event(order, fill, run_id=run_id)

    def _insert_event(
        self, conn: Connection, run: str, order: Order, seq: int, event: OrderEvent
    ) -> None:
        conn.execute(
            sa.insert(OrderEventRow).values(
                client_order_id=str(order.client_order_id),
                run_id=run,
                seq=seq,
                event_type=type(event).__name__,
                event_id=_id_text(event.event_id, "event_id", 100),
                ts_ns=event.ts_ns,
                payload=encode_event(event),
            )
        )
        if isinstance(event, OrderFilled):
            conn.execute(
                sa.insert(FillRow).values(
                    run_id=run,
                    client_order_id=str(order.client_order_id),
                    venue_order_id=(
                        None if event.venue_order_id is None else str(event.venue_order_id)
                    )
                    or (None if order.venue_order_id is None else str(order.venue_order_id)),
                    trade_id=_id_text(event.trade_id, "trade_id", 200),
                    strategy_id=str(order.strategy_id),
                    instrument_id=str(order.instrument_id),
                    side=order.side.value,
                    last_qty=event.last_qty,
                    last_px=event.last_px,
                    fee=event.fee,
                    fee_currency=_id_text(event.fee_currency, "fee_currency", 30),
                    liquidity=event.liquidity.value,
                    ts_ns=event.ts_ns,
                )
            )

    def order_events(self, client_order_id: ClientOrderId | str) -> list[OrderEvent]:
        """The stored events of an order, oldest first (empty if unknown)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(OrderEventRow.event_type, OrderEventRow.payload)
                .where(OrderEventRow.client_order_id == str(client_order_id))
                .order_by(OrderEventRow.seq)
            ).all()
        events = []
        for row in rows:
            event = decode_event(row.event_type, row.payload)
            assert isinstance(event, OrderEvent)
            events.append(event)
        return events

    def order(self, client_order_id: ClientOrderId | str) -> Order:
        """The order rebuilt by replaying its stored events (ValueError if unknown)."""
        query = sa.select(OrderRow).where(OrderRow.client_order_id == str(client_order_id))
        orders = self._rebuild(query)
        if not orders:
            raise ValueError(f"no order {str(client_order_id)!r} in the store")
        return orders[0]

    def orders(
        self,
        run_id: str,
        *,
        strategy_id: StrategyId | str | None = None,
        open_only: bool = False,
    ) -> list[Order]:
        """The run's orders (of one strategy, only open ones...), rebuilt from their events,
        oldest first."""
        query = sa.select(OrderRow).where(OrderRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(OrderRow.strategy_id == str(strategy_id))
        if open_only:
            query = query.where(OrderRow.is_open.is_(True))
        return self._rebuild(query.order_by(OrderRow.ts_init, OrderRow.client_order_id))

    def open_orders(self, run_id: str, strategy_id: StrategyId | str | None = None) -> list[Order]:
        """The run's open orders (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL),
        rebuilt from their events: what a restarted node reconciles with the venue."""
        return self.orders(run_id, strategy_id=strategy_id, open_only=True)

    def _rebuild(self, query: sa.Select[Any]) -> list[Order]:
        with self._read() as conn:
            rows = conn.execute(query).all()
            ids = [row.client_order_id for row in rows]
            events: dict[str, list[OrderEvent]] = {i: [] for i in ids}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for ev in conn.execute(
                    sa.select(
                        OrderEventRow.client_order_id,
                        OrderEventRow.event_type,
                        OrderEventRow.payload,
                    )
                    .where(OrderEventRow.client_order_id.in_(chunk))
                    .order_by(OrderEventRow.client_order_id, OrderEventRow.seq)
                ):
                    decoded = decode_event(ev.event_type, ev.payload)
                    assert isinstance(decoded, OrderEvent)
                    events[ev.client_order_id].append(decoded)
        orders = []
        for row in rows:
            try:
                order = Order.from_events(events[row.client_order_id])
            except ValueError as exc:
                raise StoreIntegrityError(
                    f"order {row.client_order_id} cannot be rebuilt from its events: {exc}"
                ) from exc
            _check_row(row, order)
            orders.append(order)
        return orders

    def client_order_ids(
        self, run_id: str, strategy_id: StrategyId | str | None = None
    ) -> list[ClientOrderId]:
        """Every client order id of the run (of one strategy), oldest first: a restarted node
        restores its id generators from these (`ClientOrderIdGenerator.restore`)."""
        query = sa.select(OrderRow.client_order_id).where(OrderRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(OrderRow.strategy_id == str(strategy_id))
        with self._read() as conn:
            rows = conn.execute(query.order_by(OrderRow.ts_init, OrderRow.client_order_id))
            return [ClientOrderId(row[0]) for row in rows]

    def fills(
        self,
        run_id: str,
        *,
        strategy_id: StrategyId | str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[FillRecord]:
        """The run's fills by time (of one strategy, in [start_ns, end_ns) if given)."""
        query = sa.select(FillRow).where(FillRow.run_id == run_id)
        if strategy_id is not None:
            query = query.where(FillRow.strategy_id == str(strategy_id))
        if start_ns is not None:
            query = query.where(FillRow.ts_ns >= start_ns)
        if end_ns is not None:
            query = query.where(FillRow.ts_ns < end_ns)
        with self._read() as conn:
            rows = conn.execute(query.order_by(FillRow.ts_ns, FillRow.id)).all()
        return [
            FillRecord(
                run_id=row.run_id,
                client_order_id=ClientOrderId(row.client_order_id),
                venue_order_id=None
                if row.venue_order_id is None
                else VenueOrderId(row.venue_order_id),
                trade_id=TradeId(row.trade_id),
                strategy_id=StrategyId(row.strategy_id),
                instrument_id=InstrumentId.parse(row.instrument_id),
                side=OrderSide(row.side),
                last_qty=row.last_qty,
                last_px=row.last_px,
                fee=row.fee,
                fee_currency=row.fee_currency,
                liquidity=LiquiditySide(row.liquidity),
                ts_ns=row.ts_ns,
            )
            for row in rows
        ]

    # -- positions, balances, equity --------------------------------------------------------

    def save_position(self, position: PositionLike, *, run_id: str | None = None) -> None:
        """Insert or replace a position's state (key: run, strategy, instrument, leg)."""
        run = self._run_of(run_id)
        leg = position.leg
        if leg is not None and PositionSide(leg) is PositionSide.FLAT:
            raise ValueError("a position leg is LONG, SHORT or None (netting), not FLAT")
        values = {
            "run_id": run,
            "strategy_id": (
                _ACCOUNT_WIDE
                if position.strategy_id is None
                else _id_text(position.strategy_id, "strategy_id", 100)
            ),
            "instrument_id": _id_text(position.instrument_id, "instrument_id", 200),
            "leg": _NET_LEG if leg is None else PositionSide(leg).value,
            "quantity": to_decimal(position.quantity, "position.quantity"),
            "cost_basis": to_decimal(position.cost_basis, "position.cost_basis"),
            "avg_px": (
                None if position.avg_px is None else to_decimal(position.avg_px, "position.avg_px")
            ),
            "realized_pnl": to_decimal(position.realized_pnl, "position.realized_pnl"),
            "fees": to_decimal(position.fees, "position.fees"),
            "funding": to_decimal(position.funding, "position.funding"),
            "buy_qty": to_decimal(position.buy_qty, "position.buy_qty"),
            "sell_qty": to_decimal(position.sell_qty, "position.sell_qty"),
            "fill_count": _count(position.fill_count, "position.fill_count"),
            "multiplier": to_decimal(position.multiplier, "position.multiplier"),
            "ts_opened": _opt_ts(position.opened_ts_ns, "position.opened_ts_ns"),
            "ts_closed": _opt_ts(position.closed_ts_ns, "position.closed_ts_ns"),
            "ts_last": _opt_ts(position.last_ts_ns, "position.last_ts_ns"),
        }
        keys = ["run_id", "strategy_id", "instrument_id", "leg"]
        with self._tx() as conn:
            _upsert(conn, PositionRow.__table__, values, keys)  # type: ignore[arg-type]

    def positions(self, run_id: str, *, open_only: bool = False) -> list[PositionState]:
        """The run's positions (flat ones too unless `open_only`), by strategy and instrument."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(PositionRow)
                .where(PositionRow.run_id == run_id)
                .order_by(PositionRow.strategy_id, PositionRow.instrument_id, PositionRow.leg)
            ).all()
        states = [
            PositionState(
                instrument_id=InstrumentId.parse(row.instrument_id),
                strategy_id=None
                if row.strategy_id == _ACCOUNT_WIDE
                else StrategyId(row.strategy_id),
                leg=None if row.leg == _NET_LEG else PositionSide(row.leg),
                quantity=row.quantity,
                cost_basis=row.cost_basis,
                avg_px=row.avg_px,
                realized_pnl=row.realized_pnl,
                fees=row.fees,
                funding=row.funding,
                buy_qty=row.buy_qty,
                sell_qty=row.sell_qty,
                fill_count=row.fill_count,
                multiplier=row.multiplier,
                opened_ts_ns=row.ts_opened,
                closed_ts_ns=row.ts_closed,
                last_ts_ns=row.ts_last,
            )
            for row in rows
        ]
        return [s for s in states if s.quantity != 0] if open_only else states

    def save_balances(self, state: AccountState, *, run_id: str | None = None) -> None:
        """Replace the stored balances of `state.account_id` with `state`'s."""
        run = self._run_of(run_id)
        if not isinstance(state, AccountState):
            raise ValueError(f"save_balances takes an AccountState, got {state!r}")
        account = _id_text(state.account_id, "account_id", 100)
        rows = [
            {
                "run_id": run,
                "account_id": account,
                "currency": _id_text(balance.currency, "currency", 30),
                "seq": seq,
                "total": balance.total,
                "locked": balance.locked,
                "base_currency": state.base_currency,
                "reported": state.reported,
                "event_id": _id_text(state.event_id, "event_id", 100),
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
            "currency": _id_text(snapshot.currency, f"{where}.currency", 30),
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
                    "strategy_id": _id_text(pnl.strategy_id, "strategy_id", 100),
                    "currency": _id_text(pnl.currency, "currency", 30),
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

    # -- risk -------------------------------------------------------------------------------

    def record_risk_event(
        self, event: RiskEvent | TradingStateChanged, *, run_id: str | None = None
    ) -> None:
        """Append a `RiskEvent` or `TradingStateChanged` (a retry of the same event is a
        no-op)."""
        run = self._run_of(run_id)
        if not isinstance(event, RiskEvent | TradingStateChanged):
            raise ValueError(
                f"record_risk_event takes a RiskEvent or TradingStateChanged, got {event!r}"
            )
        event_id = _id_text(event.event_id, "event_id", 100)
        values = {
            "run_id": run,
            "event_type": type(event).__name__,
            "event_id": event_id,
            "strategy_id": None if event.strategy_id is None else str(event.strategy_id),
            "ts_ns": event.ts_ns,
            "kind": event.kind if isinstance(event, RiskEvent) else None,
            "state": event.state.value if isinstance(event, TradingStateChanged) else None,
            "reason": event.reason,
            "payload": encode_event(event),
        }
        with self._tx() as conn:
            exists = conn.execute(
                sa.select(RiskEventRow.run_id).where(RiskEventRow.event_id == event_id)
            ).first()
            if exists is None:
                conn.execute(sa.insert(RiskEventRow).values(**values))

    def risk_events(self, run_id: str) -> list[RiskEvent | TradingStateChanged]:
        """The run's risk events and trading-state changes, by time."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(RiskEventRow.event_type, RiskEventRow.payload)
                .where(RiskEventRow.run_id == run_id)
                .order_by(RiskEventRow.ts_ns, RiskEventRow.id)
            ).all()
        out: list[RiskEvent | TradingStateChanged] = []
        for row in rows:
            event = decode_event(row.event_type, row.payload)
            assert isinstance(event, RiskEvent | TradingStateChanged)
            out.append(event)
        return out

    def trading_state(
        self, run_id: str, strategy_id: StrategyId | str | None = None
    ) -> TradingState:
        """The latest recorded trading state of the node (or of one strategy); ACTIVE if
        none was recorded."""
        query = sa.select(RiskEventRow.state).where(
            RiskEventRow.run_id == run_id, RiskEventRow.state.is_not(None)
        )
        if strategy_id is None:
            query = query.where(RiskEventRow.strategy_id.is_(None))
        else:
            query = query.where(RiskEventRow.strategy_id == str(strategy_id))
        with self._read() as conn:
            state = conn.execute(
                query.order_by(RiskEventRow.ts_ns.desc(), RiskEventRow.id.desc()).limit(1)
            ).scalar()
        return TradingState.ACTIVE if state is None else TradingState(state)

    # -- helpers ----------------------------------------------------------------------------

    def _run_of(self, run_id: str | None) -> str:
        """The run a write goes to; ValueError naming it if it was never started."""
        run = run_id if run_id is not None else self.run_id
        if run is None:
            raise ValueError("no run: call start_run/resume_run or pass run_id=")
        run = _run_text(run)
        if run not in self._known_runs:
            with self._read() as conn:
                found = conn.execute(
                    sa.select(StrategyRunRow.run_id).where(StrategyRunRow.run_id == run)
                ).first()
            if found is None:
                raise ValueError(f"no run {run!r}: start it with start_run first")
            self._known_runs.add(run)
        return run


@contextmanager
def _refused() -> Iterator[None]:
    """A constraint the database enforces (unique ids, foreign keys) -> StoreIntegrityError."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise StoreIntegrityError(f"the database refused the write: {exc.orig}") from exc


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


def _instrument(row: Any) -> Instrument:
    return Instrument(
        InstrumentId(row.symbol, row.venue),
        row.base,
        row.quote,
        row.settlement,
        ContractType(row.contract_type),
        row.tick_size,
        row.lot_size,
        maker_fee=row.maker_fee,
        taker_fee=row.taker_fee,
        min_qty=row.min_qty,
        max_qty=row.max_qty,
        min_notional=row.min_notional,
        max_notional=row.max_notional,
        multiplier=row.multiplier,
    )


def _order_values(run: str, order: Order) -> dict[str, Any]:
    def opt(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "client_order_id": str(order.client_order_id),
        "run_id": run,
        "strategy_id": _id_text(order.strategy_id, "strategy_id", 100),
        "instrument_id": _id_text(order.instrument_id, "instrument_id", 200),
        "side": order.side.value,
        "type": order.type.value,
        "quantity": order.quantity,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "trailing_offset": order.trailing_offset,
        "trailing_offset_type": opt(
            None if order.trailing_offset_type is None else order.trailing_offset_type.value
        ),
        "time_in_force": order.time_in_force.value,
        "expire_time_ns": order.expire_time_ns,
        "post_only": order.post_only,
        "reduce_only": order.reduce_only,
        "contingency_type": order.contingency_type.value,
        "parent_order_id": opt(order.parent_order_id),
        "linked_order_ids": [str(i) for i in order.linked_order_ids],
        "status": order.status.value,
        "is_open": order.is_open,
        "filled_qty": order.filled_qty,
        "avg_px": order.avg_px,
        "venue_order_id": opt(order.venue_order_id),
        "ts_init": order.ts_init,
        "ts_last": order.ts_last,
    }


def _check_row(row: Any, order: Order) -> None:
    """The replayed order must agree with its stored row (else the history is damaged)."""
    expected = _order_values(row.run_id, order)
    for name in ("status", "filled_qty", "avg_px", "quantity", "price", "venue_order_id"):
        stored = getattr(row, name)
        if stored != expected[name]:
            raise StoreIntegrityError(
                f"order {row.client_order_id}: stored {name} is {stored}, "
                f"replaying its events gives {expected[name]}"
            )


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _opt_ts(value: object, name: str) -> int | None:
    return None if value is None else check_ts(value, name)
