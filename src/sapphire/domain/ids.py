"""Deterministic client order ids.

`ClientOrderIdGenerator(strategy_id, run_id)` numbers a strategy's orders within one run:
``f"{run_id}-{strategy_id}-{seq}"`` with seq = 1, 2, ... The same (run, strategy,
sequence) always gives the same id, so after a crash the node restores the counter
(`restore(last_seq)`, the highest sequence found in the store, see `seq_of`) and an
order that was being resubmitted gets the id it had before: the venue then recognises
the duplicate instead of opening a second order.
"""

from __future__ import annotations

from sapphire.domain.identifiers import ClientOrderId, StrategyId

__all__ = ["ClientOrderIdGenerator"]


class ClientOrderIdGenerator:
    """Client order ids ``"{run_id}-{strategy_id}-{seq}"`` for one strategy in one run."""

    __slots__ = ("_prefix", "_run_id", "_seq", "_strategy_id")

    def __init__(self, strategy_id: StrategyId | str, run_id: str) -> None:
        self._strategy_id = StrategyId(strategy_id)
        if not isinstance(run_id, str) or not run_id or any(c.isspace() for c in run_id):
            raise ValueError(f"run_id must be a non-empty str without spaces, got {run_id!r}")
        self._run_id = run_id
        self._prefix = f"{run_id}-{self._strategy_id}-"
        self._seq = 0

    @property
    def strategy_id(self) -> StrategyId:
        return self._strategy_id

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def last_seq(self) -> int:
        """The sequence number of the latest id handed out (0 before the first)."""
        return self._seq

    def id_for(self, seq: int) -> ClientOrderId:
        """The id of sequence number `seq` (>= 1), without moving the counter."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"a client order id sequence is an int >= 1, got {seq!r}")
        return ClientOrderId(f"{self._prefix}{seq}")

    def next(self) -> ClientOrderId:
        """The next id: sequence `last_seq + 1`."""
        seq = self._seq + 1
        # the prefix was checked in __init__ (no whitespace) and seq is a positive int,
        # so the id is valid by construction: skip ClientOrderId's re-validation
        client_order_id = str.__new__(ClientOrderId, f"{self._prefix}{seq}")
        self._seq = seq
        return client_order_id

    def restore(self, last_seq: int) -> None:
        """Continue after `last_seq` (the highest sequence already used; 0 = none)."""
        if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
            raise ValueError(f"last_seq must be an int >= 0, got {last_seq!r}")
        self._seq = last_seq

    def seq_of(self, client_order_id: str) -> int | None:
        """The sequence number of an id this generator makes, or None for a foreign id."""
        if not client_order_id.startswith(self._prefix):
            return None
        tail = client_order_id[len(self._prefix) :]
        if not tail.isascii() or not tail.isdigit() or tail.startswith("0"):
            return None
        return int(tail)

    def __repr__(self) -> str:
        return (
            f"ClientOrderIdGenerator(strategy_id={str(self._strategy_id)!r}, "
            f"run_id={self._run_id!r}, last_seq={self._seq})"
        )
