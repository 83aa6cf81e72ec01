"""LocalExecutor / make_executor: order, context delivered once, errors, Ctrl-C."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import Backtest, bars_from_frame
from sapphire.optimize import executor as ex_mod
from sapphire.optimize import shared
from sapphire.optimize.executor import (
    RAY_INSTALL_HINT,
    Executor,
    ItemError,
    LocalExecutor,
    chunk_size,
    default_jobs,
    make_executor,
)
from sapphire.optimize.shared import SharedBars
from sapphire.strategy.base import Bars


@pytest.fixture(autouse=True)
def shm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "shm"
    root.mkdir()
    monkeypatch.setattr(shared, "SHM_ROOT", root)
    yield root
    assert list(root.iterdir()) == [], "shared files were left behind"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalExecutor]:
    """One 2-worker pool for the module (starting one costs about a second)."""
    root = tmp_path_factory.mktemp("pool-shm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shared, "SHM_ROOT", root)
        with LocalExecutor(2) as ex:
            assert list(ex.map(square, {"offset": 0}, [1, 2])) == [(1, 1), (2, 4)]
            assert ex._dir is not None and ex._dir.parent == root
            yield ex
    assert list(root.iterdir()) == []


# ------------------------------------------------------------------ worker functions


class Counted:
    """A context that counts how often this process unpickled it."""

    loads = 0

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).loads += 1
        self.__dict__.update(state)


def square(context: Any, item: int) -> tuple[int, int]:
    return item, item * item + context["offset"]


def slow_square(context: Any, item: int) -> int:
    time.sleep(0.002 * (item % 3))
    return item * item


def who(context: Counted, item: int) -> tuple[int, int, str, int]:
    time.sleep(0.005)  # long enough for both workers to get chunks
    return os.getpid(), id(context), context.tag, Counted.loads


def fail_on_seven(context: Any, item: int) -> int:
    if item == 7:
        raise ValueError(f"seven is not allowed (context {context})")
    return item


def die(context: Any, item: int) -> int:
    os._exit(3)


def backtest_trial(context: dict[str, Any], params: dict[str, int]) -> dict[str, Any]:
    bars = context["bars"].load()
    result = Backtest(bars, "sma_cross", **params, fee=0.0005, size=0.95, size_mode="equity").run()
    return {
        "sharpe": result.metrics["sharpe"],
        "total_return": result.metrics["total_return"],
        "trades": len(result.trades),
        "read_only": not bars.close.flags.writeable,
        "mapped": isinstance(bars.close.base, np.memmap),
    }


# ------------------------------------------------------------------------------ tests


def test_inline_runs_in_this_process_in_order() -> None:
    with LocalExecutor(1) as ex:
        assert isinstance(ex, Executor) and ex.workers == 1
        out = list(ex.map(who, Counted("a"), [1, 2, 3]))
    assert {pid for pid, *_ in out} == {os.getpid()}
    assert ex._pool is None and ex._dir is None  # no pool, nothing pickled
    assert list(LocalExecutor(1).map(square, {"offset": 1}, [3, 1, 2])) == [
        (3, 10),
        (1, 2),
        (2, 5),
    ]


@pytest.mark.parametrize("chunksize", [None, 1, 3, 1000])
def test_pool_keeps_input_order(chunksize: int | None) -> None:
    items = list(range(103))[::-1]
    with LocalExecutor(2, chunksize=chunksize) as ex:
        out = list(ex.map(slow_square, None, items))
        dirs = [ex._dir]
    assert out == [i * i for i in items]
    assert dirs[0] is not None and not dirs[0].exists()  # context files removed on close


def test_pool_matches_inline(pool: LocalExecutor) -> None:
    items = list(range(50))
    inline = list(LocalExecutor(1).map(square, {"offset": 7}, items))
    assert list(pool.map(square, {"offset": 7}, items)) == inline
    assert list(pool.map(square, {"offset": 7}, [])) == []


def test_context_reaches_each_worker_once(pool: LocalExecutor) -> None:
    context = Counted("first")
    out = [r for _ in range(3) for r in pool.map(who, context, list(range(40)))]
    pids = {pid for pid, *_ in out}
    assert len(pids) == 2  # both workers took part
    for pid in pids:
        mine = [r for r in out if r[0] == pid]
        assert {r[1] for r in mine} == {mine[0][1]}  # one object per worker, reused
        assert {r[2] for r in mine} == {"first"}
        # unpickled once per worker, however many items and calls
        assert len({r[3] for r in mine}) == 1
    loads_before = {pid: max(r[3] for r in out if r[0] == pid) for pid in pids}
    # a different context (by content) is delivered anew
    out2 = list(pool.map(who, Counted("second"), list(range(40))))
    assert {r[2] for r in out2} == {"second"}
    for pid, _, _, loads in out2:
        if pid in loads_before:
            assert loads == loads_before[pid] + 1


def test_item_error_names_the_item_and_pool_survives(pool: LocalExecutor) -> None:
    with pytest.raises(ItemError, match=r"fail_on_seven failed on item 7 7: ValueError") as info:
        list(pool.map(fail_on_seven, "ctx", list(range(20))))
    err = info.value
    assert (err.index, err.item, err.exc_type) == (7, "7", "ValueError")
    assert "seven is not allowed (context ctx)" in str(err)
    assert "Traceback" in err.details and "fail_on_seven" in err.details
    assert any("worker traceback" in note for note in err.__notes__)
    # the index counts from the start of the items, not of the chunk
    with pytest.raises(ItemError) as info:
        list(pool.map(fail_on_seven, None, [100, 101, 102, 7]))
    assert info.value.index == 3
    assert list(pool.map(square, {"offset": 0}, [2, 3])) == [(2, 4), (3, 9)]


def test_item_error_inline_keeps_the_cause() -> None:
    with pytest.raises(ItemError, match="failed on item 7 7") as info:
        list(LocalExecutor(1).map(fail_on_seven, None, list(range(10))))
    assert isinstance(info.value.__cause__, ValueError)


def test_item_error_pickles() -> None:
    try:
        fail_on_seven(None, 7)
    except ValueError as exc:
        err = ItemError.wrap(fail_on_seven, 4, {"fast": 7}, exc)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.index == 4 and copy.item == "{'fast': 7}"
    assert copy.details == err.details and copy.__notes__ == err.__notes__


def test_dead_worker_raises_and_next_map_starts_a_new_pool() -> None:
    with LocalExecutor(2) as ex:
        with pytest.raises(Exception, match=r"terminated abruptly|process pool"):
            list(ex.map(die, None, [1, 2, 3]))
        assert ex._pool is None
        assert list(ex.map(square, {"offset": 0}, [4])) == [(4, 16)]


def test_abandoned_iteration_cancels_the_rest(pool: LocalExecutor) -> None:
    results = pool.map(slow_square, None, list(range(400)))
    assert next(results) == 0
    results.close()  # GeneratorExit: pending chunks are cancelled
    assert list(pool.map(square, {"offset": 1}, [1])) == [(1, 2)]


def test_closed_executor_refuses_work() -> None:
    ex = LocalExecutor(2)
    ex.close()
    with pytest.raises(RuntimeError, match="closed"):
        ex.map(square, None, [1])


@pytest.mark.parametrize("jobs", [-1, 1.5, "2", True])
def test_bad_jobs(jobs: Any) -> None:
    with pytest.raises(ValueError, match=f"jobs={jobs!r} is invalid"):
        LocalExecutor(jobs)
    with pytest.raises(ValueError, match=f"jobs={jobs!r} is invalid"):
        make_executor(jobs)


def test_bad_chunksize_and_items() -> None:
    with pytest.raises(ValueError, match="chunksize=0 is invalid"):
        LocalExecutor(2, chunksize=0)
    with pytest.raises(ValueError, match="items must be a sequence"):
        LocalExecutor(1).map(square, None, "abc")
    with pytest.raises(ValueError, match="items must be a sequence"):
        LocalExecutor(1).map(square, None, (i for i in range(3)))  # type: ignore[arg-type]


def test_default_jobs_and_make_executor() -> None:
    assert LocalExecutor().workers == LocalExecutor(0).workers == default_jobs() >= 1
    with make_executor(3) as ex:
        assert isinstance(ex, LocalExecutor) and ex.workers == 3


def test_chunk_size() -> None:
    assert chunk_size(8, 2) == 1
    assert chunk_size(128, 2) == 16
    assert chunk_size(1, 64) == 1
    assert chunk_size(1000, 1) == 250


def test_ray_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=RAY_INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        make_executor(2, ray_address="auto")


def test_bad_ray_address() -> None:
    with pytest.raises(ValueError, match="ray address '' is invalid"):
        ex_mod.RayExecutor("")


def test_real_backtests_on_shared_bars(btc_df: pd.DataFrame, pool: LocalExecutor) -> None:
    bars: Bars = bars_from_frame(btc_df)
    params = [{"fast": f, "slow": s} for f, s in [(5, 20), (10, 30), (12, 48), (20, 100)]]
    with SharedBars.create(bars) as handle:
        context = {"bars": handle}
        inline = list(LocalExecutor(1).map(backtest_trial, context, params))
        pooled = list(pool.map(backtest_trial, context, params))
    assert [r["trades"] for r in inline] == [r["trades"] for r in pooled]
    for a, b in zip(inline, pooled, strict=True):
        np.testing.assert_equal(a["sharpe"], b["sharpe"])  # bit for bit (NaN == NaN)
        assert a["total_return"] == b["total_return"]
        assert b["read_only"] and b["mapped"]  # workers read the files, no copies
    assert inline[1]["trades"] > 100 and np.isfinite(inline[1]["sharpe"])


WORKERS_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {here!r})
    from sapphire.optimize.executor import LocalExecutor
    from test_executor import sleepy

    if __name__ == "__main__":
        with LocalExecutor(2, chunksize=1) as ex:
            pids = sorted(set(ex.map(sleepy, 0.0, [0, 1, 2, 3])))
            print("workers", *pids, flush=True)
            started = time.monotonic()
            try:
                list(ex.map(sleepy, 60.0, list(range(8))))
            except KeyboardInterrupt:
                print("interrupted after", round(time.monotonic() - started, 1), flush=True)
                raise
    """
)


