"""`sapphire db backup / verify / restore` as processes, on the configured SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from sapphire.store import migrate
from sapphire.store.models import metadata
from sapphire.store.schema import create_engine

DB_APP = "from sapphire.cli.db import db_app; db_app(prog_name='sapphire db')"


def run(home: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAPPHIRE_HOME": str(home), "COLUMNS": "200"}
    env.pop("SAPPHIRE_DATABASE_URL", None)
    if url is not None:
        env["SAPPHIRE_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-c", DB_APP, *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def add_runs(url: str, *names: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(metadata.tables["strategy_runs"]), [{
            "run_id": n, "mode": "PAPER", "status": "RUNNING", "strategy_ids": [],
            "config": {"n": n}, "ts_started": 1,
        } for n in names])  # fmt: skip
    engine.dispose()


def runs(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        got = list(conn.execute(sa.text("SELECT run_id FROM strategy_runs ORDER BY run_id")))
    engine.dispose()
    return [r[0] for r in got]


def test_backup_verify_restore(tmp_path: Path) -> None:
    home = tmp_path / "home"
    live = f"sqlite:///{home / 'sapphire.db'}"
    migrate(live)
    add_runs(live, "a", "b")
    (home / "models" / "m" / "v1").mkdir(parents=True)
    (home / "models" / "m" / "v1" / "model.pkl").write_bytes(b"model")

    made = run(home, "backup", "--json")  # the default store and backups folder
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    assert summary["verified"] is True and summary["problems"] == []
    assert summary["rows"] == 2 and summary["models"] == 1 and summary["dialect"] == "sqlite"
    archive = Path(summary["path"])
    assert archive.parent == home / "backups"

    checked = run(home, "verify", str(archive))
    assert checked.returncode == 0 and "verified" in checked.stdout

    add_runs(live, "c")
    refused = run(home, "restore", str(archive))
    assert refused.returncode == 2
    assert "is not empty" in refused.stderr and "--yes" in refused.stderr
    assert runs(live) == ["a", "b", "c"]

    replaced = run(home, "restore", str(archive), "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert "restored" in replaced.stdout and runs(live) == ["a", "b"]

    other = f"sqlite:///{tmp_path / 'other.db'}"
    fresh = run(home, "restore", str(archive), "--url", other, "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["rows"] == 2
    assert runs(other) == ["a", "b"]

    missing = run(home, "verify", str(tmp_path / "nope.tar.gz"))
    assert missing.returncode == 2 and "no backup at" in missing.stderr
    exists = run(home, "backup", "--out", str(archive))
    assert exists.returncode == 2 and "exists" in exists.stderr
