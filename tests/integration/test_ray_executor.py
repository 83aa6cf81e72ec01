"""RayExecutor on a real local Ray cluster (`ray start --head` on loopback, 2 CPUs).

Skipped when Ray is not installed, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import Backtest, bars_from_frame
from sapphire.optimize.executor import ItemError, LocalExecutor, RayExecutor, make_executor
from sapphire.optimize.shared import SharedBars

if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'sapphire[ray]'")
import ray

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


try:
    import grpc  # noqa: F401 - Ray Client ("ray://") needs it: pip install 'ray[client]'

    HAVE_RAY_CLIENT = True
except ImportError:
    HAVE_RAY_CLIENT = False


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """A private 2-CPU head node on 127.0.0.1 (plus a Ray Client server when the client
    extra is installed), stopped at the end.

    `ray start --block` keeps the command in the foreground: SIGTERM to it (a process
    this fixture started, by its id) shuts down exactly this cluster, and nothing of
    another Ray cluster on the machine is touched (as `ray stop` would).
    """
    port, client_port = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Unix socket paths
    home = tempfile.mkdtemp(prefix="sapphire-ray-home-")
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
        "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir,
    ]  # fmt: skip
    if HAVE_RAY_CLIENT:
        command += ["--ray-client-server-port", str(client_port)]
    # GRPC_POLL_STRATEGY: with grpcio 1.85 the Ray Client proxy of a head started from
    # here aborts in gRPC's epoll1 poller ("Check failed: next_worker->state == KICKED")
    env = {**os.environ, "SAPPHIRE_HOME": home, "RAY_USAGE_STATS_ENABLED": "0",
           "GRPC_POLL_STRATEGY": "poll"}  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ray start failed:\n" + "".join(seen)) from None
                continue
            seen.append(line)
            if "Ray runtime started" in line:
                break
        yield {"address": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client_port}"}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        # anything still left in the cluster's session was started by this fixture
        deadline = time.monotonic() + 20
        while _session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def ray_address(ray_cluster: dict[str, str]) -> str:
    return ray_cluster["address"]


@pytest.fixture(autouse=True)
def _by_value() -> None:
    # Ray workers cannot import this test module by name: send its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def backtest_trial(context: dict[str, Any], params: dict[str, int]) -> dict[str, Any]:
    bars = context["bars"].load()
    result = Backtest(bars, "sma_cross", **params, **context["options"]).run()
    return {
        "pid": os.getpid(),
        "read_only": not bars.close.flags.writeable,
        # memory-mapped from the shared files, or (Ray) a view of the object store
        "memmap": isinstance(bars.close.base, np.memmap),
        "sharpe": result.metrics["sharpe"],
        "total_return": result.metrics["total_return"],
        "trades": len(result.trades),
    }


def fail_on(context: Any, item: int) -> int:
    if item == context:
        raise KeyError(f"no {item}")
    return item * 2


PARAMS = [{"fast": f, "slow": s} for f, s in [(5, 20), (8, 21), (10, 30), (12, 48), (20, 100)]]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_ray_map_matches_local_on_real_backtests(btc_df: pd.DataFrame, ray_address: str) -> None:
    with SharedBars.create(bars_from_frame(btc_df)) as handle:
        context = {"bars": handle, "options": {"fee": 0.0005, "stop_loss": 0.02}}
        local = list(LocalExecutor(1).map(backtest_trial, context, PARAMS))
        with RayExecutor(ray_address) as ex:
            assert ex.workers == 2
            remote = list(ex.map(backtest_trial, context, PARAMS))
            # again: the context is already in the object store and in the workers
            again = list(ex.map(backtest_trial, context, PARAMS[::-1]))
        assert not ray.is_initialized()  # the executor connected, so it disconnected
    assert {r["pid"] for r in local} == {os.getpid()}
    assert os.getpid() not in {r["pid"] for r in remote}
    for a, b, c in zip(local, remote, again[::-1], strict=True):
        assert a["trades"] == b["trades"] == c["trades"]
        assert _same(a["sharpe"], b["sharpe"]) and _same(a["sharpe"], c["sharpe"])
        assert a["total_return"] == b["total_return"]
        assert b["read_only"] and not b["memmap"]  # zero-copy views of the object store
    assert local[2]["trades"] > 100


def test_ray_item_error_and_order(ray_address: str) -> None:
    with make_executor(ray_address=ray_address) as ex:
        assert isinstance(ex, RayExecutor)
        items = list(range(37))
        assert list(ex.map(fail_on, -1, items)) == [i * 2 for i in items]
        with pytest.raises(ItemError, match=r"fail_on failed on item 23 23: KeyError") as info:
            list(ex.map(fail_on, 23, items))
        assert info.value.index == 23 and "no 23" in info.value.details
        assert list(ex.map(fail_on, -1, [4])) == [8]  # still usable


def test_ray_uses_an_existing_connection(ray_address: str) -> None:
    ray.init(address=ray_address, logging_level="WARNING", log_to_driver=False)
    try:
        with RayExecutor("auto") as ex:
            assert list(ex.map(fail_on, -1, [1, 2])) == [2, 4]
        assert ray.is_initialized()  # not ours to close
    finally:
        ray.shutdown()


def test_seeded_study_on_ray_matches_local(btc_df: pd.DataFrame, ray_address: str) -> None:
    optimize = pytest.importorskip("sapphire.optimize.study").optimize
    common: dict[str, Any] = {"trials": 20, "sampler": "tpe", "seed": 11, "progress": False,
                              "fee": 0.0005, "size": 0.95, "size_mode": "equity"}  # fmt: skip
    local = optimize(btc_df, "sma_cross", study="local", jobs=2, **common)
    remote = optimize(btc_df, "sma_cross", study="ray", ray_address=ray_address, **common)
    assert len(local.trials) == len(remote.trials) == 20
    for a, b in zip(local.trials, remote.trials, strict=True):
        assert a.number == b.number and a.params == b.params and a.state == b.state
        if a.values is None:
            assert b.values is None
        else:
            assert b.values is not None
            np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    assert local.best_params == remote.best_params
    assert local.best_value == remote.best_value
    assert sum(t.state == "complete" for t in remote.trials) >= 8  # real backtests ran


@pytest.mark.skipif(not HAVE_RAY_CLIENT, reason="Ray Client needs pip install 'ray[client]'")
def test_ray_client_address(btc_df: pd.DataFrame, ray_cluster: dict[str, str]) -> None:
    with SharedBars.create(bars_from_frame(btc_df)) as handle:
        context = {"bars": handle, "options": {"fee": 0.0005}}
        local = list(LocalExecutor(1).map(backtest_trial, context, PARAMS[:3]))
        with RayExecutor(ray_cluster["client"]) as ex:
            assert ex.workers == 2
            remote = list(ex.map(backtest_trial, context, PARAMS[:3]))
            with pytest.raises(ItemError, match="failed on item 1 5"):
                list(ex.map(fail_on, 5, [4, 5, 6]))
    assert [r["trades"] for r in remote] == [r["trades"] for r in local]
    assert not any(r["memmap"] for r in remote)  # the bars came through the object store
    assert all(_same(a["sharpe"], b["sharpe"]) for a, b in zip(local, remote, strict=True))
