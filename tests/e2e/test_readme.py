"""README.md: every ```bash and ```python example runs and does what the README says.

The commands run through the installed `sapphire` console script, in a scratch folder
with its own `SAPPHIRE_HOME`. The user files the examples name are made there from the
bundled month first: `prices.csv` and `prices.parquet` (the whole month), `later.parquet`
(its last days, "later data" for `ml evaluate`) and `my_strategies.py` (the README's
`EmaRsi` and docs/strategies.md's `BuyTheDip`). Not run: the Quick start's `make demo`
and `make test` (they build the environment this test runs in; `sapphire demo` is
tested in test_backtest_cli.py) and `source .venv/bin/activate`. Two ML commands are
shortened by documented options (`SHORTER`: walk-forward retraining on the last days
with a shorter window, the ML paper run with more frequent drift checks);
nothing else is changed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = ("make ", "source ")
#: documented options that keep the slow ML examples short (command prefix -> options)
SHORTER = {
    "sapphire ml evaluate btc@champion --retrain": [
        "--start", "2022-01-20", "--train-bars", "6000", "--retrain-every", "3000",
    ],
    "sapphire paper --strategy ml": ["--drift-every", "250", "--drift-window", "500"],
}  # fmt: skip

pytestmark = pytest.mark.slow


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _commands(block: str) -> list[str]:
    """The block's command lines: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith(SKIP)]


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sapphire.data import load_ohlcv

    work = tmp_path_factory.mktemp("readme")
    frame, _report = load_ohlcv("sample")
    frame.to_csv(work / "prices.csv", index=False)
    frame.to_parquet(work / "prices.parquet")
    frame[frame["timestamp"] >= "2022-01-24"].to_parquet(work / "later.parquet")
    ema_rsi = next(b for b in _blocks("python") if "class EmaRsi" in b).split("\n\nr = ")[0]
    guide = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    buy_the_dip = next(
        b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "BuyTheDip" in b
    )
    (work / "my_strategies.py").write_text(f"{ema_rsi}\n\n{buy_the_dip}", encoding="utf-8")
    return work


