"""Executors: run one function over many small work items, locally or on Ray.

An executor calls `fn(context, item)` for every item and yields the results in the
order of the items. `fn` must be a module-level function (it is pickled by name).
The `context` (strategy, backtest options, a `SharedBars` handle...) reaches each
worker process once and is cached there by a hash of its content; the items travel
in chunks, a few per worker, to keep inter-process traffic low.

- `LocalExecutor(jobs)`: a process pool on this machine (`jobs == 1` runs inline).
- `RayExecutor(address)`: tasks on a Ray cluster (`"auto"`, `"host:6379"` or
  `"ray://host:10001"`); the context goes into the object store once, with the bars
  as zero-copy NumPy buffers.
- `make_executor(jobs, ray_address)` picks one. Executors are context managers.

A failing item raises `ItemError`, which names the item and carries the worker's
traceback. Ctrl-C in the coordinator cancels pending work, stops the workers and
re-raises `KeyboardInterrupt`; the executor can be used again afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from sapphire.optimize.shared import inline_pickling, make_shared_dir, release_shared_dir

T = TypeVar("T")
R = TypeVar("R")

RAY_INSTALL_HINT = "pip install 'sapphire[ray]'"
# contexts a worker keeps unpickled at once (a walk-forward run sends one per fold)
_WORKER_CACHE_SIZE = 4
# imported once by the fork server (which then warms the compiled kernels up), so
# that each worker starts as a cheap fork of a warm process
_PRELOAD = ["sapphire.optimize._forkserver"]


class ItemError(RuntimeError):
    """A work item failed in a worker. `index` and `item` say which one; `exc_type` and
    `details` (the worker's traceback) say why."""

    def __init__(
        self, message: str, index: int = -1, item: str = "", exc_type: str = "", details: str = ""
    ) -> None:
        super().__init__(message, index, item, exc_type, details)
        self.index = index
        self.item = item
        self.exc_type = exc_type
        self.details = details

    def __str__(self) -> str:
        return str(self.args[0])

    @classmethod
    def wrap(cls, fn: Callable[..., Any], index: int, item: Any, exc: BaseException) -> ItemError:
        """Describe `exc`, raised by `fn` on item number `index`."""
        shown = repr(item)
        if len(shown) > 300:
            shown = shown[:297] + "..."
        name = getattr(fn, "__qualname__", repr(fn))
        message = f"{name} failed on item {index} {shown}: {type(exc).__name__}: {exc}"
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        err = cls(message, index, shown, type(exc).__name__, details)
        err.add_note(f"worker traceback:\n{details.rstrip()}")
        return err


def _call_all(fn: Callable[[Any, T], R], context: Any, start: int, items: Sequence[T]) -> list[R]:
    out = []
    for offset, item in enumerate(items):
        try:
            out.append(fn(context, item))
        except Exception as exc:
            raise ItemError.wrap(fn, start + offset, item, exc) from None
    return out


def chunk_size(n_items: int, workers: int) -> int:
    """Items per task: about four tasks per worker, so that a slow chunk cannot leave the
    other workers idle for long, while each task still carries several items."""
    return max(1, math.ceil(n_items / (4 * max(1, workers))))


def _chunks(items: Sequence[T], size: int) -> list[tuple[int, list[T]]]:
    return [(start, list(items[start : start + size])) for start in range(0, len(items), size)]


def _context_key(context: Any, dumps: Callable[..., bytes] = pickle.dumps) -> tuple[str, bytes]:
    """A content hash of the pickled context (buffers included) and the pickle itself."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = dumps(context, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise ValueError(
            f"the context ({type(context).__name__}) cannot be sent to worker processes: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    digest = hashlib.blake2b(data, digest_size=16)
    for buf in buffers:
        digest.update(buf.raw())
    return digest.hexdigest(), data if not buffers else dumps(context, protocol=5)


def _check_fn(fn: Callable[..., Any]) -> None:
    """Worker processes import `fn` by name: it must be a module-level function."""
    name = getattr(fn, "__qualname__", None)
    if not callable(fn) or name is None or "<" in name:
        raise ValueError(
            f"fn={fn!r} cannot be sent to worker processes: give a module-level function"
        )


def _check_items(items: Sequence[Any]) -> Sequence[Any]:
    if isinstance(items, str | bytes) or not hasattr(items, "__len__"):
        raise ValueError(f"items must be a sequence of work items, got {type(items).__name__}")
    return items


@runtime_checkable
class Executor(Protocol):
    """Runs `fn(context, item)` over items on some set of workers."""

    workers: int

    def map(self, fn: Callable[[Any, T], R], context: Any, items: Sequence[T]) -> Iterator[R]:
        """Yield `fn(context, item)` for every item, in the order of `items`."""
        ...

    def close(self) -> None:
        """Release the workers and any shared files."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# ----------------------------------------------------------------------------- local


_worker_contexts: OrderedDict[str, Any] = OrderedDict()


def _remember_context(key: str, context: Any) -> None:
    _worker_contexts[key] = context
    _worker_contexts.move_to_end(key)
    while len(_worker_contexts) > _WORKER_CACHE_SIZE:
        _worker_contexts.popitem(last=False)


def _init_worker() -> None:
    # Ctrl-C goes to the whole process group: only the coordinator handles it (it
    # cancels the work and stops the pool); a worker dying mid-task would only leave
    # a broken pool behind
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_local_chunk(
    fn: Callable[[Any, T], R], key: str, path: str, start: int, items: Sequence[T]
) -> list[R]:
    context = _worker_contexts.get(key)
    if context is None and key not in _worker_contexts:
        context = pickle.loads(Path(path).read_bytes())
        _remember_context(key, context)
    return _call_all(fn, context, start, items)


def warm_up() -> None:
    """Load the backtest kernels (compiled, from Numba's disk cache) for read-only inputs,
    as workers see them, by running a tiny backtest; processes forked afterwards inherit
    them instead of each loading them again."""
    import numpy as np

    from sapphire.backtest.runner import Backtest
    from sapphire.strategy.base import Bars

    n = 64
    wave = 100.0 + np.sin(np.arange(n) / 3.0)
    time = np.arange(n, dtype=np.int64) * 60_000_000_000
    open_, high, low, close, volume = (wave.copy(), wave + 1, wave - 1, wave.copy(), wave * 0)
    for arr in (time, open_, high, low, close, volume):
        arr.flags.writeable = False
    bars = Bars(time, open_, high, low, close, volume, timeframe_ns=60_000_000_000)
    Backtest(bars, "sma_cross", fast=2, slow=5).run()


def _mp_context(fn: Callable[..., Any]) -> multiprocessing.context.BaseContext:
    """The fork server where available: workers fork from a clean single-threaded server
    that has already imported Sapphire and `fn`'s module and loaded the kernels (fast,
    and safe even when the coordinator runs threads); spawn elsewhere. Plain fork is
    never used: it copies whatever locks the coordinator's threads (progress bars, Ray,
    Numba) hold at that moment, and the coordinator's memory."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    preload = ["__main__", *_PRELOAD]
    module = getattr(fn, "__module__", None)
    if module and module != "__main__" and module in sys.modules and module not in preload:
        preload.append(module)
    # takes effect when the server starts (once per process); later pools reuse it
    ctx.set_forkserver_preload(preload)
    return ctx


def prestart(jobs: int | None, fn: Callable[..., Any]) -> None:
    """Start the fork server now when `jobs` means worker processes: it imports Sapphire and
    loads the kernels (over half a second) in its own process while the caller loads the
    data and prepares the study, and the pool then forks its workers at once."""
    if resolve_jobs(jobs) < 2:
        return
    ctx = _mp_context(fn)
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def default_jobs() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int | None) -> int:
    """The number of worker processes `jobs` asks for (None or 0: every CPU)."""
    if jobs is None:
        return default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ValueError(f"jobs={jobs!r} is invalid: expected a whole number >= 1 (0 = all CPUs)")
    return jobs or default_jobs()


def _check_chunksize(chunksize: int | None) -> int | None:
    if chunksize is not None and (
        isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
    ):
        raise ValueError(f"chunksize={chunksize!r} is invalid: expected a whole number >= 1")
    return chunksize


class LocalExecutor:
    """A pool of `jobs` worker processes on this machine (`None`/0: every CPU).

    With `jobs == 1` everything runs inline in this process, without pickling. The
    pool starts on the first `map` and lives until `close()`, so the workers' imports,
    compiled kernels and cached contexts serve every later call.
    """

    def __init__(self, jobs: int | None = None, *, chunksize: int | None = None) -> None:
        self.workers = resolve_jobs(jobs)
        self.chunksize = _check_chunksize(chunksize)
        self._pool: ProcessPoolExecutor | None = None
        self._dir: Path | None = None
        self._published: dict[str, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"LocalExecutor(jobs={self.workers})"

    def _ensure_pool(self, fn: Callable[..., Any]) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_mp_context(fn), initializer=_init_worker
            )
        return self._pool

    def _publish(self, context: Any) -> tuple[str, str]:
        key, data = _context_key(context)
        path = self._published.get(key)
        if path is None:
            if self._dir is None:
                self._dir = make_shared_dir(len(data))
            target = self._dir / f"context-{key}.pkl"
            target.write_bytes(data)
            path = self._published[key] = str(target)
        return key, path

    def map(self, fn: Callable[[Any, T], R], context: Any, items: Sequence[T]) -> Iterator[R]:
        """Yield `fn(context, item)` for every item, in order (work starts at once)."""
        if self._closed:
            raise RuntimeError("this executor is closed")
        items = _check_items(items)
        if self.workers == 1:
            return self._inline(fn, context, items)
        _check_fn(fn)
        if not items:
            return iter(())
        key, path = self._publish(context)
        size = self.chunksize or chunk_size(len(items), self.workers)
        pool = self._ensure_pool(fn)
        futures = [
            pool.submit(_run_local_chunk, fn, key, path, start, chunk)
            for start, chunk in _chunks(items, size)
        ]
        return self._collect(futures)

    @staticmethod
    def _inline(fn: Callable[[Any, T], R], context: Any, items: Sequence[T]) -> Iterator[R]:
        for index, item in enumerate(items):
            try:
                result = fn(context, item)
            except Exception as exc:
                raise ItemError.wrap(fn, index, item, exc) from exc
            yield result

    def _collect(self, futures: list[Future[list[R]]]) -> Iterator[R]:
        try:
            for future in futures:
                yield from future.result()
        except BaseException as exc:
            for future in futures:
                future.cancel()
            if isinstance(exc, KeyboardInterrupt | BrokenProcessPool):
                self._terminate()
            raise

    def _terminate(self) -> None:
        """Stop the workers now (running chunks are abandoned); a later map starts anew."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def close(self) -> None:
        """Shut the pool down (waiting for running chunks) and delete the context files."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except KeyboardInterrupt:
                self._pool = pool
                self._terminate()
                raise
        if self._dir is not None:
            release_shared_dir(self._dir)
            self._dir = None
        self._published.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._terminate()
        self.close()


# ----------------------------------------------------------------------------- Ray


def import_ray() -> Any:
    """Import Ray, or say how to install it."""
    # grpcio >= 1.8x can abort the process in its default epoll1 poller when a Ray
    # Client ("ray://") connection is used ("Check failed: next_worker->state ==
    # KICKED"); the portable poll poller does not. Set before gRPC first loads; a
    # user's own setting wins.
    os.environ.setdefault("GRPC_POLL_STRATEGY", "poll")
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"the Ray executor needs Ray, which is not installed: {RAY_INSTALL_HINT}"
        ) from exc
    return ray


_ray_lock = threading.Lock()


def _run_ray_chunk(
    fn: Callable[[Any, T], R], key: str, ref_box: list[Any], start: int, items: Sequence[T]
) -> list[R]:
    """A Ray task: the context's ObjectRef comes boxed in a list so that Ray does not
    fetch it for every task; the worker fetches it once and keeps it by its key."""
    context = _worker_contexts.get(key)
    if context is None and key not in _worker_contexts:
        import ray

        with _ray_lock:  # a threaded actor pool could run two tasks at once
            context = ray.get(ref_box[0])
            _remember_context(key, context)
    return _call_all(fn, context, start, items)


class RayExecutor:
    """Tasks on a Ray cluster: `address` is `"auto"`, `"host:port"` or `"ray://host:port"`.

    Connects with `ray.init` unless Ray is already initialised in this process (then
    that connection is used and left open). Each context is stored in the object store
    once (`SharedBars` travel as their arrays, read zero-copy by every worker of a
    node); items go out as one task per chunk, each task using one CPU. `workers` is
    the cluster's CPU count. Every node needs Sapphire (and the strategy's module)
    installed; `runtime_env` is passed to `ray.init` for anything else.
    """

    def __init__(
        self,
        address: str,
        *,
        chunksize: int | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(
                f"ray address {address!r} is invalid: expected 'auto', 'host:port' or "
                "'ray://host:port'"
            )
        self.address = address.strip()
        self.chunksize = _check_chunksize(chunksize)
        ray = import_ray()
        if self.address.startswith("ray://"):
            try:
                import grpc  # noqa: F401 - Ray Client talks gRPC
            except ImportError as exc:
                raise ImportError(
                    f"a Ray Client address ({self.address}) needs Ray's client extra: "
                    "pip install 'ray[client]'"
                ) from exc
        self._ray = ray
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            try:
                ray.init(
                    address=self.address,
                    ignore_reinit_error=True,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    runtime_env=runtime_env,
                )
            except ConnectionError as exc:
                raise ConnectionError(
                    f"cannot connect to the Ray cluster at {self.address!r}: {exc}"
                ) from exc
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # trials are pure functions of their input: a task lost with its worker or node
        # is run again (exceptions raised by `fn` are not retried)
        self._remote = ray.remote(num_cpus=1, max_retries=2)(_run_ray_chunk)
        self._published: dict[str, Any] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, workers={self.workers})"

    def _publish(self, context: Any) -> tuple[str, Any]:
        # Ray pickles with cloudpickle (functions defined in a script travel by value)
        key, _ = _context_key(context, self._ray.cloudpickle.dumps)
        ref = self._published.get(key)
        if ref is None:
            with inline_pickling():
                ref = self._published[key] = self._ray.put(context)
        return key, ref

    def map(self, fn: Callable[[Any, T], R], context: Any, items: Sequence[T]) -> Iterator[R]:
        """Yield `fn(context, item)` for every item, in order (tasks are submitted at once)."""
        if self._closed:
            raise RuntimeError("this executor is closed")
        items = _check_items(items)
        if not items:
            return iter(())
        key, ref = self._publish(context)
        size = self.chunksize or chunk_size(len(items), self.workers)
        refs = [
            self._remote.remote(fn, key, [ref], start, chunk)
            for start, chunk in _chunks(items, size)
        ]
        return self._collect(refs)

    def _collect(self, refs: list[Any]) -> Iterator[Any]:
        ray = self._ray
        done = 0
        try:
            for ref in refs:
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, ItemError):
                        raise cause from None
                    raise
                done += 1
                yield from results
        except BaseException:
            for ref in refs[done:]:
                # already finished, or the cluster is gone
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)
            raise

    def close(self) -> None:
        """Free the stored contexts; disconnect if this executor connected."""
        if self._closed:
            return
        self._closed = True
        self._published.clear()
        if self._owns_connection and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def make_executor(jobs: int | None = None, ray_address: str | None = None) -> Executor:
    """`RayExecutor(ray_address)` when an address is given (jobs is then the cluster's
    business), else `LocalExecutor(jobs)`."""
    if ray_address:
        return RayExecutor(ray_address)
    return LocalExecutor(jobs)


__all__ = [
    "RAY_INSTALL_HINT",
    "Executor",
    "ItemError",
    "LocalExecutor",
    "RayExecutor",
    "chunk_size",
    "default_jobs",
    "import_ray",
    "make_executor",
    "prestart",
    "resolve_jobs",
]
