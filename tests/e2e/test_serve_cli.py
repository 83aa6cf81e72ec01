"""`sapphire serve` as an operator runs it: a subprocess on a free port that answers over
HTTP with its security headers and stops on Ctrl-C; it refuses to start without a signing
secret or with a bad setting (exit 2, a clear message, no traceback), warns when bound
beyond loopback; and the curl and Python examples of docs/api.md run against it as
written (their printed lines are the ones the page shows)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).parent / "sapphire"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECRET = "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environ(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAPPHIRE_")}
    return {**env, "SAPPHIRE_HOME": str(home), **extra}


class Serving:
    """`sapphire serve ARGS` running until `stop()`; `printed` is its first lines."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(EXE), "serve", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not lines or not lines[-1].startswith("Ctrl-C stops it"):
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("".join(lines) + self.proc.stderr.read())  # type: ignore[union-attr]
            lines.append(line)
        self.printed = "".join(lines)
        match = re.search(r"on (http://\S+)/api/v1", self.printed)
        assert match, self.printed
        self.url = match.group(1)
        self.wait_until_up()

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/api/v1/health", timeout=2)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    port = free_port()
    server = Serving(environ(tmp_path, SAPPHIRE_API_SECRET=SECRET), "--port", str(port))
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_serve_answers_with_its_headers_and_stops_on_ctrl_c(serving: Serving) -> None:
    assert serving.url.startswith("http://127.0.0.1:")
    health = httpx.get(f"{serving.url}/api/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert health.headers["x-content-type-options"] == "nosniff"
    assert health.headers["cache-control"] == "no-store"
    assert "server" not in health.headers  # no product banner
    assert httpx.get(f"{serving.url}/api/v1/ready").json()["ready"] is True
    assert httpx.get(f"{serving.url}/api/v1/version").status_code == 401
    assert httpx.get(f"{serving.url}/openapi.json").json()["info"]["title"] == "Sapphire API"
    code, err = serving.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_serve_refuses_without_a_signing_secret(tmp_path: Path) -> None:
    answer = subprocess.run(
        [str(EXE), "serve", "--port", str(free_port())],
        env=environ(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert answer.returncode == 2
    said = " ".join(answer.stderr.split())  # Rich wraps long lines
    assert said.startswith("error: no API signing secret: set SAPPHIRE_API_SECRET")
    assert "sapphire users create-admin" in said
    assert "Traceback" not in answer.stderr


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        ({"SAPPHIRE_CORS_ORIGINS": "*"}, [], "origin '*' is refused"),
        ({"SAPPHIRE_API_SECRET": "short"}, [], "has 5 bytes; at least 32 are needed"),
        ({}, ["--host", "bad host"], "service.host: host 'bad host' is not an address"),
        ({}, ["--port", "0"], "Invalid value for '--port'"),
    ],
)
def test_serve_refuses_a_bad_setting(
    tmp_path: Path, extra: dict[str, str], args: list[str], message: str
) -> None:
    env = environ(tmp_path, **{"SAPPHIRE_API_SECRET": SECRET, **extra})
    answer = subprocess.run(
        [str(EXE), "serve", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 2
    assert message in " ".join(answer.stderr.split()), answer.stderr
    assert "Traceback" not in answer.stderr


def test_serve_warns_when_bound_beyond_loopback(tmp_path: Path) -> None:
    port = free_port()
    env = environ(tmp_path, SAPPHIRE_API_SECRET=SECRET)
    server = Serving(env, "--host", "0.0.0.0", "--port", str(port))
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200
        code, err = server.stop()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert code == 0
    assert "warning: binding 0.0.0.0: the API is reachable from the network" in " ".join(
        err.split()
    )


# -- docs/api.md ----------------------------------------------------------------------------


def doc_blocks(language: str) -> list[str]:
    """The ```language blocks of docs/api.md, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", DOCS.read_text(), re.S | re.M)


def expected_prints(code: str) -> list[str]:
    """What each `print(...)  # shown` line of the examples says it prints (the text
    before a colon: after it comes an explanation)."""
    shown = []
    for line in code.splitlines():
        if line.lstrip().startswith("print(") and "  # " in line:
            shown.append(line.split("  # ", 1)[1].split(":", 1)[0].strip())
    return shown


def test_the_docs_examples_run_against_the_service(tmp_path: Path) -> None:
    env = environ(tmp_path)  # no secret: create-admin makes the file
    made = subprocess.run(
        [str(EXE), "users", "create-admin", "--username", "root", "--password-stdin"],
        input=f"{PASSWORD}\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    recovery = re.findall(r"^\s+([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})$", made.stdout, re.M)
    assert len(recovery) == 10, made.stdout
    server = Serving(env, "--port", str(free_port()))
    try:
        shell = {**env, "SAPPHIRE_URL": server.url, "ADMIN_PASSWORD": PASSWORD,
                 "ALICE_PASSWORD": "alice's long passphrase"}  # fmt: skip
        curls = doc_blocks("bash")
        assert len(curls) >= 10
        for block in curls:
            if "$TOTP_CODE" in block:  # a recovery code stands in for the authenticator
                shell["TOTP_CODE"] = recovery.pop()
            ran = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env=shell, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert ran.returncode == 0, f"{block}\n{ran.stdout}\n{ran.stderr}"
            answer: Any = json.loads(ran.stdout)
            if isinstance(answer, dict) and "access_token" in answer:
                shell["ACCESS_TOKEN"] = answer["access_token"]
                shell["REFRESH_TOKEN"] = answer["refresh_token"]
            if isinstance(answer, dict) and str(answer.get("key", "")).startswith("sk_"):
                shell["API_KEY"], shell["API_KEY_ID"] = answer["key"], str(answer["id"])
        code = "\n\n".join(doc_blocks("python"))
        ran = subprocess.run(
            [sys.executable, "-c", code], env=shell, capture_output=True, text=True, timeout=300
        )
        assert ran.returncode == 0, ran.stderr
        printed = ran.stdout.splitlines()
        assert len(printed) >= 10 and printed == expected_prints(code), ran.stdout
        code_, err = server.stop()
        assert code_ == 0, err
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
