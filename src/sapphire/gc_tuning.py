"""`rare_gc_passes()`: run a block with a larger young generation for Python's collector.

Long runs that keep many live objects (an event replay keeps every order and its events;
a study keeps every trial record) make the cyclic garbage collector re-traverse them again
and again with its default thresholds (700 new objects per young collection, so a full
collection every 70,000). Inside the block the collector runs in fewer, larger passes;
garbage is still collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0 = 50_000


@contextmanager
def rare_gc_passes() -> Iterator[None]:
    """Raise the young-generation threshold to `GEN0` for the block (restored after)."""
    old = gc.get_threshold()
    ours = (GEN0, *old[1:])
    changed = 0 < old[0] < GEN0  # 0 = collection off; larger: left alone
    if changed:
        gc.set_threshold(*ours)
    try:
        yield
    finally:
        if changed and gc.get_threshold() == ours:  # unless someone changed it since
            gc.set_threshold(*old)
