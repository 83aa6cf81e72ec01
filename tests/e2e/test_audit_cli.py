"""`sapphire keys` and `sapphire audit` as a user runs them, in processes of their own
with a fresh `$SAPPHIRE_HOME`: a key added from standard input (never the command line),
the master key file made owner-only, the key listed masked and removed, every change
audited; `audit verify` exits 0 on the intact chain and 1 naming the first record edited
or deleted in SQL, and against an anchor when the tail is cut off.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

KEY, SECRET = "CliKey0000000007Qx2", "cli-secret-Zq9vWw8Rr7Tt6"
EXE = Path(sys.executable).parent / "sapphire"


def run(home: Path, group: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`sapphire <group> <args>` with `home` as $SAPPHIRE_HOME and `stdin` piped."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SAPPHIRE_MASTER_KEY", "SAPPHIRE_DATABASE_URL"))
    }  # fmt: skip
    env.update(SAPPHIRE_HOME=str(home), COLUMNS="200")
    return subprocess.run(
        [str(EXE), group, *args], input=stdin, env=env, text=True,
        capture_output=True, timeout=120,
    )  # fmt: skip


def test_keys_are_added_from_stdin_listed_masked_removed_and_audited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    added = run(home, "keys", "add", "bybit-test", "--env", "testnet", stdin=f"{KEY}\n{SECRET}\n")
    assert added.returncode == 0, added.stderr
    master = home / "secrets" / "master.key"
    assert f"Created the master key {master}" in " ".join(added.stdout.split())
    assert "Stored exchange key 'bybit-test': bybit testnet, API key ****7Qx2" in added.stdout
    assert stat.S_IMODE(master.stat().st_mode) == 0o600 and len(master.read_bytes()) == 32
    assert stat.S_IMODE(master.parent.stat().st_mode) == 0o700

    again = run(home, "keys", "add", "bybit-test", "--env", "demo", stdin=f"{KEY}\n{SECRET}\n")
    assert again.returncode == 2 and "'bybit-test' exists already" in again.stderr
    replaced = run(
        home, "keys", "add", "bybit-test", "--env", "demo", "--replace",
        stdin="NewKey000000009Kd1\nnew-secret\n",
    )  # fmt: skip
    assert replaced.returncode == 0 and "Replaced" in replaced.stdout
    assert "Created the master key" not in replaced.stdout  # made once
    short = run(home, "keys", "add", "other", "--env", "testnet", stdin=f"{KEY}\n")
    assert short.returncode == 2 and "it held 1 non-empty lines" in short.stderr

    listed = run(home, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert (shown["name"], shown["env"], shown["key_hint"]) == ("bybit-test", "demo", "****9Kd1")
    table = run(home, "keys", "list")
    assert "bybit-test" in table.stdout and "****9Kd1" in table.stdout
    removed = run(home, "keys", "remove", "bybit-test", "--yes")
    assert removed.returncode == 0 and "Removed exchange key 'bybit-test'" in removed.stdout
    assert "No exchange keys stored" in run(home, "keys", "list").stdout

    for result in (added, again, replaced, listed, table, removed):
        assert SECRET not in result.stdout + result.stderr
        assert "new-secret" not in result.stdout + result.stderr

    shown_log = run(home, "audit", "show", "--json")
    assert shown_log.returncode == 0, shown_log.stderr
    records = json.loads(shown_log.stdout)
    assert [r["action"] for r in records] == ["keys.add", "keys.replace", "keys.remove"]
    assert all(r["actor"].startswith("cli:") and r["target"] == "name=bybit-test" for r in records)
    assert SECRET not in shown_log.stdout and KEY not in shown_log.stdout


def _audited_home(tmp_path: Path, n: int) -> Path:
    """A home whose audit log holds `n` records (appended here: the commands under test
    are the readers)."""
    from sapphire.compliance.audit import AuditLog
    from sapphire.store import Store

    home = tmp_path / "home"
    with Store(f"sqlite:///{home / 'sapphire.db'}") as store:
        for i in range(n):
            AuditLog(store).append("cli:ops", "keys.add", f"name=k{i}", {"env": "testnet"})
    return home


def _sql(home: Path, statement: str) -> None:
    with sqlite3.connect(home / "sapphire.db") as conn:
        conn.execute(statement)


def test_audit_verify_finds_an_edited_then_a_deleted_record(tmp_path: Path) -> None:
    home = _audited_home(tmp_path, 4)
    ok = run(home, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    summary = ok.stdout.strip()
    assert summary.startswith("4 records, chain intact, head ") and len(summary.split()[-1]) == 64
    head = summary.split()[-1]
    shown = run(home, "audit", "show", "--limit", "2")
    assert shown.returncode == 0 and "name=k3" in shown.stdout and "name=k1" not in shown.stdout

    _sql(home, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    edited = run(home, "audit", "verify")
    assert edited.returncode == 1
    assert "audit log broken at seq 3 (edited)" in edited.stdout
    assert "2 records intact before it" in edited.stdout

    _sql(home, "DELETE FROM audit_log WHERE seq = 3")
    deleted = run(home, "audit", "verify", "--json")
    assert deleted.returncode == 1
    report = json.loads(deleted.stdout)
    assert report["ok"] is False and report["problem"]["kind"] == "deleted"
    assert report["problem"]["seq"] == 3 and report["checked"] == 2

    _sql(home, "DELETE FROM audit_log WHERE seq >= 3")  # a cut-off tail: only an anchor tells
    assert run(home, "audit", "verify").returncode == 0
    anchored = run(home, "audit", "verify", "--anchor", head)
    assert anchored.returncode == 1 and "(anchor)" in anchored.stdout
    bad = run(home, "audit", "verify", "--anchor", "nothex")
    assert bad.returncode == 2 and "anchor must be 64 lowercase hex characters" in bad.stderr
