"""`sapphire paper --metrics-port`: the node process serves its Prometheus metrics while
it trades (what deploy/prometheus/prometheus.yml scrapes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_paper_node_serves_its_metrics(tmp_path: Path) -> None:
    port = _free_port()
    exe = Path(sys.executable).parent / "sapphire"
    # the venue process idles out soon after its node is gone (no stray process left)
    env = {**os.environ, "SAPPHIRE_HOME": str(tmp_path / "home"), "SAPPHIRE_PAPER_VENUE_IDLE": "20"}
    cmd = [str(exe), "paper", "--strategy", "sma_cross", "--end", "2022-01-02", "--speed",
           "200x", "--seconds", "8", "--run-id", "m1", "--no-live",
           "--metrics-port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 'run_id="m1"' not in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            time.sleep(0.3)
        assert "sapphire_equity{" in text and 'run_id="m1"' in text, text[-2000:]
        assert "process_cpu_seconds_total" in text
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "sapphire"
    # the venue process idles out soon after its node is gone (no stray process left)
    env = {**os.environ, "SAPPHIRE_HOME": str(tmp_path / "home"), "SAPPHIRE_PAPER_VENUE_IDLE": "20"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [str(exe), "paper", "--strategy", "sma_cross", "--end", "2022-01-02", "--speed",
             "max", "--no-live", "--metrics-port", str(port)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"--metrics-port {port}: cannot serve metrics" in " ".join(done.stderr.split())
