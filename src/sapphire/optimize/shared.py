"""Bars written once and shared read-only between optimisation workers.

`SharedBars.create(bars)` writes the six arrays of a `Bars` to `.npy` files, in
`/dev/shm/sapphire-<uuid>/` when the shared-memory file system exists and has room,
else in `$SAPPHIRE_HOME/cache/shared/<uuid>/`. The handle pickles as a path, so
sending it to a worker costs a few hundred bytes; a worker maps the files read-only
(`np.load(mmap_mode="r")`) the first time it calls `load()` and keeps the arrays for
the life of the process, keyed by the handle's id. Every worker reads the same page
cache pages, so memory does not grow with the number of workers.

Only the process that created the files deletes them: `cleanup()`, the end of a
`with` block, or, as a last resort, interpreter exit. Directories left behind by a
process that was killed are swept by the next `create()` on the same host.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sapphire.config import home_subdir
from sapphire.strategy.base import Bars

FIELDS = ("time", "open", "high", "low", "close", "volume")
SHM_ROOT = Path("/dev/shm")
SHM_PREFIX = "sapphire-"
OWNER_FILE = "owner"
# bars loaded by this process, by handle id; bounded so long-lived workers (Ray) that
# see many studies do not keep every old data set mapped
_CACHE_SIZE = 4
_loaded: OrderedDict[str, Bars] = OrderedDict()
_owned: set[Path] = set()
_lock = threading.Lock()
_pickle_state = threading.local()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _owner_tag() -> str:
    return f"{socket.gethostname()} {_pid_namespace()} {os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(root: Path) -> list[Path]:
    """Delete shared directories under `root` whose creating process has died.

    Only directories created on this host in this PID namespace are considered, so
    a directory of a live process elsewhere is never touched. Returns what was removed.
    """
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    host, ns = socket.gethostname(), _pid_namespace()
    for path in root.iterdir():
        owner = path / OWNER_FILE
        if not owner.is_file():
            continue
        try:
            tag_host, tag_ns, pid = owner.read_text().rsplit(" ", 2)
            alive = tag_host != host or tag_ns != ns or _pid_alive(int(pid))
        except (OSError, ValueError):
            continue
        if not alive:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _shm_has_room(nbytes: int) -> bool:
    if not (SHM_ROOT.is_dir() and os.access(SHM_ROOT, os.W_OK)):
        return False
    try:
        stat = os.statvfs(SHM_ROOT)
    except OSError:
        return False
    free = stat.f_bavail * stat.f_frsize
    # leave room for everything else that lives in shared memory (Ray's object store...)
    return free > 2 * nbytes + (64 << 20)


def make_shared_dir(nbytes: int = 0) -> Path:
    """Create a fresh private directory for shared files, owned by this process.

    `/dev/shm/sapphire-<uuid>` when `/dev/shm` is writable and has room for `nbytes`
    (twice over), else `$SAPPHIRE_HOME/cache/shared/<uuid>`. The directory is deleted
    at interpreter exit unless `release_shared_dir` deleted it first.
    """
    name = uuid.uuid4().hex
    if _shm_has_room(nbytes):
        sweep_stale(SHM_ROOT)
        path = SHM_ROOT / f"{SHM_PREFIX}{name}"
    else:
        root = home_subdir("cache") / "shared"
        root.mkdir(parents=True, exist_ok=True)
        sweep_stale(root)
        path = root / name
    path.mkdir(mode=0o700)
    (path / OWNER_FILE).write_text(_owner_tag())
    with _lock:
        _owned.add(path)
    return path


def release_shared_dir(path: Path) -> None:
    """Delete a directory made by `make_shared_dir` (only in the process that made it)."""
    with _lock:
        if path not in _owned:
            return
        _owned.discard(path)
    shutil.rmtree(path, ignore_errors=True)


def _cleanup_at_exit() -> None:
    for path in list(_owned):
        release_shared_dir(path)


atexit.register(_cleanup_at_exit)
# a child created by fork inherits this module's state: it must not delete the
# parent's files at its own exit
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_owned.clear)


@contextlib.contextmanager
def inline_pickling() -> Iterator[None]:
    """While active (in this thread), `SharedBars` pickle their arrays, not their path.

    Used when the receiver cannot see this machine's files, e.g. `ray.put`: the arrays
    then travel as out-of-band buffers into Ray's object store (stored once per node,
    read zero-copy by every worker there).
    """
    previous = getattr(_pickle_state, "inline", False)
    _pickle_state.inline = True
    try:
        yield
    finally:
        _pickle_state.inline = previous


def _remember(key: str, bars: Bars) -> None:
    with _lock:
        _loaded[key] = bars
        _loaded.move_to_end(key)
        while len(_loaded) > _CACHE_SIZE:
            _loaded.popitem(last=False)


def _bars(arrays: Sequence[NDArray[Any]], timeframe_ns: int) -> Bars:
    time, open_, high, low, close, volume = arrays
    return Bars(
        time=time, open=open_, high=high, low=low, close=close, volume=volume,
        timeframe_ns=int(timeframe_ns),
    )  # fmt: skip


def _from_arrays(key: str, timeframe_ns: int, *arrays: NDArray[Any]) -> SharedBars:
    """Rebuild a handle from pickled arrays (see `inline_pickling`)."""
    with _lock:
        cached = _loaded.get(key)
    if cached is None:
        cached = _bars(arrays, timeframe_ns)
        _remember(key, cached)
    return SharedBars(None, key, timeframe_ns, len(cached))


class SharedBars:
    """A picklable handle to bars stored once and memory-mapped read-only by workers.

    `load()` (or `bars()`) returns a `Bars` whose arrays are read-only; the strategy and
    the kernel only read them. Use as a context manager, or call `cleanup()`, to delete
    the files.
    """

    __slots__ = ("_owner_pid", "id", "length", "path", "timeframe_ns")

    def __init__(self, path: Path | None, id: str, timeframe_ns: int, length: int) -> None:
        self.path = path
        self.id = id
        self.timeframe_ns = int(timeframe_ns)
        self.length = int(length)
        self._owner_pid = 0

    @classmethod
    def create(cls, bars: Bars) -> SharedBars:
        """Write `bars` to shared files once and return the handle (owned by this process)."""
        if not isinstance(bars, Bars):
            raise ValueError(f"SharedBars.create needs Bars, got {type(bars).__name__}")
        n = len(bars)
        arrays = {}
        for name in FIELDS:
            arr = np.asarray(getattr(bars, name))
            if arr.shape != (n,):
                raise ValueError(f"bars.{name} has shape {arr.shape}, expected ({n},)")
            arrays[name] = np.ascontiguousarray(arr)
        nbytes = sum(a.nbytes for a in arrays.values())
        path = make_shared_dir(nbytes)
        try:
            for name, arr in arrays.items():
                np.save(path / f"{name}.npy", arr, allow_pickle=False)
        except BaseException:
            release_shared_dir(path)
            raise
        handle = cls(path, uuid.uuid4().hex, bars.timeframe_ns, n)
        handle._owner_pid = os.getpid()
        return handle

    def load(self) -> Bars:
        """Return the bars, memory-mapped read-only; mapped once per process and cached."""
        with _lock:
            cached = _loaded.get(self.id)
            if cached is not None:
                _loaded.move_to_end(self.id)
                return cached
        if self.path is None:
            raise RuntimeError(f"shared bars {self.id} are not loaded in this process")
        try:
            arrays = [
                np.asarray(np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False))
                for name in FIELDS
            ]
        except FileNotFoundError:
            raise RuntimeError(
                f"shared bars {self.id} are gone from {self.path}: "
                "the process that created them has cleaned them up"
            ) from None
        bars = _bars(arrays, self.timeframe_ns)
        _remember(self.id, bars)
        return bars

    def bars(self) -> Bars:
        """Same as `load()`."""
        return self.load()

    def __len__(self) -> int:
        return self.length

    @property
    def owner(self) -> bool:
        """True in the process that created the files (the only one that deletes them)."""
        return self._owner_pid == os.getpid()

    def cleanup(self) -> None:
        """Delete the files (a no-op outside the creating process, or when done twice)."""
        with _lock:
            _loaded.pop(self.id, None)
        if self.owner and self.path is not None:
            release_shared_dir(self.path)
            self._owner_pid = 0

    def __enter__(self) -> SharedBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __reduce__(self) -> tuple[Any, ...]:
        if self.path is None or getattr(_pickle_state, "inline", False):
            bars = self.load()
            arrays = tuple(getattr(bars, name) for name in FIELDS)
            return (_from_arrays, (self.id, self.timeframe_ns, *arrays))
        # a copy is never the owner: only the creating process deletes the files
        return (SharedBars, (self.path, self.id, self.timeframe_ns, self.length))

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "in memory"
        return f"SharedBars(id={self.id[:8]}, bars={self.length}, at={where})"
