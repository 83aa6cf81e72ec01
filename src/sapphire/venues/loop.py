"""An asyncio event loop on its own daemon thread, for the synchronous callers of the
async ccxt clients (the live venue, the kline sources)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["LoopThread"]


class LoopThread:
    """`loop` runs forever on a daemon thread named `name` once `start()` is called.

    `call(coro, timeout)` runs a coroutine there from any other thread and returns its
    result; `stop(cleanup)` cancels every task on the loop, awaits `cleanup()` (closing a
    client, say), stops the loop and joins the thread. `stop` is idempotent.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(
        self, cleanup: Callable[[], Awaitable[None]] | None = None, timeout: float = 30.0
    ) -> None:
        if not self.alive:
            return

        async def shutdown() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if cleanup is not None:
                await cleanup()

        try:
            self.call(shutdown(), timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
