"""Decimal helpers of the ledger (coercion is the domain's `to_decimal`)."""

from __future__ import annotations

from decimal import Decimal

from sapphire.domain.instrument import to_decimal

__all__ = ["LEDGER_EXPONENT", "LEDGER_QUANTUM", "Num", "num", "positive"]

Num = Decimal | int | str | float

# The quantum of a cost-basis share taken off a position on a partial close (see
# `Position.apply_fill`): far below any currency's smallest unit, and coarse enough that
# the later sums of the books stay exact within Decimal's 28 significant digits.
LEDGER_EXPONENT = -16
LEDGER_QUANTUM = Decimal(1).scaleb(LEDGER_EXPONENT)


def num(name: str, value: object) -> Decimal:
    """`value` as a finite Decimal (floats via ``str``); ValueError naming `name` else."""
    return to_decimal(value, name)


def positive(name: str, value: object) -> Decimal:
    """`num`, and > 0."""
    result = to_decimal(value, name)
    if result <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return result