@pytest.fixture
def exchange_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Held while a test serves the README's local exchange on its fixed port 8787: the two
    examples that do never overlap, whichever pytest workers run them (the lock file is in
    the folder all of a run's workers share)."""
    lock = tmp_path_factory.getbasetemp().parent / "readme-port-8787.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(command: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(command)
    assert words[0] == "sapphire", command
    for prefix, extra in SHORTER.items():
        if command.startswith(prefix):
            words += extra
    env = {
        **os.environ,
        "SAPPHIRE_HOME": str(workdir / "home"),
        "SAPPHIRE_PAPER_VENUE_IDLE": "60",  # no stray venue outlives a failure
        "COLUMNS": "200",
    }
    exe = Path(sys.executable).parent / "sapphire"
    return subprocess.run(
        [str(exe), *words[1:]], cwd=workdir, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip


def _trades(out: str) -> int:
    """The trade count a backtest printed (its table, or its JSON)."""
    if out.lstrip().startswith("{"):
        return int(json.loads(out)["metrics"]["n_trades"])
    match = re.search(r"n_trades\s*│\s*([\d,]+)", out)
    assert match is not None, out
    return int(match.group(1).replace(",", ""))


def _check(command: str, done: subprocess.CompletedProcess[str], workdir: Path) -> None:
    """What the README says the command does."""
    out = done.stdout
    if command.startswith("sapphire backtest"):
        assert _trades(out) > 0, command
        assert "warning" not in done.stderr, (command, done.stderr)
        assert "· leverage" in " ".join(out.split()) or out.lstrip().startswith("{")
    if "--report report.html" in command:
        assert (workdir / "report.html").stat().st_size > 100_000
    if "--trades-out trades.csv" in command:
        assert len(pd.read_csv(workdir / "trades.csv")) > 0
    if command.startswith("sapphire ml models rollback btc"):
        assert "version 1" in out or "btc@1" in out, out
    if command.startswith("sapphire ml drift"):
        assert "PSI" in out or "psi" in out, out
    if command.startswith("sapphire data show"):
        assert "BTC/USDT:USDT" in out
    if command.startswith("sapphire surveil"):
        assert out.startswith("no alerts:") and "2 run(s)" in out, out
    if command.startswith("sapphire audit verify"):
        assert "chain intact" in out and not out.startswith("0 records"), out
    if command.startswith("sapphire db backup"):
        assert "verified" in out and (workdir / "backup.tar.gz").stat().st_size > 1000, out
    if command.startswith("sapphire runs show"):
        run_id = command.split()[3]
        shown = _run(f"sapphire runs show {run_id} --json", workdir)
        detail = json.loads(shown.stdout)
        assert detail["status"] == "FINISHED" and detail["fills"] > 0, detail
        assert detail["denied"] == {}, detail["denied"]  # the README's paper runs trade


def test_the_command_line_examples(workdir: Path) -> None:
    (block,) = [b for b in _blocks("bash") if "sapphire strategies" in b]
    commands = _commands(block)
    ml = [c for c in commands if " ml " in f"{c} " or "--strategy ml" in c]
    for command in [c for c in commands if c not in ml]:
        done = _run(command, workdir)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        _check(command, done, workdir)
    # both paper runs of the README traded: the resumed one and the risk-sized one (a run
    # the README shows with `sapphire runs show` was checked as that command's result)
    shown = {c.split()[3] for c in commands if c.startswith("sapphire runs show")}
    for run_id in sorted({"p1", "p2"} - shown):
        detail = json.loads(_run(f"sapphire runs show {run_id} --json", workdir).stdout)
        assert detail["status"] == "FINISHED" and detail["fills"] > 0, (run_id, detail)


def test_the_machine_learning_examples(workdir: Path) -> None:
    (block,) = [b for b in _blocks("bash") if "sapphire strategies" in b]
    ml = [c for c in _commands(block) if " ml " in f"{c} " or "--strategy ml" in c]
    assert len(ml) >= 8
    for command in ml:
        done = _run(command, workdir)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        _check(command, done, workdir)


def test_the_local_exchange_example(workdir: Path, exchange_port: None) -> None:
    """Both commands serve on the documented port, stop by themselves after their bars,
    and the second goes on with the first's state."""
    (block,) = [b for b in _blocks("bash") if "sapphire exchange serve" in b and "&" not in b]
    commands = _commands(block)
    assert len(commands) == 2
    for command in commands:
        done = _run(command, workdir)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        assert "Local Bybit exchange on http://127.0.0.1:8787" in done.stdout
    assert "resumed:" in done.stdout and "http5xx=0.02" in done.stdout
    journal = workdir / "home" / "exchange" / "default" / "journal.jsonl"
    ops = [json.loads(line)["op"] for line in journal.read_text().splitlines()]
    assert ops.count("advance") == 120 + 60


def test_the_live_rehearsal_example(workdir: Path, exchange_port: None) -> None:
    """The offline rehearsal runs as a user's shell runs it (bash, the exchange in the
    background, `kill %1`): the live run trades on the local exchange, stops after its
    seconds leaving the run resumable, the resume goes on, and the exchange is stopped."""
    (block,) = [b for b in _blocks("bash") if "sapphire live --env local" in b]
    assert " &" in block and "kill %1" in block
    env = {
        **os.environ,
        "SAPPHIRE_HOME": str(workdir / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", block], cwd=workdir, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "Local Bybit exchange on http://127.0.0.1:8787" in done.stdout
    hint = "resume with: sapphire live resume rehearsal"
    assert (done.stdout + done.stderr).count(hint) == 2, (done.stdout, done.stderr)
    detail = json.loads(_run("sapphire runs show rehearsal --json", workdir).stdout)
    assert detail["mode"] == "LIVE" and detail["status"] == "RUNNING", detail
    assert detail["fills"] > 0, detail  # it traded on the exchange
    journal = workdir / "home" / "exchange" / "rehearsal" / "journal.jsonl"
    rows = [json.loads(line) for line in journal.read_text().splitlines()]
    links = [r["params"].get("orderLinkId") for r in rows if r["op"] == "order.create"]
    # every order of the run reached the exchange, none twice
    stored = {o["client_order_id"] for o in detail["orders"]}
    assert len(links) == len(set(links)) and set(links) == stored, (links, stored)
    with socket.socket() as probe:  # kill %1 stopped the exchange
        assert probe.connect_ex(("127.0.0.1", 8787)) != 0


def test_the_service_example(workdir: Path) -> None:
    """As a user's shell runs it: the first admin (and the signing secret) made, the
    service up on the documented port, health public, a resource refused without
    credentials, and the service stopped by `kill %1`."""
    (block,) = [b for b in _blocks("bash") if "sapphire serve &" in b]
    home = workdir / "service-home"
    env = {
        **os.environ,
        "SAPPHIRE_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", block], cwd=workdir, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "Created admin 'admin'" in done.stdout and "otpauth://totp/" in done.stdout
    assert '"status":"ok"' in done.stdout.replace(" ", ""), done.stdout
    assert done.stdout.rstrip().endswith("401"), done.stdout
    secret = home / "secrets" / "api.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    with socket.socket() as probe:  # kill %1 stopped the service
        assert probe.connect_ex(("127.0.0.1", 8000)) != 0


def test_the_python_examples(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("SAPPHIRE_HOME", str(workdir / "home"))
    blocks = _blocks("python")
    assert len(blocks) == 2
    for code in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(code, str(README), "exec"), namespace)
        r = namespace["r"]
        assert r.metrics["n_trades"] > 0 and r.warnings == []
    api = _section("The Python API")
    assert "95% of equity" in api and (workdir / "report.html").is_file()


def test_the_quick_start_is_left_to_make() -> None:
    (quick,) = [b for b in _blocks("bash") if "make demo" in b]
    assert _commands(quick) == []  # only make lines: not run here (see the docstring)
