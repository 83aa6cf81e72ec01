"""Checks of a strategy's honesty: `check_lookahead` finds signals that peek at future bars."""

from sapphire.check.lookahead import (
    ARRAYS,
    LookaheadReport,
    LookaheadViolation,
    check_lookahead,
)

__all__ = ["ARRAYS", "LookaheadReport", "LookaheadViolation", "check_lookahead"]
