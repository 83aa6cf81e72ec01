"""SharedBars: bars written once, memory-mapped read-only, cleaned up by their owner."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.runner import Backtest, bars_from_frame
from sapphire.optimize import shared
from sapphire.optimize.shared import SharedBars, inline_pickling, sweep_stale
from sapphire.strategy.base import Bars


@pytest.fixture(autouse=True)
def shm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private stand-in for /dev/shm, so leftovers can be checked exactly."""
    root = tmp_path / "shm"
    root.mkdir()
    monkeypatch.setattr(shared, "SHM_ROOT", root)
    yield root
    assert list(root.iterdir()) == [], "shared files were left behind"


@pytest.fixture(scope="module")
def btc_bars(btc_df: pd.DataFrame) -> Bars:
    return bars_from_frame(btc_df)


def test_round_trip_is_exact_and_read_only(btc_bars: Bars, shm_root: Path) -> None:
    with SharedBars.create(btc_bars) as handle:
        assert handle.path is not None and handle.path.parent == shm_root
        assert len(handle) == len(btc_bars) == 45_031
        copy = pickle.loads(pickle.dumps(handle))
        shared._loaded.clear()  # as in a fresh worker: nothing mapped yet
        bars = copy.load()
        assert copy.load() is bars  # mapped once per process
        assert bars.timeframe_ns == btc_bars.timeframe_ns == 60_000_000_000
        for name in shared.FIELDS:
            got, want = getattr(bars, name), getattr(btc_bars, name)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            assert not got.flags.writeable
            assert isinstance(got.base, np.memmap)
        with pytest.raises(ValueError, match="read-only"):
            bars.close[0] = 1.0


def test_handle_pickles_small_and_copies_do_not_own(btc_bars: Bars) -> None:
    with SharedBars.create(btc_bars) as handle:
        data = pickle.dumps(handle)
        assert len(data) < 1_000  # a path, not 2 MB of arrays
        copy = pickle.loads(data)
        assert handle.owner and not copy.owner
        copy.cleanup()  # not the owner: nothing is deleted
        assert handle.path is not None and handle.path.is_dir()
    assert not handle.path.exists()


def test_backtest_on_memory_mapped_bars_matches(btc_bars: Bars) -> None:
    want = Backtest(btc_bars, "sma_cross", fast=12, slow=40, stop_loss=0.01).run()
    with SharedBars.create(btc_bars) as handle:
        copy = pickle.loads(pickle.dumps(handle))
        shared._loaded.clear()
        got = Backtest(copy.load(), "sma_cross", fast=12, slow=40, stop_loss=0.01).run()
        # nothing wrote into the shared arrays
        np.testing.assert_array_equal(copy.load().close, btc_bars.close)
    pd.testing.assert_frame_equal(got.trades, want.trades)
    np.testing.assert_array_equal(got.equity.to_numpy(), want.equity.to_numpy())
    assert got.metrics == pytest.approx(want.metrics, nan_ok=True)


def test_falls_back_to_sapphire_home(
    btc_bars: Bars, monkeypatch: pytest.MonkeyPatch, sapphire_home: Path
) -> None:
    monkeypatch.setattr(shared, "_shm_has_room", lambda nbytes: False)
    with SharedBars.create(btc_bars) as handle:
        assert handle.path is not None
        assert handle.path.parent == sapphire_home / "cache" / "shared"
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(handle)).load().low, btc_bars.low)
    assert not handle.path.exists()


def test_shm_needs_room_for_twice_the_data(shm_root: Path) -> None:
    free = os.statvfs(shm_root).f_bavail * os.statvfs(shm_root).f_frsize
    assert shared._shm_has_room(1_000)
    assert not shared._shm_has_room(free)


def test_cleanup_twice_and_load_after_cleanup(btc_bars: Bars) -> None:
    handle = SharedBars.create(btc_bars)
    copy = pickle.loads(pickle.dumps(handle))
    handle.cleanup()
    handle.cleanup()
    shared._loaded.clear()
    with pytest.raises(RuntimeError, match="are gone from"):
        copy.load()


def test_create_rejects_what_is_not_bars(btc_df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="needs Bars, got DataFrame"):
        SharedBars.create(btc_df)  # type: ignore[arg-type]
    bars = Bars(np.arange(3), *(np.ones(3),) * 4, np.ones(2), timeframe_ns=60)
    with pytest.raises(ValueError, match=r"bars.volume has shape \(2,\)"):
        SharedBars.create(bars)


def test_inline_pickling_carries_the_arrays(btc_bars: Bars) -> None:
    with SharedBars.create(btc_bars) as handle:
        with inline_pickling():
            data = pickle.dumps(handle, protocol=5)
        assert len(data) > 6 * 8 * len(btc_bars) * 0.9
        assert len(pickle.dumps(handle)) < 1_000  # only inside the block
        handle.cleanup()  # the copy no longer needs the files
        shared._loaded.clear()
        copy = pickle.loads(data)
        assert copy.path is None
        np.testing.assert_array_equal(copy.load().high, btc_bars.high)
        # a handle without files pickles its arrays again (a Ray worker sending it on)
        again = pickle.loads(pickle.dumps(copy))
        np.testing.assert_array_equal(again.load().close, btc_bars.close)


def test_files_are_removed_at_exit_unless_killed(shm_root: Path, sapphire_home: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from pathlib import Path
        from sapphire.optimize import shared
        from sapphire.strategy.base import Bars
        shared.SHM_ROOT = Path({str(shm_root)!r})
        n = 100
        handle = shared.SharedBars.create(
            Bars(np.arange(n), *(np.ones(n),) * 5, timeframe_ns=60))
        print(handle.path, flush=True)
        if sys.argv[1] == "hang":
            time.sleep(60)
        """
    )
    env = {**os.environ, "SAPPHIRE_HOME": str(sapphire_home)}
    out = subprocess.run(
        [sys.executable, "-c", code, "exit"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert not Path(out.stdout.strip()).exists()  # atexit removed it

    proc = subprocess.Popen(
        [sys.executable, "-c", code, "hang"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    left = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert left.is_dir()  # killed: nothing could run
    assert sweep_stale(shm_root) == [left]  # its owner is dead: swept
    assert not left.exists()


def test_sweep_keeps_live_and_foreign_directories(shm_root: Path) -> None:
    live = shm_root / "sapphire-live"
    foreign = shm_root / "sapphire-foreign"
    unowned = shm_root / "sapphire-unowned"
    for path in (live, foreign, unowned):
        path.mkdir()
    (live / shared.OWNER_FILE).write_text(shared._owner_tag())
    (foreign / shared.OWNER_FILE).write_text(f"not-{socket.gethostname()} ns 1")
    assert sweep_stale(shm_root) == []
    assert all(path.is_dir() for path in (live, foreign, unowned))
    for path in (live, foreign, unowned):
        shutil.rmtree(path)
