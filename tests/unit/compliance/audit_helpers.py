"""Shared by the audit tests on SQLite and on PostgreSQL: a filled log, the tampering a
database user could do in SQL (each with the problem `verify` must report), and
concurrent appenders (threads, processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import sqlalchemy as sa

from sapphire.compliance.audit import AuditLog
from sapphire.store import Store
from sapphire.store.audit_repo import canonical_json, record_hash, record_json


def fill(log: AuditLog, n: int = 6) -> list[int]:
    """Append `n` varied records; their seqs."""
    return [
        log.append(
            f"user-{i % 3}",
            "POST /api/v1/nodes" if i % 2 else "order.submitted",
            f"id={i}",
            {"status": 200 + i, "n": [i, i * 0.5, None], "ok": i % 2 == 0},
            None if i % 3 == 0 else f"10.0.0.{i}",
            ts_ns=1_700_000_000_000_000_000 + i,
        )
        for i in range(1, n + 1)
    ]


def sql(store: Store, statement: str, **params: object) -> None:
    """Run `statement` on the store's database, committed (what a tamperer does)."""
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def edit_detail(store: Store) -> tuple[str, int]:
    sql(store, "UPDATE audit_log SET detail = :d WHERE seq = 3", d='{"status":200}')
    return "edited", 3


def edit_actor(store: Store) -> tuple[str, int]:
    sql(store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5")
    return "edited", 5


def edit_time(store: Store) -> tuple[str, int]:
    sql(store, "UPDATE audit_log SET ts_ns = ts_ns + 1 WHERE seq = 2")
    return "edited", 2


def delete_middle(store: Store) -> tuple[str, int]:
    sql(store, "DELETE FROM audit_log WHERE seq = 4")
    return "deleted", 4


def delete_first(store: Store) -> tuple[str, int]:
    sql(store, "DELETE FROM audit_log WHERE seq = 1")
    return "deleted", 1


def delete_and_renumber(store: Store) -> tuple[str, int]:
    """Delete record 3 and close the gap: seq is contiguous, the link is broken."""
    sql(store, "DELETE FROM audit_log WHERE seq = 3")
    for seq in (4, 5, 6):
        sql(store, "UPDATE audit_log SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    return "deleted", 3


def swap_rows(store: Store) -> tuple[str, int]:
    """Exchange the positions of records 2 and 3 (through a free seq: the key is unique)."""
    sql(store, "UPDATE audit_log SET seq = -1 WHERE seq = 2")
    sql(store, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    sql(store, "UPDATE audit_log SET seq = 3 WHERE seq = -1")
    return "reordered", 2


def rewrite_with_new_hash(store: Store) -> tuple[str, int]:
    """Edit record 3 and store the hash its new fields give: record 4's link breaks."""
    with store.engine.begin() as conn:
        row = conn.execute(sa.text("SELECT * FROM audit_log WHERE seq = 3")).mappings().one()
        detail = canonical_json({"status": 204})
        digest = record_hash(
            row["prev_hash"],
            record_json(
                row["ts_ns"], row["actor"], row["action"], row["target"], detail, row["ip"]
            ),
        )
        conn.execute(
            sa.text("UPDATE audit_log SET detail = :d, hash = :h WHERE seq = 3"),
            {"d": detail, "h": digest},
        )
    return "deleted", 4


TAMPERING: dict[str, Callable[[Store], tuple[str, int]]] = {
    f.__name__: f
    for f in (
        edit_detail, edit_actor, edit_time, delete_middle, delete_first,
        delete_and_renumber, swap_rows, rewrite_with_new_hash,
    )
}  # fmt: skip


def append_from_threads(url: str, threads: int, each: int) -> None:
    """`threads` threads, each with its own Store (its own connections), append `each`
    records at once; re-raises the first failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            with Store(url) as store:
                log = AuditLog(store)
                start.wait()
                for i in range(each):
                    log.append(f"thread-{t}", "test.append", f"i={i}", {"t": t, "i": i})
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]


_PROCESS = """
import sys
from sapphire.compliance.audit import AuditLog
from sapphire.store import Store
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(url) as store:
    log = AuditLog(store)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        log.append(name, "test.append", f"i={i}", {"i": i})
"""


def append_from_processes(url: str, processes: int, each: int) -> None:
    """`processes` Python processes (as the service and nodes are) append `each` records,
    released together once all are connected."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, url, f"process-{p}", str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def assert_chained_appends(log: AuditLog, actors: list[str], each: int) -> None:
    """Every append is there once, seq 1..N without gaps, each actor's in its order, and
    the chain verifies."""
    records = log.records(10_000, newest_first=False)
    assert [r.seq for r in records] == list(range(1, len(actors) * each + 1))
    for actor in actors:
        mine = [r.detail["i"] for r in records if r.actor == actor]
        assert mine == list(range(each)), actor
    report = log.verify()
    assert report.ok, report.summary()
    assert report.checked == len(actors) * each