def sleepy(seconds: float, item: int) -> int:
    time.sleep(seconds)
    return os.getpid()


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # session id, not a zombie
                members.append(int(entry.name))
    return members


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_ctrl_c_stops_cleanly_without_orphans(tmp_path: Path) -> None:
    script = tmp_path / "interrupt.py"
    script.write_text(WORKERS_SCRIPT.format(here=str(Path(__file__).parent)))
    # a new session, like a terminal: Ctrl-C sends SIGINT to the whole process group
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("workers"), proc.stderr.read() if proc.stderr else line
    workers = [int(pid) for pid in line.split()[1:]]
    time.sleep(0.5)  # the 60 s tasks are running
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert "interrupted after" in out
    assert float(out.split("interrupted after")[1].split()[0]) < 10
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    deadline = time.monotonic() + 10
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_members(proc.pid) == []  # no worker, fork server or helper left
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_what_cannot_reach_a_worker_is_refused(pool: LocalExecutor) -> None:
    with pytest.raises(ValueError, match="give a module-level function"):
        pool.map(lambda context, item: item, None, [1])
    with pytest.raises(ValueError, match=r"context \(dict\) cannot be sent.*lambda"):
        pool.map(square, {"offset": lambda: 1}, [1])
    # inline, nothing is pickled: anything goes
    assert list(LocalExecutor(1).map(lambda context, item: item + 1, None, [1])) == [2]
