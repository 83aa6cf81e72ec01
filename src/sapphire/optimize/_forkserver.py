"""Imported once by the local executor's fork server (see `executor._mp_context`).

Importing Sapphire and loading the compiled backtest kernels here, in the server, means
every worker forked from it starts with them instead of loading them again.
"""

from __future__ import annotations

import contextlib

from sapphire.optimize.executor import warm_up

# a failed warm-up only costs speed: the workers then load the kernels themselves
with contextlib.suppress(Exception):
    warm_up()
