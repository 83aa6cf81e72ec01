"""The audit log and the exchange-key vault on PostgreSQL (SAPPHIRE_TEST_POSTGRES_URL,
default postgresql+psycopg://postgres@127.0.0.1:5432/test): tampering found as on SQLite,
appends from several threads and processes (`LOCK TABLE audit_log IN EXCLUSIVE MODE`)
chaining without gaps, also while a node records orders, and keys sealed in BYTEA.

Each module works in a fresh schema, dropped afterwards. Skipped if PostgreSQL is
unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "compliance"))
from audit_helpers import (
    TAMPERING,
    append_from_processes,
    append_from_threads,
    assert_chained_appends,
    fill,
    sql,
)
from postgres_schema import fresh_schema

from sapphire.compliance.audit import AuditLog
from sapphire.domain import ClientOrderId, InstrumentId, Order, OrderSide, StrategyId
from sapphire.domain.events import OrderSubmitted
from sapphire.store import Store
from sapphire.store.keyvault import KdfParams, KeyVault, KeyVaultError


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    with Store(pg_url) as s:
        sql(s, "DELETE FROM audit_log")
        sql(s, "DELETE FROM exchange_keys")
        yield s


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_tampering_is_found_on_postgresql(store: Store, tamper: str) -> None:
    log = AuditLog(store)
    fill(log, 6)
    assert log.verify().ok
    kind, seq = TAMPERING[tamper](store)
    report = log.verify()
    assert report.problem is not None, tamper
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.summary()


def test_concurrent_threads_chain_without_gaps(store: Store, pg_url: str) -> None:
    append_from_threads(pg_url, 4, 15)
    assert_chained_appends(AuditLog(store), [f"thread-{t}" for t in range(4)], 15)


def test_concurrent_processes_chain_without_gaps(store: Store, pg_url: str) -> None:
    append_from_processes(pg_url, 3, 15)
    assert_chained_appends(AuditLog(store), [f"process-{p}" for p in range(3)], 15)


def test_orders_and_requests_audited_at_once_chain(store: Store, pg_url: str) -> None:
    """A node records order submissions (each audited in its own transaction) while the
    service appends request records from other connections."""
    store.start_run("pg-run", "paper", 1, strategy_ids=["s"])
    errors: list[BaseException] = []

    def node() -> None:
        try:
            with Store(pg_url) as mine:
                for i in range(20):
                    order = Order.market(
                        ClientOrderId(f"pg-run-s-{i}"), StrategyId("s"),
                        InstrumentId("BTCUSDT", "BYBIT"), OrderSide.BUY, Decimal("0.001"),
                        ts_init=10 + i,
                    )  # fmt: skip
                    mine.record_order_event(order, order.init_event, run_id="pg-run")
                    event = OrderSubmitted(ts_ns=11 + i, client_order_id=order.client_order_id)
                    order.apply(event)
                    mine.record_order_event(order, event, run_id="pg-run")
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=node)
    worker.start()
    append_from_threads(pg_url, 2, 10)
    worker.join()
    assert not errors, errors
    log = AuditLog(store)
    records = log.records(1000)
    assert [r.seq for r in records] == list(range(1, 41))
    assert sum(r.action == "order.submitted" for r in records) == 20
    assert log.verify().ok


def test_keys_are_sealed_in_bytea_and_checked(store: Store) -> None:
    cheap = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
    vault = KeyVault(store, b"p" * 32, kdf=cheap)
    vault.add("pg", "bybit", "testnet", "PgKey00000000007Qx2", "pg-secret")
    assert vault.decrypt("pg") == ("PgKey00000000007Qx2", "pg-secret")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM exchange_keys")).mappings().one()
    assert b"pg-secret" not in bytes(stored["ciphertext"]) and len(stored["nonce"]) == 12
    sql(store, "UPDATE exchange_keys SET env = 'mainnet'")
    with pytest.raises(KeyVaultError, match="failed its integrity check"):
        vault.decrypt("pg")
    with pytest.raises(KeyVaultError, match="master key does not open"):
        KeyVault(store, b"q" * 32, kdf=cheap).decrypt("pg")
