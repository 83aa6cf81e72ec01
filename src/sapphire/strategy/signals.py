"""`normalize_signals`: a strategy's `Signals` as the arrays every engine reads.

The one place where signals are checked and converted, so that the same bad input gets
the same error in every mode (vectorised kernel, event-driven backtest, paper, live) and
in `sapphire check lookahead`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sapphire.strategy.base import ENTRY_TYPES, Signals

__all__ = ["BOOL_SIGNALS", "FLOAT_SIGNALS", "SignalArrays", "normalize_signals"]

BOOL_SIGNALS = ("enter_long", "exit_long", "enter_short", "exit_short")
FLOAT_SIGNALS = ("entry_price", "stop_loss", "take_profit", "trailing_stop")


@dataclass(frozen=True, eq=False)
class SignalArrays:
    """Signals as the engines take them: four bool arrays of length n; the per-entry
    arrays (`entry_type`, `entry_price`, `stop_loss`, `take_profit`, `trailing_stop`)
    have length n or 1 (one value for every bar)."""

    enter_long: NDArray[np.bool_]
    exit_long: NDArray[np.bool_]
    enter_short: NDArray[np.bool_]
    exit_short: NDArray[np.bool_]
    entry_type: NDArray[np.int8]
    entry_price: NDArray[np.float64]
    stop_loss: NDArray[np.float64]
    take_profit: NDArray[np.float64]
    trailing_stop: NDArray[np.float64]


def _flag(value: Any, n: int, what: str, strategy: str) -> NDArray[np.bool_]:
    if value is None:
        return np.zeros(n, dtype=np.bool_)
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"strategy {strategy!r}: {what} has shape {arr.shape}, expected ({n},)")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"strategy {strategy!r}: {what} must be boolean, got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nan_to_num(arr.astype(np.float64)) != 0.0)


def _per_bar(value: Any, n: int, what: str, strategy: str) -> NDArray[np.float64]:
    if value is None:
        return np.array([np.nan])
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"strategy {strategy!r}: {what} must be numbers, got {value!r:.80}"
        ) from None
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.shape != (n,):
        raise ValueError(f"strategy {strategy!r}: {what} has shape {arr.shape}, expected ({n},)")
    return arr


def _entry_types(value: Any, n: int, strategy: str) -> NDArray[np.int8]:
    if isinstance(value, str):
        if value not in ENTRY_TYPES:
            raise ValueError(
                f"strategy {strategy!r}: entry_type {value!r} is not one of {list(ENTRY_TYPES)}"
            )
        return np.array([ENTRY_TYPES[value]], dtype=np.int8)
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(
            f"strategy {strategy!r}: entry_type has shape {arr.shape}, expected ({n},)"
        )
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 2):
            raise ValueError(f"strategy {strategy!r}: entry_type codes must be 0, 1 or 2")
        return arr.astype(np.int8)
    unknown = ~np.isin(arr, list(ENTRY_TYPES))
    if unknown.any():
        raise ValueError(
            f"strategy {strategy!r}: entry_type {arr[unknown][0]!r} is not one of "
            f"{list(ENTRY_TYPES)}"
        )
    codes = np.empty(n, dtype=np.int8)
    for name, code in ENTRY_TYPES.items():
        codes[arr == name] = code
    return codes


def normalize_signals(
    sig: Any,
    n: int,
    *,
    strategy: str = "strategy",
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
) -> SignalArrays:
    """Check and convert `sig` (what `strategy`'s `signals()` returned for `n` bars).

    `stop_loss` / `take_profit` / `trailing_stop` (a run's configuration) override the
    strategy's own. Raises TypeError when `sig` is not `Signals`, ValueError naming the
    strategy, the array and the bad value otherwise.
    """
    if not isinstance(sig, Signals):
        raise TypeError(f"strategy {strategy!r}: signals() must return Signals, got {sig!r:.80}")
    return SignalArrays(
        _flag(sig.enter_long, n, "enter_long", strategy),
        _flag(sig.exit_long, n, "exit_long", strategy),
        _flag(sig.enter_short, n, "enter_short", strategy),
        _flag(sig.exit_short, n, "exit_short", strategy),
        _entry_types(sig.entry_type, n, strategy),
        _per_bar(sig.entry_price, n, "entry_price", strategy),
        _per_bar(stop_loss if stop_loss is not None else sig.stop_loss, n, "stop_loss", strategy),
        _per_bar(
            take_profit if take_profit is not None else sig.take_profit, n, "take_profit", strategy
        ),
        _per_bar(
            trailing_stop if trailing_stop is not None else sig.trailing_stop,
            n,
            "trailing_stop",
            strategy,
        ),
    )
